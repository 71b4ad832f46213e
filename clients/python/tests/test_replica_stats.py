"""Replica figures (``driftline.track_replica_stats`` and the opt-in sampler) against a real server."""

from __future__ import annotations

import os
import re
import threading
import time

import pytest

import driftline
from driftline import _replica


def figures(replica_id, figure="cpu_percent"):
    return driftline.series(f"@replica.{replica_id}.{figure}", source="raw", step="1d")["series"]


def wait_for(condition, timeout=20.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(0.02)
    return False


def burn_cpu(seconds=0.2):
    end = time.process_time() + seconds
    while time.process_time() < end:
        pass


def test_given_figures_are_stored_as_replica_series(client, crns):
    event = driftline.track_replica_stats(12.5, 1000, replica_id="r-1")
    assert event["model_deployment_crn"] == crns["model_deployment_crn"]
    assert driftline.flush(10)
    [cpu] = figures("r-1")
    assert (cpu["count"], cpu["sum"]) == (1, 12.5)
    [memory] = figures("r-1", "memory_bytes")
    assert (memory["count"], memory["sum"]) == (1, 1000.0)
    s = driftline.stats()
    assert (s["accepted"], s["rejected"]) == (1, 0)


def test_measured_figures_of_this_process(client):
    first = driftline.track_replica_stats()
    burn_cpu()
    event = driftline.track_replica_stats()
    assert isinstance(event["cpu_percent"], float) and 0 < event["cpu_percent"] <= 100_000
    assert isinstance(event["memory_bytes"], int) and event["memory_bytes"] > 1_000_000
    assert re.fullmatch(r"[A-Za-z0-9_-]+:" + str(os.getpid()), event["replica_id"])
    only_memory = driftline.track_replica_stats(cpu_percent=0.0, replica_id="r-2")
    assert only_memory["cpu_percent"] == 0.0 and only_memory["memory_bytes"] > 0
    [cpu] = figures(event["replica_id"])
    assert cpu["count"] == 2
    assert cpu["sum"] == pytest.approx(first["cpu_percent"] + event["cpu_percent"])


def test_replica_id_from_the_environment(server, crns, monkeypatch):
    monkeypatch.setenv("DRIFTLINE_REPLICA_ID", "pod-7d9f:x2k")
    driftline.init(url=server.url, api_key=server.key, linger_ms=20, **crns)
    assert driftline.track_replica_stats(1.0, 2)["replica_id"] == "pod-7d9f:x2k"
    assert figures("pod-7d9f:x2k")[0]["count"] == 1


@pytest.mark.parametrize(
    ("kwargs", "error", "named"),
    [
        ({"replica_id": "pod.1"}, ValueError, "replica_id='pod.1'"),
        ({"replica_id": ""}, ValueError, "replica_id=''"),
        ({"replica_id": "x" * 129}, ValueError, "1 to 128"),
        ({"replica_id": 7}, TypeError, "replica_id must be a string"),
        ({"cpu_percent": -1}, ValueError, "cpu_percent=-1"),
        ({"cpu_percent": 100_001}, ValueError, "cpu_percent=100001"),
        ({"cpu_percent": "high"}, TypeError, "cpu_percent must be a number"),
        ({"memory_bytes": 1.5}, ValueError, "memory_bytes=1.5"),
        ({"memory_bytes": -1}, ValueError, "memory_bytes=-1"),
    ],
)
def test_figures_the_server_would_refuse_raise_here(client, kwargs, error, named):
    with pytest.raises(error) as caught:
        driftline.track_replica_stats(**kwargs)
    assert named in str(caught.value)
    assert driftline.stats()["enqueued"] == 0


def test_invalid_replica_id_in_init_or_environment(server, monkeypatch):
    with pytest.raises(ValueError, match="replica_id='a.b'"):
        driftline.init(url=server.url, api_key=server.key, replica_id="a.b")
    monkeypatch.setenv("DRIFTLINE_REPLICA_ID", "a.b")
    driftline.init(url=server.url, api_key=server.key)
    with pytest.raises(ValueError, match=r"DRIFTLINE_REPLICA_ID"):
        driftline.track_replica_stats()
    with pytest.raises(ValueError, match="replica_stats_every_s"):
        driftline.init(url=server.url, api_key=server.key, replica_stats_every_s=-1)
    # The sampler cannot raise into anyone: it skips, and says why.
    driftline.init(url=server.url, api_key=server.key, replica_stats_every_s=0.05)
    assert wait_for(lambda: "DRIFTLINE_REPLICA_ID='a.b'" in (driftline.stats()["last_error"] or ""))
    assert driftline.stats()["enqueued"] == 0


def test_sender_thread_samples_when_asked(server, crns):
    before = {t.name for t in threading.enumerate()}
    driftline.init(url=server.url, api_key=server.key, linger_ms=20, replica_id="auto-1", replica_stats_every_s=0.1, **crns)
    assert wait_for(lambda: driftline.stats()["accepted"] >= 3)
    new_threads = {t.name for t in threading.enumerate()} - before
    assert new_threads <= {"driftline-sender-0", "driftline-sender-1"}  # no thread of its own
    assert driftline.shutdown()
    driftline.init(url=server.url, api_key=server.key, **crns)
    [cpu] = figures("auto-1")
    assert cpu["count"] >= 3
    assert 0 <= cpu["min"] <= cpu["max"] <= 100_000
    [memory] = figures("auto-1", "memory_bytes")
    assert memory["count"] == cpu["count"] and memory["min"] > 0


def test_sampling_from_the_environment_and_off_by_default(server, crns, monkeypatch):
    driftline.init(url=server.url, api_key=server.key, linger_ms=20, **crns)
    time.sleep(0.3)
    assert driftline.stats()["enqueued"] == 0
    monkeypatch.setenv("DRIFTLINE_REPLICA_STATS_EVERY_S", "0.1")
    monkeypatch.setenv("DRIFTLINE_REPLICA_ID", "env-1")
    driftline.init(url=server.url, api_key=server.key, linger_ms=20, **crns)
    assert wait_for(lambda: driftline.stats()["accepted"] >= 2)
    driftline.init(url=server.url, api_key=server.key, linger_ms=20, replica_stats_every_s=0, **crns)  # 0: off
    time.sleep(0.3)
    assert driftline.stats()["enqueued"] == 0
    assert figures("env-1")[0]["count"] >= 2
    monkeypatch.setenv("DRIFTLINE_REPLICA_STATS_EVERY_S", "often")
    with pytest.raises(ValueError, match="DRIFTLINE_REPLICA_STATS_EVERY_S='often'"):
        driftline.init(url=server.url, api_key=server.key)


@pytest.mark.skipif(not hasattr(os, "fork"), reason="no fork here")
def test_a_forked_child_measures_cpu_from_the_fork():
    burn_cpu(0.3)
    _replica.METER.cpu_percent()  # the parent's next figure starts from its CPU time now
    parent_baseline = _replica.METER._cpu_s
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: report and leave without running the parent's exit handlers
        try:
            os.write(write, repr((_replica.METER._cpu_s, _replica.METER.cpu_percent())).encode())
        finally:
            os._exit(0)
    os.close(write)
    with os.fdopen(read) as f:
        child_baseline, child_cpu = eval(f.read())  # noqa: S307 (our own child's repr of two floats)
    os.waitpid(pid, 0)
    assert child_baseline < parent_baseline  # the child's own CPU time, which started at the fork
    assert 0 <= child_cpu <= 100_000
