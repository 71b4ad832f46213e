"""Fixtures that start the real ``driftline`` binary on a free loopback port, and for Kafka
delivery the tansu broker (a Kafka-protocol broker process) and ``driftline ingest``.

``server`` runs on a fresh embedded SQLite store. Tests marked ``both_backends`` run twice, with
``server`` on SQLite (``[sqlite]``) and on a fresh database of the Postgres server named by
``DRIFTLINE_TEST_DATABASE_URL`` (``[postgres]``, e.g. ``postgres://postgres@127.0.0.1:5432/postgres``:
a role that may create databases). Without that variable the Postgres variants are skipped,
unless ``DRIFTLINE_REQUIRE_POSTGRES=1``, which makes them fail instead.
"""

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
from typing import Any, Callable, Dict, Iterator, List, Optional

import pytest

import driftline

START_TIMEOUT_S = 30.0

# Read when this module is imported: the `clean_env` fixture removes every DRIFTLINE_* variable
# before each test.
#: The Postgres server the `[postgres]` variants make their databases on.
TEST_DATABASE_URL = os.environ.get("DRIFTLINE_TEST_DATABASE_URL") or None
#: Whether the `[postgres]` variants fail, rather than skip, without DRIFTLINE_TEST_DATABASE_URL.
REQUIRE_POSTGRES = os.environ.get("DRIFTLINE_REQUIRE_POSTGRES") == "1"

#: The stores a test marked `both_backends` runs its `server` on.
BACKENDS = ("sqlite", "postgres")


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers",
        "both_backends: run the test with its `server` on the embedded SQLite store and on Postgres "
        "(DRIFTLINE_TEST_DATABASE_URL)",
    )


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    if metafunc.definition.get_closest_marker("both_backends") is None:
        return
    if "server" not in metafunc.fixturenames:
        raise pytest.UsageError(f"{metafunc.definition.nodeid} is marked both_backends but uses no `server` (or `client`)")
    metafunc.parametrize("server", BACKENDS, indirect=True)


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


class PostgresDatabase:
    """A database of its own on the Postgres server at ``server_url``, created and dropped with
    psql."""

    def __init__(self, server_url: str) -> None:
        self.server_url = server_url
        self.name = "driftline_py_" + uuid.uuid4().hex[:16]
        parts = urllib.parse.urlsplit(server_url)
        #: The URL of this database: the server's URL with the database's name as its path.
        self.url = urllib.parse.urlunsplit(parts._replace(path="/" + self.name))

    def create(self) -> None:
        self._psql(f'CREATE DATABASE "{self.name}"')

    def drop(self) -> None:
        # FORCE ends the connections a server that did not stop cleanly may have left open.
        self._psql(f'DROP DATABASE IF EXISTS "{self.name}" WITH (FORCE)')

    def _psql(self, statement: str) -> None:
        psql = shutil.which("psql")
        if psql is None:
            pytest.fail("the Postgres tests need psql on PATH (DRIFTLINE_TEST_DATABASE_URL is set)")
        done = subprocess.run(
            [psql, "--no-psqlrc", "--quiet", "--set", "ON_ERROR_STOP=1", "--dbname", self.server_url, "--command", statement],
            capture_output=True,
            stdin=subprocess.DEVNULL,
            timeout=60,
        )
        if done.returncode != 0:
            parts = urllib.parse.urlsplit(self.server_url)
            shown = parts._replace(netloc=parts.netloc.replace(f":{parts.password}@", ":***@")) if parts.password else parts
            pytest.fail(
                f"psql {statement!r} on DRIFTLINE_TEST_DATABASE_URL={urllib.parse.urlunsplit(shown)} failed "
                f"({done.returncode}): {done.stderr.decode(errors='replace').strip()}"
            )


def postgres_server_url() -> str:
    """DRIFTLINE_TEST_DATABASE_URL, or a skip (a failure with DRIFTLINE_REQUIRE_POSTGRES=1)."""
    if TEST_DATABASE_URL:
        return TEST_DATABASE_URL
    unset = (
        "DRIFTLINE_TEST_DATABASE_URL is not set: the [postgres] variants need a Postgres server on "
        "which they may create databases, e.g. postgres://postgres@127.0.0.1:5432/postgres"
    )
    if REQUIRE_POSTGRES:
        pytest.fail(f"DRIFTLINE_REQUIRE_POSTGRES=1 but {unset}")
    pytest.skip(f"{unset} (DRIFTLINE_REQUIRE_POSTGRES=1 fails instead)")


