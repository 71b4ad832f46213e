"""Every public function against a real server."""

from __future__ import annotations

import json
import logging
import math
import threading
import uuid

import pytest

import driftline
import driftline.cdsw as cdsw
import driftline.metrics_v1 as metrics
import driftline.models_v1 as models

# Every test here runs on the embedded SQLite store and on Postgres (see conftest.py).
pytestmark = pytest.mark.both_backends


@models.cml_model(metrics=True)
def predict(args):
    metrics.track_metric("input", args)
    result = args["petal_length"] * 2
    metrics.track_metric("predict_result", result)
    return result


def test_prediction_is_stored_with_its_metrics_and_technical_fields(client, crns):
    args = {"petal_length": 1.5, "species": "setosa"}
    answer = predict(args)
    assert set(answer) == {"uuid", "prediction"}
    assert answer["prediction"] == 3.0
    assert uuid.UUID(answer["uuid"]).version == 4

    rows = metrics.read_metrics(model_deployment_crn=crns["model_deployment_crn"])["metrics"]
    assert len(rows) == 1
    row = rows[0]
    assert row["predictionUuid"] == answer["uuid"]
    assert row["modelCrn"] == crns["model_crn"]
    assert row["modelBuildCrn"] == crns["model_build_crn"]
    assert row["modelDeploymentCrn"] == crns["model_deployment_crn"]
    assert row["startTimeStampMs"] <= row["endTimeStampMs"]
    assert row["metrics"]["input"] == args
    assert row["metrics"]["predict_result"] == 3.0
    technical = row["metrics"]["_driftline"]
    assert technical == {
        "input_bytes": len(json.dumps(args, separators=(",", ":"))),
        "output_bytes": len("3.0"),
    }
    # The same row selected by build and by model, and as the server itself answers it.
    assert metrics.read_metrics(model_build_crn=crns["model_build_crn"])["metrics"] == rows
    assert cdsw.read_metrics(model_crn=crns["model_crn"])["metrics"] == rows
    assert client.rows(model_crn=crns["model_crn"]) == rows


def test_window_is_on_the_prediction_start_time(client, crns):
    first = predict({"petal_length": 1.0})
    rows = metrics.read_metrics(model_deployment_crn=crns["model_deployment_crn"])["metrics"]
    start = rows[0]["startTimeStampMs"]
    dep = crns["model_deployment_crn"]
    assert metrics.read_metrics(model_deployment_crn=dep, start_timestamp_ms=start, end_timestamp_ms=start + 1)["metrics"][0]["predictionUuid"] == first["uuid"]
    assert metrics.read_metrics(model_deployment_crn=dep, start_timestamp_ms=0, end_timestamp_ms=start)["metrics"] == []
    assert metrics.read_metrics(model_deployment_crn=dep, start_timestamp_ms=start + 1)["metrics"] == []


def test_read_without_crn_reads_this_process_deployment(client, crns):
    answer = predict({"petal_length": 2.0})
    rows = metrics.read_metrics()["metrics"]
    assert [r["predictionUuid"] for r in rows] == [answer["uuid"]]


def test_read_sees_own_writes_before_linger(server, crns):
    driftline.init(url=server.url, api_key=server.key, linger_ms=600_000, **crns)
    answer = predict({"petal_length": 2.0})
    assert driftline.stats()["queued"] == 1
    rows = metrics.read_metrics(model_deployment_crn=crns["model_deployment_crn"])["metrics"]
    assert [r["predictionUuid"] for r in rows] == [answer["uuid"]]


def test_delayed_metrics_join_the_prediction(client, crns):
    answer = predict({"petal_length": 1.2})
    metrics.track_delayed_metrics({"actual_result": 2.4}, answer["uuid"])
    cdsw.track_delayed_metrics({"label_source": "lab"}, answer["uuid"], dev=False)
    rows = metrics.read_metrics(model_crn=crns["model_crn"])["metrics"]
    assert rows[0]["metrics"]["actual_result"] == 2.4
    assert rows[0]["metrics"]["label_source"] == "lab"
    with pytest.raises(ValueError):
        metrics.track_delayed_metrics({"x": 1}, "not-a-uuid")
    with pytest.raises(TypeError):
        metrics.track_delayed_metrics([1], answer["uuid"])


