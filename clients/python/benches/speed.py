"""Speed of the Python client, in one process and one run, against a local `driftline serve`.

1. Overhead: a bare predict function (arithmetic over a dict of 6 inputs, calling nothing) and
   the same function decorated with ``models_v1.cml_model(metrics=True)`` that calls
   ``metrics_v1.track_metric("input", args)`` and ``track_metric("predict_result", ...)``. The two
   are called alternately, each call timed with ``time.perf_counter_ns``, after a warm-up; the
   sender threads are running and posting to the server meanwhile, as in a model replica.
2. Throughput: N predictions through the decorated function as fast as one thread calls it,
   then ``driftline.flush()``: predictions per second from the first call until flush returns
   with everything accepted. ``driftline.stats()`` must show N accepted and nothing dropped,
   failed or rejected, and the server must hold N rows of the deployment (read back as NDJSON
   from ``/api/v1/read_metrics``, every prediction UUID once).

The server is started by this script on an embedded store in a temporary directory, on a free
loopback port, with a generated admin key, and stopped at the end. It prints a markdown table;
any failed check exits non-zero.

    DRIFTLINE_BIN=target/release/driftline python clients/python/benches/speed.py
    python clients/python/benches/speed.py --calls 100000 --predictions 200000 --json
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import random
import re
import secrets
import subprocess
import sys
import tempfile
import threading
import time
import urllib.parse
import urllib.request
from pathlib import Path
from typing import Any, Dict, List, Optional, Tuple

import driftline
import driftline.metrics_v1 as metrics
import driftline.models_v1 as models

DEFAULT_BIN = "/root/.cache/driftline/target/release/driftline"
START_TIMEOUT_S = 30.0
STOP_TIMEOUT_S = 15.0
FLUSH_TIMEOUT_S = 300.0
OVERHEAD_TARGET_US = 20.0
THROUGHPUT_TARGET = 20_000.0
LISTENING = re.compile(r"driftline listening on (http://127\.0\.0\.1:\d+)")


class BenchError(RuntimeError):
    """A check failed: the figures would not mean what they claim."""


# ---- the server ---------------------------------------------------------------------------


class LocalServer:
    """`driftline serve` on a temporary embedded store (or on the Postgres database at
    ``database_url``), on a free loopback port."""

    def __init__(self, binary: str, data_dir: Path, database_url: Optional[str] = None) -> None:
        self.binary = binary
        self.data_dir = data_dir
        self.database_url = database_url
        # The bootstrap admin key: at least 16 characters, given by environment only.
        self.key = "bench-" + secrets.token_hex(24)
        self.url: Optional[str] = None
        self.proc: Optional[subprocess.Popen] = None
        self._lines: List[str] = []
        self._seen = threading.Condition()
        self._log_path = data_dir.parent / "server.log"

    def start(self) -> None:
        env = {k: v for k, v in os.environ.items() if not k.startswith("DRIFTLINE_")}
        env["DRIFTLINE_ADMIN_KEY"] = self.key
        self._log = open(self._log_path, "ab")
        self.proc = subprocess.Popen(
            [
                self.binary,
                "serve",
                *(["--database-url", self.database_url] if self.database_url else ["--data-dir", str(self.data_dir)]),
                "--listen",
                "127.0.0.1:0",
                "--no-drift-scheduler",
            ],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=self._log,
            env=env,
        )
        threading.Thread(target=self._read_stdout, name="server-stdout", daemon=True).start()
        deadline = time.monotonic() + START_TIMEOUT_S
        with self._seen:
            while self.url is None:
                if self.proc.poll() is not None:
                    raise BenchError(f"driftline serve exited with {self.proc.returncode}; see {self._log_path}")
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise BenchError(f"driftline serve printed no 'driftline listening on' line within {START_TIMEOUT_S:.0f} s")
                self._seen.wait(min(remaining, 0.2))
        self._wait_ready(deadline)

    def _read_stdout(self) -> None:
        assert self.proc is not None and self.proc.stdout is not None
        for raw in self.proc.stdout:  # drained to the end, so the pipe never fills
            line = raw.decode("utf-8", "replace").rstrip("\n")
            with self._seen:
                self._lines.append(line)
                match = LISTENING.search(line)
                if match and self.url is None:
                    self.url = match.group(1)
                self._seen.notify_all()

    def _wait_ready(self, deadline: float) -> None:
        while time.monotonic() < deadline:
            try:
                with urllib.request.urlopen(self.url + "/readyz", timeout=1) as resp:
                    if resp.status == 200:
                        return
            except Exception:
                pass
            time.sleep(0.05)
        raise BenchError(f"{self.url}/readyz did not answer 200 within {START_TIMEOUT_S:.0f} s")

    def get(self, path: str, params: Optional[Dict[str, Any]] = None, timeout: float = 60.0) -> Any:
        url = self.url + path + ("?" + urllib.parse.urlencode(params) if params else "")
        req = urllib.request.Request(url, headers={"Authorization": f"Bearer {self.key}"})
        with urllib.request.urlopen(req, timeout=timeout) as resp:
            return json.loads(resp.read())

    def stored_predictions(self, deployment_crn: str) -> Tuple[int, int]:
        """Rows of a deployment and distinct prediction UUIDs among them, streamed as NDJSON."""
        params = {
            "model_deployment_crn": deployment_crn,
            "start_timestamp_ms": 0,
            "end_timestamp_ms": time.time_ns() // 1_000_000 + 60_000,
            "format": "ndjson",
        }
        url = self.url + "/api/v1/read_metrics?" + urllib.parse.urlencode(params)
        req = urllib.request.Request(url, headers={"Authorization": f"Bearer {self.key}"})
        rows = 0
        uuids = set()
        with urllib.request.urlopen(req, timeout=300) as resp:
            for raw in resp:
                if not raw.strip():
                    continue
                row = json.loads(raw)
                if set(row) == {"error"}:
                    raise BenchError(f"reading the window failed on the server: {row['error']}")
                rows += 1
                uuids.add(row["predictionUuid"])
        return rows, len(uuids)

    def cpu_seconds(self) -> Optional[float]:
        """CPU time the server process has used so far (Linux), or None."""
        return _proc_cpu(f"/proc/{self.proc.pid}/stat") if self.proc is not None else None

    def stop(self) -> None:
        if self.proc is None:
            return
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(STOP_TIMEOUT_S)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(STOP_TIMEOUT_S)
        if self.proc.stdout is not None:
            self.proc.stdout.close()
        self._log.close()
        self.proc = None


def _proc_cpu(stat_path: str) -> Optional[float]:
    """User + system CPU seconds from a /proc stat file, or None where there is none."""
    try:
        with open(stat_path) as f:
            fields = f.read().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    except (OSError, ValueError, IndexError):
        return None


def _thread_cpu(native_id: Optional[int]) -> Optional[float]:
    return None if native_id is None else _proc_cpu(f"/proc/self/task/{native_id}/stat")


def _threads_cpu(native_ids: List[Optional[int]]) -> Optional[float]:
    """The CPU seconds of these threads together (the client's sender threads)."""
    seconds = [_thread_cpu(i) for i in native_ids]
    return None if not seconds or None in seconds else sum(s for s in seconds if s is not None)


def _delta(after: Optional[float], before: Optional[float]) -> Optional[float]:
    return None if after is None or before is None else after - before


# ---- the model ----------------------------------------------------------------------------


def make_inputs(count: int, seed: int = 7) -> List[Dict[str, Any]]:
    """Distinct inputs of 6 features (numbers and a category), like a small tabular model's."""
    rng = random.Random(seed)
    plans = ("basic", "plus", "pro")
    return [
        {
            "tenure_months": rng.randint(0, 72),
            "monthly_charges": round(rng.uniform(10.0, 120.0), 2),
            "support_calls": rng.randint(0, 9),
            "late_payments": rng.randint(0, 5),
            "usage_gb": round(rng.uniform(0.0, 500.0), 3),
            "plan": plans[rng.randrange(len(plans))],
        }
        for _ in range(count)
    ]


def bare_predict(args: Dict[str, Any]) -> float:
    return (
        0.12
        - 0.004 * args["tenure_months"]
        + 0.002 * args["monthly_charges"]
        + 0.05 * args["support_calls"]
        + 0.08 * args["late_payments"]
        - 0.0001 * args["usage_gb"]
    )


@models.cml_model(metrics=True)
def tracked_predict(args: Dict[str, Any]) -> float:
    metrics.track_metric("input", args)
    # The same work as the bare function (one call more, counted against the decorator).
    result = bare_predict(args)
    metrics.track_metric("predict_result", result)
    return result


# ---- measurements -------------------------------------------------------------------------


def percentile(sorted_values: List[int], q: float) -> float:
    """Nearest-rank percentile of already sorted values."""
    if not sorted_values:
        raise ValueError("no values")
    rank = max(1, min(len(sorted_values), math.ceil(q / 100.0 * len(sorted_values))))
    return float(sorted_values[rank - 1])


def median(sorted_values: List[int]) -> float:
    n = len(sorted_values)
    mid = n // 2
    return float(sorted_values[mid]) if n % 2 else (sorted_values[mid - 1] + sorted_values[mid]) / 2.0


def check_stats(stats: Dict[str, Any], expected: int, what: str) -> None:
    problems = []
    if stats["accepted"] != expected:
        problems.append(f"accepted {stats['accepted']} != {expected}")
    for name in ("dropped", "failed", "rejected", "duplicates", "queued", "in_flight"):
        if stats[name] != 0:
            problems.append(f"{name} {stats[name]} != 0")
    if problems:
        raise BenchError(f"{what}: {', '.join(problems)} (last_error: {stats['last_error']})")


def configure(server: LocalServer, deployment: str, queue_size: int) -> None:
    driftline.init(
        url=server.url,
        api_key=server.key,
        model_crn="crn:bench:model/speed",
        model_build_crn="crn:bench:build/speed",
        model_deployment_crn=deployment,
        queue_size=queue_size,
    )
    if driftline.stats()["dev"]:
        raise BenchError("the client is in development mode, not configured for the bench server")


def measure_overhead(server: LocalServer, inputs: List[Dict[str, Any]], calls: int, warmup: int) -> Dict[str, Any]:
    deployment = "crn:bench:deployment/overhead"
    configure(server, deployment, queue_size=calls + warmup + 1_000)
    k = len(inputs)
    for i in range(warmup):
        args = inputs[i % k]
        bare_predict(args)
        tracked_predict(args)
    clock = time.perf_counter_ns
    bare = [0] * calls
    tracked = [0] * calls
    # Alternate the two per call, so drift in the machine's speed affects both alike.
    for i in range(calls):
        args = inputs[i % k]
        t0 = clock()
        bare_predict(args)
        t1 = clock()
        tracked_predict(args)
        t2 = clock()
        bare[i] = t1 - t0
        tracked[i] = t2 - t1
    if not driftline.flush(FLUSH_TIMEOUT_S):
        raise BenchError(f"overhead run: flush did not finish within {FLUSH_TIMEOUT_S:.0f} s: {driftline.stats()}")
    stats = driftline.stats()
    check_stats(stats, calls + warmup, "overhead run")
    paired = sorted(t - b for b, t in zip(bare, tracked))
    bare.sort()
    tracked.sort()
    return {
        "calls": calls,
        "warmup": warmup,
        "bare_median_us": median(bare) / 1000.0,
        "bare_p99_us": percentile(bare, 99) / 1000.0,
        "tracked_median_us": median(tracked) / 1000.0,
        "tracked_p99_us": percentile(tracked, 99) / 1000.0,
        "overhead_median_us": (median(tracked) - median(bare)) / 1000.0,
        "overhead_paired_median_us": median(paired) / 1000.0,
        "stats": stats,
        "deployment": deployment,
    }


def measure_throughput(server: LocalServer, inputs: List[Dict[str, Any]], predictions: int) -> Dict[str, Any]:
    deployment = "crn:bench:deployment/throughput"
    # A queue that holds every event, so that none is dropped if the calls outrun the sender.
    configure(server, deployment, queue_size=predictions + 1_000)
    k = len(inputs)
    plan = [inputs[i % k] for i in range(predictions)]
    predict = tracked_predict
    sender_ids = [t.native_id for t in getattr(driftline._client.get_client().sender, "_threads", [])]
    main_id = threading.get_native_id()
    cpu0 = (server.cpu_seconds(), _thread_cpu(main_id), _threads_cpu(sender_ids))
    started = time.perf_counter()
    for args in plan:
        predict(args)
    calls_done = time.perf_counter()
    backlog = driftline.stats()["queued"]
    delivered = driftline.flush(FLUSH_TIMEOUT_S)
    finished = time.perf_counter()
    cpu1 = (server.cpu_seconds(), _thread_cpu(main_id), _threads_cpu(sender_ids))
    if not delivered:
        raise BenchError(f"throughput run: flush did not finish within {FLUSH_TIMEOUT_S:.0f} s: {driftline.stats()}")
    stats = driftline.stats()
    check_stats(stats, predictions, "throughput run")
    rows, distinct = server.stored_predictions(deployment)
    if rows != predictions or distinct != predictions:
        raise BenchError(f"throughput run: the server holds {rows} rows ({distinct} distinct UUIDs) of {deployment}, expected {predictions}")
    return {
        "predictions": predictions,
        "seconds": finished - started,
        "calls_seconds": calls_done - started,
        "flush_seconds": finished - calls_done,
        "per_second": predictions / (finished - started),
        "calls_per_second": predictions / (calls_done - started),
        "backlog_after_calls": backlog,
        "stored_rows": rows,
        "cpu_server_s": _delta(cpu1[0], cpu0[0]),
        "cpu_calling_thread_s": _delta(cpu1[1], cpu0[1]),
        "cpu_sender_thread_s": _delta(cpu1[2], cpu0[2]),
        "stats": stats,
        "deployment": deployment,
    }


# ---- report -------------------------------------------------------------------------------


def table(o: Dict[str, Any], t: Dict[str, Any], total_rows: int) -> str:
    def met(ok: bool) -> str:
        return "met" if ok else "**NOT met**"

    def cpu(seconds: Optional[float]) -> str:
        return "n/a" if seconds is None else f"{seconds:.2f} s ({seconds / t['predictions'] * 1e6:.1f} µs/prediction)"

    s_o, s_t = o["stats"], t["stats"]
    lines = [
        "| measurement | value | target |",
        "|---|---|---|",
        f"| bare predict, median / p99 | {o['bare_median_us']:.2f} µs / {o['bare_p99_us']:.2f} µs | |",
        f"| decorated predict (2 × `track_metric`), median / p99 | {o['tracked_median_us']:.2f} µs / {o['tracked_p99_us']:.2f} µs | |",
        f"| overhead per prediction, median difference | **{o['overhead_median_us']:.2f} µs** "
        f"(paired per call: {o['overhead_paired_median_us']:.2f} µs) | ≤ {OVERHEAD_TARGET_US:.0f} µs: {met(o['overhead_median_us'] <= OVERHEAD_TARGET_US)} |",
        f"| overhead run: calls timed, accepted, dropped | {o['calls']:,} each (after {o['warmup']:,} warm-up), "
        f"{s_o['accepted']:,}, {s_o['dropped']} | |",
        f"| throughput, first call to flush returned | **{t['per_second']:,.0f} predictions/s** "
        f"({t['predictions']:,} in {t['seconds']:.2f} s) | ≥ {THROUGHPUT_TARGET:,.0f}/s: {met(t['per_second'] >= THROUGHPUT_TARGET)} |",
        f"| calls alone; flush after the last call | {t['calls_per_second']:,.0f} calls/s ({t['calls_seconds']:.2f} s); "
        f"{t['flush_seconds']:.2f} s, {t['backlog_after_calls']:,} events still queued | |",
        f"| throughput run: accepted, dropped, batches, retries | {s_t['accepted']:,}, {s_t['dropped']}, {s_t['batches']}, {s_t['retries']} | |",
        f"| CPU during the throughput run: calling thread, sender threads, server | "
        f"{cpu(t['cpu_calling_thread_s'])}, {cpu(t['cpu_sender_thread_s'])}, {cpu(t['cpu_server_s'])} | |",
        f"| rows stored (read back, distinct UUIDs); all deployments | {t['stored_rows']:,}; {total_rows:,} | |",
    ]
    return "\n".join(lines)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--bin", default=os.environ.get("DRIFTLINE_BIN") or DEFAULT_BIN, help="the driftline binary")
    parser.add_argument("--calls", type=int, default=100_000, help="timed calls of each function (overhead)")
    parser.add_argument("--warmup", type=int, default=10_000, help="untimed calls of each function first")
    parser.add_argument("--predictions", type=int, default=200_000, help="tracked predictions (throughput)")
    parser.add_argument("--distinct-inputs", type=int, default=1_000, help="distinct input dicts, used in turn")
    parser.add_argument("--json", action="store_true", help="also print the figures as one JSON line")
    parser.add_argument(
        "--database-url",
        help="serve from this Postgres database (it should be empty) instead of a temporary embedded store",
    )
    opts = parser.parse_args()
    if not (os.path.isfile(opts.bin) and os.access(opts.bin, os.X_OK)):
        print(f"speed.py: the driftline binary {opts.bin!r} is missing; set DRIFTLINE_BIN", file=sys.stderr)
        return 2
    # Only this script's settings reach the client.
    for name in [n for n in os.environ if n.startswith("DRIFTLINE_")]:
        del os.environ[name]

    inputs = make_inputs(opts.distinct_inputs)
    with tempfile.TemporaryDirectory(prefix="driftline-speed-") as tmp:
        data_dir = Path(tmp) / "data"
        data_dir.mkdir()
        server = LocalServer(opts.bin, data_dir, opts.database_url)
        try:
            server.start()
            overhead = measure_overhead(server, inputs, opts.calls, opts.warmup)
            throughput = measure_throughput(server, inputs, opts.predictions)
            driftline.shutdown()
            counts = server.get("/api/v1/stats")
            expected_total = opts.calls + opts.warmup + opts.predictions
            if counts.get("predictions") != expected_total:
                raise BenchError(f"the server counts {counts.get('predictions')} predictions, expected {expected_total}")
        except BenchError as err:
            print(f"speed.py: FAILED: {err}", file=sys.stderr)
            return 1
        finally:
            driftline.shutdown()
            server.stop()

    print(
        f"driftline Python client {driftline.__version__}, Python {platform.python_version()} "
        f"({platform.python_implementation()}), {platform.machine()}, {os.cpu_count()} CPUs; "
        f"server on {'Postgres' if opts.database_url else 'the embedded SQLite store'}, 127.0.0.1; client queue_size/batch_size/linger: "
        f"sized to the run/1,000/200 ms"
    )
    print()
    print(table(overhead, throughput, counts["predictions"]))
    if opts.json:
        print()
        print(json.dumps({"overhead": overhead, "throughput": throughput, "server_counts": counts}, default=str))
    ok = overhead["overhead_median_us"] <= OVERHEAD_TARGET_US and throughput["per_second"] >= THROUGHPUT_TARGET
    return 0 if ok else 3


if __name__ == "__main__":
    sys.exit(main())