class Server:
    """A `driftline serve` process on an embedded store in ``data_dir``, or on the Postgres
    database at ``database_url``, which can be stopped and restarted. Its log is written beside
    ``data_dir`` either way."""

    def __init__(
        self,
        binary: str,
        data_dir: Path,
        extra_args: List[str] = (),  # type: ignore[assignment]
        database_url: Optional[str] = None,
    ) -> None:
        self.binary = binary
        self.data_dir = data_dir
        self.database_url = database_url
        self.extra_args = list(extra_args)
        self.key = "test-admin-key-" + uuid.uuid4().hex
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        # Arrow Flight SQL, served beside the HTTP API.
        self.flight_port = free_port()
        self.flight_url = f"grpc://127.0.0.1:{self.flight_port}"
        self.proc: Optional[subprocess.Popen] = None

    def start(self) -> None:
        env = {k: v for k, v in os.environ.items() if not k.startswith("DRIFTLINE_")}
        env["DRIFTLINE_ADMIN_KEY"] = self.key
        log = open(self.data_dir.parent / f"server-{self.port}.log", "ab")
        self.proc = subprocess.Popen(
            [
                self.binary, "serve", *self.store_args(), "--listen", f"127.0.0.1:{self.port}",
                "--flight-sql-listen", f"127.0.0.1:{self.flight_port}", "--no-drift-scheduler",
                *self.extra_args,
            ],
            stdout=log,
            stderr=log,
            stdin=subprocess.DEVNULL,
            env=env,
        )
        log.close()
        wait_ready(self.url)

    def store_args(self) -> List[str]:
        """The flags that name this server's store, for other commands on the same store."""
        if self.database_url is not None:
            return ["--database-url", self.database_url]
        return ["--data-dir", str(self.data_dir)]

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
def server(request: pytest.FixtureRequest, driftline_bin: str, tmp_path: Path) -> Iterator[Server]:
    """`driftline serve` on a fresh embedded store; in the `[postgres]` variant of a test marked
    `both_backends`, on a fresh Postgres database, dropped after the test."""
    backend = getattr(request, "param", "sqlite")
    database = PostgresDatabase(postgres_server_url()) if backend == "postgres" else None
    if database is not None:
        database.create()
    srv = Server(driftline_bin, tmp_path / "data", database_url=database.url if database is not None else None)
    srv.data_dir.mkdir()
    try:
        srv.start()
        yield srv
    finally:
        srv.stop()
        if database is not None:
            database.drop()


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


# ---- Kafka: the tansu broker and `driftline ingest` ---------------------------------------


def find_tansu_bin() -> Optional[str]:
    """$DRIFTLINE_TANSU_BIN, ~/.cache/driftline/tansu/bin/tansu, then `tansu` on PATH."""
    for candidate in (os.environ.get("DRIFTLINE_TANSU_BIN"), str(Path.home() / ".cache" / "driftline" / "tansu" / "bin" / "tansu")):
        if candidate and Path(candidate).is_file() and os.access(candidate, os.X_OK):
            return candidate
    return shutil.which("tansu")


def _clean_env() -> Dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("DRIFTLINE_")}
    env["RUST_LOG"] = "warn"
    env["DRIFTLINE_LOG"] = "warn"
    return env


def _stop(proc: Optional[subprocess.Popen]) -> None:
    if proc is not None and proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(15)


class Tansu:
    """A tansu broker with memory storage on a loopback port, started as the workspace's Rust
    tests start it (`tansu broker --storage-engine memory://tansu/ --listener-url ...`)."""

    def __init__(self, binary: str, log_dir: Path, port: Optional[int] = None) -> None:
        self.binary = binary
        self.log_dir = log_dir
        self.port = port or free_port()
        self.url = f"tcp://127.0.0.1:{self.port}"
        self.bootstrap = f"127.0.0.1:{self.port}"
        self.proc: Optional[subprocess.Popen] = None

    def start(self) -> None:
        log = open(self.log_dir / f"tansu-{self.port}.log", "ab")
        self.proc = subprocess.Popen(
            [self.binary, "broker", "--storage-engine", "memory://tansu/", "--listener-url", self.url, "--advertised-listener-url", self.url],
            stdout=log,
            stderr=log,
            stdin=subprocess.DEVNULL,
            env=_clean_env(),
        )
        log.close()
        deadline = time.monotonic() + START_TIMEOUT_S
        while True:
            assert self.proc.poll() is None, f"tansu exited with {self.proc.returncode}; see {self.log_dir}"
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=1):
                    return
            except OSError:
                assert time.monotonic() < deadline, f"tansu did not listen on {self.port} within {START_TIMEOUT_S} s"
                time.sleep(0.1)

    def create_topic(self, topic: str, partitions: int) -> None:
        done = subprocess.run(
            [self.binary, "topic", "create", "--broker", self.url, "--partitions", str(partitions), topic],
            env=_clean_env(),
            capture_output=True,
            timeout=60,
        )
        assert done.returncode == 0, f"tansu topic create {topic} failed: {done.stderr.decode(errors='replace')}"

    def stop(self) -> None:
        _stop(self.proc)
        self.proc = None