def test_aggregate_metrics_are_stored(client, crns):
    metrics.track_aggregate_metrics({"roc_auc": 0.91}, 1763769600000, 1763856000000)
    cdsw.track_aggregate_metrics({"mse": 0.5}, 1763769600000, 1763856000000, model_deployment_crn="crn:test:deployment/other", dev=False)
    assert driftline.flush(10)
    ours = client.get("/api/v1/aggregate_metrics", model_deployment_crn=crns["model_deployment_crn"])["metrics"]
    assert [(a["metrics"], a["startTimeStampMs"], a["endTimeStampMs"]) for a in ours] == [({"roc_auc": 0.91}, 1763769600000, 1763856000000)]
    other = metrics.read_aggregate_metrics(model_deployment_crn="crn:test:deployment/other")["metrics"]
    assert [a["metrics"] for a in other] == [{"mse": 0.5}]
    assert metrics.read_aggregate_metrics()["metrics"] == ours


def test_as_frame_flattens_metrics_into_columns(client, crns):
    answers = [predict({"petal_length": float(i), "species": "setosa"}) for i in range(5)]
    metrics.track_delayed_metrics({"label": 1}, answers[0]["uuid"])
    frame = metrics.read_metrics(model_deployment_crn=crns["model_deployment_crn"], as_frame=True)
    assert len(frame) == 5
    for column in ("predictionUuid", "modelCrn", "startTimeStampMs", "input.petal_length", "input.species", "predict_result", "_driftline.input_bytes", "label"):
        assert column in frame.columns, column
    assert sorted(frame["input.petal_length"]) == [0.0, 1.0, 2.0, 3.0, 4.0]
    assert set(frame["predictionUuid"]) == {a["uuid"] for a in answers}
    assert frame["label"].notna().sum() == 1


def test_arrow_table(client, crns):
    answers = [predict({"petal_length": float(i)}) for i in range(3)]
    table = metrics.read_metrics_arrow(model_deployment_crn=crns["model_deployment_crn"])
    assert table.num_rows == 3
    assert sorted(table.column("input.petal_length").to_pylist()) == [0.0, 1.0, 2.0]
    assert set(table.column("predictionUuid").to_pylist()) == {a["uuid"] for a in answers}
    empty = cdsw.read_metrics_arrow(model_deployment_crn="crn:test:deployment/none")
    assert empty.num_rows == 0 and "predictionUuid" in empty.column_names


def test_frames_are_built_in_chunks(client, crns, monkeypatch):
    from driftline import _frames

    monkeypatch.setattr(_frames, "CHUNK_ROWS", 7)
    for i in range(20):
        predict({"petal_length": float(i), **({"extra": i} if i == 15 else {})})
    frame = metrics.read_metrics(model_deployment_crn=crns["model_deployment_crn"], as_frame=True)
    table = metrics.read_metrics_arrow(model_deployment_crn=crns["model_deployment_crn"])
    assert len(frame) == table.num_rows == 20
    assert frame["input.extra"].notna().sum() == 1
    assert table.column("input.extra").null_count == 19


def test_values_json_cannot_hold_are_sent_as_null(client, crns):
    @models.model(metrics=True)
    def odd(args):
        metrics.track_metric("score", float("nan"))
        metrics.track_metric("ids", {1, 2})
        return math.inf

    answer = odd({"x": 1})
    assert math.isinf(answer["prediction"])
    row = metrics.read_metrics(model_crn=crns["model_crn"])["metrics"][0]
    assert row["metrics"]["score"] is None
    assert row["metrics"]["ids"] == [1, 2]
    assert driftline.stats()["rejected"] == 0


def test_exception_is_reraised_unchanged_and_recorded(client, crns):
    error = ValueError("petal_length must be positive")

    @models.cml_model(metrics=True)
    def failing(args):
        metrics.track_metric("input", args)
        raise error

    with pytest.raises(ValueError) as caught:
        failing({"petal_length": -1})
    assert caught.value is error
    assert caught.traceback[-1].name == "failing"
    row = metrics.read_metrics(model_crn=crns["model_crn"])["metrics"][0]
    assert row["metrics"]["input"] == {"petal_length": -1}
    assert row["metrics"]["_driftline"]["error"] == {"type": "ValueError", "message": "petal_length must be positive"}
    assert "output_bytes" not in row["metrics"]["_driftline"]


def test_decorator_forms(client, crns):
    def bare(args):
        return args + 1

    assert models.cml_model(bare) is bare
    assert models.cml_model(metrics=False)(bare) is bare
    assert models.model(metrics=False)(bare)(1) == 2
    legacy = cdsw.model_metrics(bare)
    assert legacy(1)["prediction"] == 2
    ours = driftline.model(metrics=True)(bare)
    assert ours.__name__ == "bare"
    assert ours(2)["prediction"] == 3
    assert len(metrics.read_metrics(model_crn=crns["model_crn"])["metrics"]) == 2


def test_track_metric_outside_a_prediction_warns_and_does_not_raise(client, caplog):
    with caplog.at_level(logging.WARNING, logger="driftline"):
        metrics.track_metric("input", {"a": 1})
    assert "outside a predict function" in caplog.text
    assert driftline.stats()["enqueued"] == 0


