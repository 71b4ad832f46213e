"""Delivery when the server is away: retries, nothing lost or stored twice, bounded memory."""

from __future__ import annotations

import time

import driftline
import driftline.metrics_v1 as metrics
import driftline.models_v1 as models


@models.cml_model(metrics=True)
def predict(args):
    metrics.track_metric("input", args)
    return args["n"]


def wait_for(condition, timeout=20.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(0.02)
    return False


def test_server_down_then_back_loses_and_duplicates_nothing(server, crns):
    driftline.init(url=server.url, api_key=server.key, linger_ms=10, batch_size=50, max_backoff_s=0.2, **crns)
    before = [predict({"n": i}) for i in range(100)]
    assert driftline.flush(10)

    server.stop()
    during = [predict({"n": 100 + i}) for i in range(300)]
    assert wait_for(lambda: driftline.stats()["retries"] >= 3)
    assert driftline.flush(0.5) is False
    s = driftline.stats()
    assert s["queued"] + s["in_flight"] == 300
    assert "cannot reach" in s["last_error"]

    server.start()
    assert driftline.flush(30)
    rows = server.rows(model_deployment_crn=crns["model_deployment_crn"])
    uuids = [r["predictionUuid"] for r in rows]
    assert len(uuids) == len(set(uuids)) == 400
    assert set(uuids) == {a["uuid"] for a in before + during}
    assert sorted(r["metrics"]["input"]["n"] for r in rows) == list(range(400))
    s = driftline.stats()
    assert (s["sent"], s["accepted"], s["dropped"], s["failed"]) == (400, 400, 0, 0)


def test_resending_a_delivered_batch_is_counted_as_duplicate_not_stored_twice(server, crns):
    # Two clients with the same queue content stand for a retry of a batch the server stored
    # but whose answer was lost: the UUIDs make the second delivery a no-op.
    driftline.init(url=server.url, api_key=server.key, linger_ms=10, **crns)
    answers = [predict({"n": i}) for i in range(20)]
    assert driftline.flush(10)
    from driftline import _client
    from driftline._encode import dumps

    sender = _client.get_client().sender
    for answer, n in zip(answers, range(20)):
        sender.put(dumps({
            "v": 1, "type": "prediction", "uuid": answer["uuid"], **{k: v for k, v in crns.items()},
            "start_timestamp_ms": 1763798400000, "end_timestamp_ms": 1763798400001, "metrics": {"input": {"n": n}},
        }))
    assert driftline.flush(10)
    s = driftline.stats()
    assert (s["accepted"], s["duplicates"]) == (20, 20)
    assert len(server.rows(model_deployment_crn=crns["model_deployment_crn"])) == 20


def test_queue_overflow_drops_the_oldest_and_counts_them(server, crns):
    # The server is down while 100 predictions are made into a queue of 10.
    server.stop()
    driftline.init(url=server.url, api_key=server.key, queue_size=10, batch_size=5, linger_ms=0, max_backoff_s=0.2, **crns)
    answers = [predict({"n": i}) for i in range(100)]
    s = driftline.stats()
    assert s["enqueued"] == 100
    assert s["dropped"] == 100 - s["queued"] - s["in_flight"]
    assert s["in_flight"] <= 2 * 5  # a batch per sender thread
    assert s["dropped"] >= 100 - 10 - 2 * 5
    assert s["queued"] <= 10

    server.start()
    assert driftline.flush(30)
    s = driftline.stats()
    rows = server.rows(model_deployment_crn=crns["model_deployment_crn"])
    stored = {r["predictionUuid"] for r in rows}
    assert len(rows) == s["accepted"] == 100 - s["dropped"]
    # The newest ten were never dropped.
    assert {a["uuid"] for a in answers[-10:]} <= stored
