"""A process that forks after the client started: the child sends its own predictions, once."""

from __future__ import annotations

import json
import multiprocessing
import os
import time
import traceback
from pathlib import Path

import pytest

import driftline
import driftline.metrics_v1 as metrics
import driftline.models_v1 as models
from driftline import _replica

pytestmark = pytest.mark.skipif(not hasattr(os, "fork"), reason="needs os.fork")


@models.cml_model(metrics=True)
def predict(args):
    metrics.track_metric("input", args)
    return args["n"]


def in_child(work):
    """Run ``work()`` in a child made with os.fork(); its JSON-able answer, or its failure."""
    read_end, write_end = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: never return into pytest
        status = 0
        try:
            os.close(read_end)
            try:
                answer = {"ok": work()}
            except BaseException:
                answer = {"error": traceback.format_exc()}
                status = 1
            with os.fdopen(write_end, "w") as out:
                json.dump(answer, out)
        finally:
            os._exit(status)
    os.close(write_end)
    with os.fdopen(read_end) as answer_in:
        text = answer_in.read()
    _, status = os.waitpid(pid, 0)
    answer = json.loads(text) if text else {"error": f"the child wrote nothing (status {status})"}
    assert "error" not in answer, answer["error"]
    assert os.waitstatus_to_exitcode(status) == 0
    return answer["ok"]


def child_predictions(first, count):
    """The child's part: its stats at the start, then `count` predictions, flushed."""
    at_start = driftline.stats()
    answers = [predict({"n": first + i, "who": "child"}) for i in range(count)]
    delivered = driftline.flush(30)
    return {"at_start": at_start, "uuids": [a["uuid"] for a in answers], "delivered": delivered, "stats": driftline.stats()}


def test_forked_child_sends_its_own_predictions_and_not_the_parents(server, crns):
    # A long linger: the parent's predictions are still queued when it forks.
    driftline.init(url=server.url, api_key=server.key, linger_ms=600_000, **crns)
    before = [predict({"n": i, "who": "parent"}) for i in range(50)]
    assert driftline.stats()["queued"] == 50

    child = in_child(lambda: child_predictions(1000, 30))

    assert child["at_start"]["queued"] == 0 and child["at_start"]["enqueued"] == 0
    assert child["delivered"] is True
    s = child["stats"]
    assert (s["enqueued"], s["accepted"], s["duplicates"], s["dropped"], s["failed"]) == (30, 30, 0, 0, 0)

    after = [predict({"n": 100 + i, "who": "parent"}) for i in range(20)]
    assert driftline.flush(30)
    s = driftline.stats()
    assert (s["enqueued"], s["accepted"], s["duplicates"], s["dropped"], s["failed"]) == (70, 70, 0, 0, 0)

    rows = server.rows(model_deployment_crn=crns["model_deployment_crn"])
    uuids = [r["predictionUuid"] for r in rows]
    assert len(uuids) == len(set(uuids)) == 100
    parent = {a["uuid"] for a in before + after}
    assert set(uuids) == parent | set(child["uuids"])
    assert not parent & set(child["uuids"])
    who = {r["predictionUuid"]: r["metrics"]["input"]["who"] for r in rows}
    assert {u for u, w in who.items() if w == "child"} == set(child["uuids"])
    stored = server.get("/api/v1/stats")
    assert stored["predictions"] == 100


def test_a_child_of_a_child_and_a_parent_sending_during_the_fork(server, crns):
    # The parent's sender is busy (small batches, no linger) while it forks, twice over.
    driftline.init(url=server.url, api_key=server.key, linger_ms=0, batch_size=10, **crns)
    before = [predict({"n": i, "who": "parent"}) for i in range(200)]

    def child_then_grandchild():
        mine = child_predictions(1000, 40)
        grandchild = in_child(lambda: child_predictions(2000, 25))
        return {"child": mine, "grandchild": grandchild}

    family = in_child(child_then_grandchild)
    assert driftline.flush(30)
    rows = server.rows(model_deployment_crn=crns["model_deployment_crn"])
    uuids = [r["predictionUuid"] for r in rows]
    expected = {a["uuid"] for a in before} | set(family["child"]["uuids"]) | set(family["grandchild"]["uuids"])
    assert len(uuids) == len(set(uuids)) == len(expected) == 265
    assert set(uuids) == expected
    assert family["grandchild"]["stats"]["accepted"] == 25
    assert driftline.stats()["duplicates"] == 0


def mp_child(first, count, out):
    # No flush: leaving the process must send what it queued.
    out.put([predict({"n": first + i, "who": "mp"})["uuid"] for i in range(count)])


def test_multiprocessing_fork_child_is_flushed_when_it_ends(server, crns):
    driftline.init(url=server.url, api_key=server.key, linger_ms=600_000, **crns)
    before = [predict({"n": i, "who": "parent"}) for i in range(10)]
    ctx = multiprocessing.get_context("fork")
    out = ctx.Queue()
    workers = [ctx.Process(target=mp_child, args=(1000 * (w + 1), 15, out)) for w in range(2)]
    for w in workers:
        w.start()
    child_uuids = [u for _ in workers for u in out.get(timeout=60)]
    for w in workers:
        w.join(60)
        assert w.exitcode == 0
    assert driftline.flush(30)
    rows = server.rows(model_deployment_crn=crns["model_deployment_crn"])
    uuids = [r["predictionUuid"] for r in rows]
    assert len(uuids) == len(set(uuids)) == 40
    assert set(uuids) == {a["uuid"] for a in before} | set(child_uuids)
    assert driftline.stats()["accepted"] == 10


def test_forked_child_in_dev_mode_leaves_the_server_to_its_parent():
    driftline.init(dev=True, linger_ms=600_000)
    parent = predict({"n": 1, "who": "parent"})
    assert driftline.flush(60)
    state = Path(os.environ["DRIFTLINE_DEV_DIR"]) / "server.json"
    assert state.exists()

    def child():
        answer = predict({"n": 2, "who": "child"})
        closed = driftline.shutdown()  # what the child's exit does
        return {"uuid": answer["uuid"], "closed": closed}

    done = in_child(child)
    assert done["closed"] is True
    # The child did not stop the parent's server or remove its state file.
    assert state.exists()
    rows = metrics.read_metrics(start_timestamp_ms=0)["metrics"]
    assert sorted(r["predictionUuid"] for r in rows) == sorted([parent["uuid"], done["uuid"]])


def test_forked_child_samples_its_own_replica_figures(server, crns):
    driftline.init(url=server.url, api_key=server.key, linger_ms=20, replica_stats_every_s=0.2, **crns)

    def child():
        # No prediction: the sampler alone must run in the child.
        time.sleep(0.7)
        assert driftline.flush(30)
        return {"pid": os.getpid(), "accepted": driftline.stats()["accepted"]}

    done = in_child(child)
    assert done["accepted"] >= 2
    replica = _replica.default_replica_id().rsplit(":", 1)[0] + ":" + str(done["pid"])
    [bucket] = driftline.series(f"@replica.{replica}.memory_bytes", source="raw", step="1d")["series"]
    assert bucket["count"] == done["accepted"]