def test_dev_crns_are_used_when_no_identity_is_configured(server):
    driftline.init(url=server.url, api_key=server.key, linger_ms=20)
    answer = predict({"petal_length": 1.0})
    rows = cdsw.read_metrics(model_deployment_crn=cdsw.dev_model_deployment_crn, start_timestamp_ms=0, dev=True)["metrics"]
    assert [r["predictionUuid"] for r in rows] == [answer["uuid"]]
    assert rows[0]["modelCrn"] == cdsw.dev_model_crn
    assert rows[0]["modelBuildCrn"] == cdsw.dev_model_build_crn


def test_configuration_from_environment(server, crns, monkeypatch):
    monkeypatch.setenv("DRIFTLINE_URL", server.url)
    monkeypatch.setenv("DRIFTLINE_API_KEY", server.key)
    monkeypatch.setenv("DRIFTLINE_MODEL_CRN", crns["model_crn"])
    monkeypatch.setenv("DRIFTLINE_MODEL_BUILD_CRN", crns["model_build_crn"])
    monkeypatch.setenv("DRIFTLINE_MODEL_DEPLOYMENT_CRN", crns["model_deployment_crn"])
    driftline.shutdown()  # the next call configures itself from the environment
    answer = predict({"petal_length": 1.0})
    assert driftline.stats()["url"] == server.url
    assert driftline.stats()["dev"] is False
    rows = server.rows(model_build_crn=crns["model_build_crn"]) if driftline.flush(10) else []
    assert [r["predictionUuid"] for r in rows] == [answer["uuid"]]


def test_server_errors_carry_the_problem_detail(client, crns):
    with pytest.raises(driftline.DriftlineError) as caught:
        metrics.read_metrics(model_crn=crns["model_crn"], model_deployment_crn=crns["model_deployment_crn"])
    assert caught.value.status == 400
    assert "select by exactly one CRN" in caught.value.detail
    assert "select by exactly one CRN" in str(caught.value)

    driftline.init(url=client.url, api_key="wrong-key-wrong-key", linger_ms=20, **crns)
    predict({"petal_length": 1.0})
    assert driftline.flush(10)
    s = driftline.stats()
    assert s["failed"] == 1 and s["sent"] == 0
    assert "401" in s["last_error"]
    with pytest.raises(driftline.DriftlineError) as caught:
        metrics.read_metrics(model_crn=crns["model_crn"])
    assert caught.value.status == 401
    assert "API key" in caught.value.detail


def test_stats_count_what_happened(client, crns):
    answers = [predict({"petal_length": float(i)}) for i in range(10)]
    assert driftline.flush(10)
    s = driftline.stats()
    assert (s["enqueued"], s["sent"], s["accepted"], s["duplicates"], s["rejected"], s["dropped"], s["queued"], s["in_flight"]) == (10, 10, 10, 0, 0, 0, 0, 0)
    assert s["batches"] >= 1
    assert s["url"] == client.url
    assert len({a["uuid"] for a in answers}) == 10


def test_shutdown_flushes_and_a_new_client_follows(client, crns):
    driftline.init(url=client.url, api_key=client.key, linger_ms=600_000, **crns)
    answer = predict({"petal_length": 1.0})
    assert driftline.shutdown() is True
    assert [r["predictionUuid"] for r in client.rows(model_crn=crns["model_crn"])] == [answer["uuid"]]


def test_eight_threads_predicting_concurrently(client, crns):
    threads_n, per_thread = 8, 250
    seen = {}
    lock = threading.Lock()
    barrier = threading.Barrier(threads_n)

    @models.cml_model(metrics=True)
    def tagged(args):
        metrics.track_metric("thread", args["thread"])
        metrics.track_metric("i", args["i"])
        return args["thread"] * 1000 + args["i"]

    def work(t):
        barrier.wait(10)
        for i in range(per_thread):
            answer = tagged({"thread": t, "i": i})
            assert answer["prediction"] == t * 1000 + i
            with lock:
                seen[answer["uuid"]] = (t, i)

    workers = [threading.Thread(target=work, args=(t,)) for t in range(threads_n)]
    for w in workers:
        w.start()
    for w in workers:
        w.join(60)
    assert len(seen) == threads_n * per_thread
    rows = metrics.read_metrics(model_deployment_crn=crns["model_deployment_crn"])["metrics"]
    assert len(rows) == threads_n * per_thread
    for row in rows:
        m = row["metrics"]
        assert seen[row["predictionUuid"]] == (m["thread"], m["i"])
        assert set(m) == {"thread", "i", "_driftline"}
    assert driftline.stats()["accepted"] == threads_n * per_thread
