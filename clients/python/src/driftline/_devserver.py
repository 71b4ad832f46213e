"""Development mode: a ``driftline serve`` on this machine, shared by the user's processes.

The server keeps its SQLite store in a per-user directory (``$DRIFTLINE_DEV_DIR``, else
``$XDG_DATA_HOME/driftline/dev``, else ``~/.local/share/driftline/dev``), so dev metrics persist
from one session to the next. The first process that needs it starts it on a free loopback port
with a generated admin key and writes ``server.json`` (url, key, pid); other processes reuse it
while its ``/readyz`` answers. The process that started it stops it at exit.
"""

from __future__ import annotations

import json
import os
import secrets
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Optional, Tuple

from . import _http
from .errors import DevServerError

try:
    import fcntl
except ImportError:  # pragma: no cover - not on Windows
    fcntl = None  # type: ignore[assignment]

START_TIMEOUT_S = 30.0
STOP_TIMEOUT_S = 10.0


def dev_dir() -> Path:
    """The directory of the development server's store, state file and log."""
    configured = os.environ.get("DRIFTLINE_DEV_DIR", "").strip()
    if configured:
        return Path(configured).expanduser()
    data_home = os.environ.get("XDG_DATA_HOME", "").strip()
    base = Path(data_home) if data_home else Path.home() / ".local" / "share"
    return base / "driftline" / "dev"


def find_binary() -> str:
    """The ``driftline`` binary: ``$DRIFTLINE_BIN``, one installed beside this Python, or on PATH."""
    configured = os.environ.get("DRIFTLINE_BIN", "").strip()
    if configured:
        if not os.access(configured, os.X_OK):
            raise DevServerError(f"DRIFTLINE_BIN={configured!r} is not an executable file; point it at the driftline binary")
        return configured
    beside = Path(sys.executable).parent / "driftline"
    if beside.is_file() and os.access(beside, os.X_OK):
        return str(beside)
    found = shutil.which("driftline")
    if found:
        return found
    raise DevServerError(
        "development mode needs the driftline binary: put it on PATH or set DRIFTLINE_BIN, "
        "or set DRIFTLINE_URL (and DRIFTLINE_API_KEY) to use a running server"
    )


class DevServer:
    """The handle of this process on the shared development server."""

    def __init__(self, directory: Optional[Path] = None) -> None:
        self.directory = directory or dev_dir()
        self.url: Optional[str] = None
        self.key: Optional[str] = None
        self._proc: Optional[subprocess.Popen] = None

    @property
    def owned(self) -> bool:
        """Whether this process started the server (and so stops it at exit)."""
        return self._proc is not None and self._proc.poll() is None

    def after_fork_in_child(self) -> None:
        """In a forked child: keep using the server, but leave stopping it to the parent."""
        self._proc = None

    @property
    def state_file(self) -> Path:
        return self.directory / "server.json"

    def target(self) -> Tuple[str, Optional[str]]:
        """The server's URL and key, starting it or reusing a running one first if needed."""
        if self.url is None:
            self.ensure()
        assert self.url is not None
        return self.url, self.key

    def ensure(self) -> None:
        """Make sure a development server answers, reusing the one in the state file if it does."""
        if self.url is not None and _http.ready(self.url):
            return
        self.directory.mkdir(parents=True, exist_ok=True)
        with open(self.directory / "server.lock", "a+") as lock:
            if fcntl is not None:
                fcntl.flock(lock.fileno(), fcntl.LOCK_EX)
            try:
                state = self._read_state()
                if state and _http.ready(state["url"]):
                    self.url, self.key = state["url"], state["key"]
                    return
                self._start()
            finally:
                if fcntl is not None:
                    fcntl.flock(lock.fileno(), fcntl.LOCK_UN)

    def _read_state(self) -> Optional[dict]:
        try:
            state = json.loads(self.state_file.read_text())
        except (OSError, ValueError):
            return None
        if isinstance(state, dict) and isinstance(state.get("url"), str) and isinstance(state.get("key"), str):
            return state
        return None

    def _start(self) -> None:
        binary = find_binary()
        key = secrets.token_hex(24)
        out_path = self.directory / "server.out"
        env = dict(os.environ)
        env["DRIFTLINE_ADMIN_KEY"] = key
        for name in ("DRIFTLINE_ADMIN_KEY_FILE", "DRIFTLINE_DATABASE_URL", "DRIFTLINE_LISTEN", "DRIFTLINE_DATA_DIR"):
            env.pop(name, None)
        with open(out_path, "wb") as out, open(self.directory / "server.log", "ab") as err:
            proc = subprocess.Popen(
                [binary, "serve", "--data-dir", str(self.directory / "data"), "--listen", "127.0.0.1:0"],
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=err,
                env=env,
                start_new_session=True,
            )
        url = None
        deadline = time.monotonic() + START_TIMEOUT_S
        while time.monotonic() < deadline:
            if proc.poll() is not None:
                raise DevServerError(
                    f"the development server exited at start (status {proc.returncode}); "
                    f"see {self.directory / 'server.log'}"
                )
            try:
                first = out_path.read_text().splitlines()
            except OSError:
                first = []
            if first and first[0].startswith("driftline listening on "):
                url = first[0].split()[3]
                if _http.ready(url):
                    break
            time.sleep(0.05)
        else:
            _terminate(proc)
            raise DevServerError(
                f"the development server did not become ready within {START_TIMEOUT_S:.0f} s; "
                f"see {self.directory / 'server.log'}"
            )
        self._proc = proc
        self.url, self.key = url, key
        tmp = self.state_file.with_suffix(".tmp")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as f:
            json.dump({"url": url, "key": key, "pid": proc.pid}, f)
        os.replace(tmp, self.state_file)

    def stop(self) -> None:
        """Stop the server if this process started it, and forget its state."""
        proc = self._proc
        if proc is None:
            return
        self._proc = None
        state = self._read_state()
        if state and state.get("pid") == proc.pid:
            try:
                self.state_file.unlink()
            except OSError:
                pass
        _terminate(proc)


def _terminate(proc: subprocess.Popen) -> None:
    if proc.poll() is not None:
        return
    proc.send_signal(signal.SIGTERM)
    try:
        proc.wait(STOP_TIMEOUT_S)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(STOP_TIMEOUT_S)
