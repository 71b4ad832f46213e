"""What the decorator records, made cheaply: UUIDs from batched random bytes, the input encoded once."""

from __future__ import annotations

import json
import math
import threading
import uuid

import numpy as np
import pytest

import driftline
import driftline.metrics_v1 as metrics
import driftline.models_v1 as models
from driftline import _client, _uuids
from driftline._encode import dumps


def test_uuids_are_canonical_random_version_4_and_distinct():
    made = [_uuids.uuid4() for _ in range(20_000)] + _uuids.make_batch(1000)
    assert len(set(made)) == len(made)
    for text in made:
        parsed = uuid.UUID(text)
        assert parsed.version == 4
        assert parsed.variant == uuid.RFC_4122
        assert str(parsed) == text  # lower-case 8-4-4-4-12, as str(uuid.uuid4()) prints
    # Every other bit is random: across 21,000 UUIDs each of the 122 free bits takes both values.
    ones = [0] * 128
    for text in made:
        value = uuid.UUID(text).int
        for bit in range(128):
            ones[bit] += (value >> bit) & 1
    fixed = {bit for bit in range(128) if ones[bit] in (0, len(made))}
    # Version 0100 in bits 76..79, variant 10 in bits 62..63 (counted from the least significant).
    assert fixed == {76, 77, 78, 79, 62, 63}


def test_uuids_are_distinct_across_threads():
    per_thread, threads_n = 5_000, 8
    results = [[] for _ in range(threads_n)]
    barrier = threading.Barrier(threads_n)

    def work(out):
        barrier.wait(10)
        for _ in range(per_thread):
            out.append(_uuids.uuid4())

    workers = [threading.Thread(target=work, args=(out,)) for out in results]
    for w in workers:
        w.start()
    for w in workers:
        w.join(60)
    made = [u for out in results for u in out]
    assert len(made) == len(set(made)) == per_thread * threads_n


PREFIX = '{"v":1,"type":"prediction","model_crn":"crn:m","model_build_crn":"crn:b","model_deployment_crn":"crn:d",'


def expected_event(prediction_uuid, start, end, metrics_, payload, result, error):
    """The event as a dict, encoded whole with dumps(): what the decorator recorded before the
    input was encoded once."""
    technical = {"input_bytes": len(dumps(payload).encode("utf-8"))}
    if error is None:
        technical["output_bytes"] = len(dumps(result).encode("utf-8"))
    else:
        technical["error"] = {"type": type(error).__name__, "message": str(error)}
    event = {
        "v": 1,
        "type": "prediction",
        "model_crn": "crn:m",
        "model_build_crn": "crn:b",
        "model_deployment_crn": "crn:d",
        "uuid": prediction_uuid,
        "start_timestamp_ms": start,
        "end_timestamp_ms": max(start, end),
        "metrics": dict(metrics_, _driftline=technical),
    }
    return json.loads(dumps(event))


CASES = [
    # (metrics, payload, result, error); "input" is the payload object itself where it is tracked
    ({"input": "PAYLOAD", "predict_result": "RESULT"}, {"a": 1, "b": 2.5, "plan": "basic"}, 0.1 + 0.2, None),
    ({"input": "PAYLOAD", "score": float("nan"), "ids": {3}}, {"x": float("inf"), 1: "int key"}, math.inf, None),
    ({"label": "é ✓", "n": 10**30, "ok": True, "none": None}, "plain string input", "é", None),
    ({"arr": np.array([1.5, 2.5]), "f": np.float64(0.25), "i": np.int64(7)}, np.array([[1, 2]]), np.float32(0.5), None),
    ({"input": "PAYLOAD", "_driftline": "overwritten"}, [1, 2, 3], [4], None),
    ({"input": "PAYLOAD"}, {"args": [1, 2], "kwargs": {"k": (1, 2)}}, None, ValueError("bad input: é")),
    ({}, 3, True, None),
]


@pytest.mark.parametrize(("metrics_", "payload", "result", "error"), CASES)
def test_event_is_what_encoding_the_whole_event_gives(metrics_, payload, result, error):
    stand_in = {"PAYLOAD": payload, "RESULT": result}
    metrics_ = {k: stand_in[v] if isinstance(v, str) and v in stand_in else v for k, v in metrics_.items()}
    text = _client.prediction_json(PREFIX, "7f1c2e1a-5b7d-4f0e-9a55-0b9c6f2f3a10", 1795926621384, 1795926621385, metrics_, payload, result, error)
    reference = {k: v for k, v in metrics_.items() if k != "_driftline"}
    assert json.loads(text) == expected_event("7f1c2e1a-5b7d-4f0e-9a55-0b9c6f2f3a10", 1795926621384, 1795926621385, reference, payload, result, error)
    assert text.isascii()


def test_the_input_is_recorded_as_it_was_when_the_call_returned(client, crns):
    @models.cml_model(metrics=True)
    def predict(args):
        metrics.track_metric("input", args)
        args["seen"] = True  # the predict function's own change is part of what it was given back
        return len(args)

    args = {"petal_length": 1.5, "tags": ["a"]}
    answer = predict(args)
    # The caller reuses the dict afterwards: the recorded prediction must not change with it.
    args["petal_length"] = 99.0
    args["tags"].append("b")
    rows = metrics.read_metrics(model_deployment_crn=crns["model_deployment_crn"])["metrics"]
    assert [r["predictionUuid"] for r in rows] == [answer["uuid"]]
    assert rows[0]["metrics"]["input"] == {"petal_length": 1.5, "tags": ["a"], "seen": True}
    assert rows[0]["metrics"]["_driftline"]["input_bytes"] == len('{"petal_length":1.5,"tags":["a"],"seen":true}')


def test_many_predictions_arrive_once_each_with_their_own_input(client, crns):
    @models.cml_model(metrics=True)
    def predict(args):
        metrics.track_metric("input", args)
        return args["n"] * 2

    answers = [predict({"n": n}) for n in range(3000)]
    assert driftline.flush(30)
    rows = metrics.read_metrics(model_deployment_crn=crns["model_deployment_crn"])["metrics"]
    assert len(rows) == 3000
    by_uuid = {r["predictionUuid"]: r["metrics"]["input"]["n"] for r in rows}
    assert by_uuid == {a["uuid"]: a["prediction"] // 2 for a in answers}
    s = driftline.stats()
    assert (s["enqueued"], s["accepted"], s["duplicates"], s["dropped"]) == (3000, 3000, 0, 0)
