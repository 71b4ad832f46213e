"""Fixtures that start the real ``driftline`` binary on a free loopback port."""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import time
import urllib.parse
import urllib.request
import uuid
from pathlib import Path
from typing import Any, Dict, Iterator, Optional

import pytest

import driftline

START_TIMEOUT_S = 30.0


def find_driftline_bin() -> str:
    """$DRIFTLINE_BIN, `driftline` on PATH, then the workspace's build output."""
    configured = os.environ.get("DRIFTLINE_BIN")
    if configured:
        return configured
    on_path = shutil.which("driftline")
    if on_path:
        return on_path
    roots = []
    if os.environ.get("CARGO_TARGET_DIR"):
        roots.append(Path(os.environ["CARGO_TARGET_DIR"]))
    roots.append(Path.home() / ".cache" / "driftline" / "target")
    roots.append(Path(__file__).resolve().parents[3] / "target")
    for root in roots:
        for profile in ("release", "debug"):
            candidate = root / profile / "driftline"
            if candidate.is_file() and os.access(candidate, os.X_OK):
                return str(candidate)
    pytest.fail("the driftline binary was not found: build it (cargo build -p driftline) or set DRIFTLINE_BIN")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_ready(url: str, timeout: float = START_TIMEOUT_S) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(url + "/readyz", timeout=1) as resp:
                if resp.status == 200:
                    return
        except Exception:
            pass
        time.sleep(0.05)
    raise AssertionError(f"{url} did not become ready within {timeout} s")


class Server:
    """A `driftline serve` process on an embedded store, which can be stopped and restarted."""

    def __init__(self, binary: str, data_dir: Path) -> None:
        self.binary = binary
        self.data_dir = data_dir
        self.key = "test-admin-key-" + uuid.uuid4().hex
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.proc: Optional[subprocess.Popen] = None

    def start(self) -> None:
        env = {k: v for k, v in os.environ.items() if not k.startswith("DRIFTLINE_")}
        env["DRIFTLINE_ADMIN_KEY"] = self.key
        log = open(self.data_dir.parent / f"server-{self.port}.log", "ab")
        self.proc = subprocess.Popen(
            [self.binary, "serve", "--data-dir", str(self.data_dir), "--listen", f"127.0.0.1:{self.port}", "--no-drift-scheduler"],
            stdout=log,
            stderr=log,
            stdin=subprocess.DEVNULL,
            env=env,
        )
        log.close()
        wait_ready(self.url)

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(15)
        self.proc = None

    def get(self, path: str, **params: Any) -> Any:
        """A GET answer read directly, without the client under test."""
        url = self.url + path + "?" + urllib.parse.urlencode(params)
        req = urllib.request.Request(url, headers={"Authorization": f"Bearer {self.key}"})
        with urllib.request.urlopen(req, timeout=30) as resp:
            return json.loads(resp.read())

    def rows(self, **params: Any) -> list:
        return self.get("/api/v1/read_metrics", **params)["metrics"]


@pytest.fixture(scope="session")
def driftline_bin() -> str:
    return find_driftline_bin()


@pytest.fixture(autouse=True)
def clean_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path, driftline_bin: str) -> Iterator[None]:
    """No configuration leaks in from the machine, and dev mode never uses the user's directory."""
    for name in list(os.environ):
        if name.startswith("DRIFTLINE_"):
            monkeypatch.delenv(name)
    monkeypatch.setenv("DRIFTLINE_BIN", driftline_bin)
    monkeypatch.setenv("DRIFTLINE_DEV_DIR", str(tmp_path / "dev"))
    yield
    driftline.shutdown()


@pytest.fixture
def server(driftline_bin: str, tmp_path: Path) -> Iterator[Server]:
    srv = Server(driftline_bin, tmp_path / "data")
    srv.data_dir.mkdir()
    srv.start()
    try:
        yield srv
    finally:
        srv.stop()


@pytest.fixture
def crns() -> Dict[str, str]:
    tag = uuid.uuid4().hex[:8]
    return {
        "model_crn": f"crn:test:model/{tag}",
        "model_build_crn": f"crn:test:build/{tag}",
        "model_deployment_crn": f"crn:test:deployment/{tag}",
    }


@pytest.fixture
def client(server: Server, crns: Dict[str, str]) -> Server:
    """The client configured for the test server, with a short linger."""
    driftline.init(url=server.url, api_key=server.key, linger_ms=20, max_backoff_s=0.5, **crns)
    return server