class Ingest:
    """A `driftline ingest` process reading every partition of a topic (``--partitions all``, as
    tansu needs) into the store that ``store_args`` name (``Server.store_args``)."""

    def __init__(self, binary: str, bootstrap: str, topic: Optional[str], store_args: List[str], log_dir: Path) -> None:
        self.args = [binary, "ingest", "--kafka-brokers", bootstrap, "--partitions", "all", *store_args, "--linger-ms", "50"]
        if topic is not None:
            self.args += ["--topic", topic]
        self.out = log_dir / f"ingest-{uuid.uuid4().hex[:8]}.log"
        self.proc: Optional[subprocess.Popen] = None

    def start(self) -> None:
        log = open(self.out, "ab")
        self.proc = subprocess.Popen(self.args, stdout=log, stderr=log, stdin=subprocess.DEVNULL, env=_clean_env())
        log.close()
        deadline = time.monotonic() + START_TIMEOUT_S
        while b"driftline ingest consuming " not in self.out.read_bytes():
            assert self.proc.poll() is None, f"driftline ingest exited with {self.proc.returncode}: {self.log()}"
            assert time.monotonic() < deadline, f"driftline ingest did not start within {START_TIMEOUT_S} s: {self.log()}"
            time.sleep(0.05)

    def log(self) -> str:
        return self.out.read_text(errors="replace")[-4000:]

    def stop(self) -> None:
        _stop(self.proc)
        self.proc = None


def _kafka_required() -> bool:
    return os.environ.get("DRIFTLINE_REQUIRE_KAFKA") == "1"


@pytest.fixture(scope="session")
def confluent_kafka() -> Any:
    """confluent-kafka (the `kafka` extra); the Kafka tests are skipped without it unless
    DRIFTLINE_REQUIRE_KAFKA=1."""
    try:
        import confluent_kafka as module
    except ImportError:
        if _kafka_required():
            pytest.fail("DRIFTLINE_REQUIRE_KAFKA=1 but confluent-kafka is not installed: pip install './clients/python[test,kafka]'")
        pytest.skip("confluent-kafka is not installed (pip install './clients/python[test,kafka]')")
    return module


@pytest.fixture(scope="session")
def tansu_bin(confluent_kafka: Any) -> str:
    """The tansu binary; the Kafka tests are skipped without one unless DRIFTLINE_REQUIRE_KAFKA=1."""
    found = find_tansu_bin()
    if found is None:
        if _kafka_required():
            pytest.fail(
                "DRIFTLINE_REQUIRE_KAFKA=1 but no tansu broker binary was found: install it with "
                "`cargo install tansu --locked --features dynostore --root ~/.cache/driftline/tansu` "
                "or set DRIFTLINE_TANSU_BIN"
            )
        pytest.skip("no tansu broker binary (set DRIFTLINE_TANSU_BIN, or DRIFTLINE_REQUIRE_KAFKA=1 to fail instead)")
    return found


@pytest.fixture(scope="module")
def broker(tansu_bin: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Tansu]:
    """One broker for a test module; each test uses topics of its own."""
    tansu = Tansu(tansu_bin, tmp_path_factory.mktemp("tansu"))
    tansu.start()
    try:
        yield tansu
    finally:
        tansu.stop()


@pytest.fixture
def start_ingest(driftline_bin: str, server: Server) -> Iterator[Callable[..., Ingest]]:
    """Starts `driftline ingest` of a topic (None: its default) from a broker into the store of
    the ``server`` fixture, so that what it stores is read back through `driftline serve`."""
    started: List[Ingest] = []

    def start(bootstrap: str, topic: Optional[str]) -> Ingest:
        ingest = Ingest(driftline_bin, bootstrap, topic, server.store_args(), server.data_dir.parent)
        started.append(ingest)
        ingest.start()
        return ingest

    try:
        yield start
    finally:
        for ingest in started:
            ingest.stop()


@pytest.fixture
def make_broker(tansu_bin: str, tmp_path: Path) -> Iterator[Callable[[], Tansu]]:
    """Makes brokers (not started) on free ports, for tests that start one late; stopped after."""
    made: List[Tansu] = []

    def make() -> Tansu:
        tansu = Tansu(tansu_bin, tmp_path)
        made.append(tansu)
        return tansu

    try:
        yield make
    finally:
        for tansu in made:
            tansu.stop()
