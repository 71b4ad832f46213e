"""driftline.sql() against the real server's POST /api/v1/sql."""

from __future__ import annotations

import json
import sys
import time
import urllib.error
import urllib.request

import pandas as pd
import pyarrow as pa
import pytest

import driftline
import driftline.metrics_v1 as metrics
import driftline.models_v1 as models


@models.cml_model(metrics=True)
def predict(args):
    metrics.track_metric("input", args)
    score = args["tenure"] / 100
    metrics.track_metric("score", score)
    return score


INPUTS = [("basic", 10.0), ("basic", 30.0), ("pro", 55.0), ("basic", 2.5), ("pro", 80.0)]


def per_plan_query(deployment: str) -> str:
    return (
        "SELECT json_get_str(metrics, 'input', 'plan') AS plan, count(*) AS n, "
        "sum(json_get_float(metrics, 'input', 'tenure')) AS tenure_sum, "
        "max(json_get_float(metrics, 'score')) AS max_score "
        f"FROM predictions WHERE model_deployment_crn = '{deployment}' GROUP BY 1 ORDER BY 1"
    )


def expected_per_plan():
    out = {}
    for plan, tenure in INPUTS:
        n, total, top = out.get(plan, (0, 0.0, float("-inf")))
        out[plan] = (n + 1, total + tenure, max(top, tenure / 100))
    return [(plan, *out[plan]) for plan in sorted(out)]


def track_inputs():
    for plan, tenure in INPUTS:
        predict({"plan": plan, "tenure": tenure})


def assert_rows(actual, expected):
    assert [(plan, n) for plan, n, _, _ in actual] == [(plan, n) for plan, n, _, _ in expected]
    assert [v for _, _, *floats in actual for v in floats] == pytest.approx([v for _, _, *floats in expected for v in floats])


def as_tuples(frame: pd.DataFrame):
    return [(r.plan, int(r.n), float(r.tenure_sum), float(r.max_score)) for r in frame.itertuples()]


@pytest.mark.both_backends
def test_counts_and_json_aggregate_as_a_dataframe(client, crns):
    track_inputs()
    frame = driftline.sql(per_plan_query(crns["model_deployment_crn"]))
    assert isinstance(frame, pd.DataFrame)
    assert list(frame.columns) == ["plan", "n", "tenure_sum", "max_score"]
    assert_rows(as_tuples(frame), expected_per_plan())
    # Another deployment's rows are not counted.
    other = driftline.sql("SELECT count(*) AS n FROM predictions WHERE model_deployment_crn = 'crn:test:deployment/none'")
    assert other["n"].tolist() == [0]


@pytest.mark.both_backends
def test_as_arrow_returns_a_table_with_the_same_values(client, crns):
    track_inputs()
    query = per_plan_query(crns["model_deployment_crn"])
    table = driftline.sql(query, as_arrow=True)
    assert isinstance(table, pa.Table)
    assert table.column_names == ["plan", "n", "tenure_sum", "max_score"]
    assert pa.types.is_integer(table.schema.field("n").type)
    assert pa.types.is_floating(table.schema.field("tenure_sum").type)
    rows = [(r["plan"], r["n"], r["tenure_sum"], r["max_score"]) for r in table.to_pylist()]
    assert_rows(rows, expected_per_plan())
    assert table.to_pandas().equals(driftline.sql(query))


def test_without_pyarrow_the_json_answer_gives_the_same_frame(client, crns, monkeypatch):
    track_inputs()
    query = per_plan_query(crns["model_deployment_crn"])
    with_arrow = driftline.sql(query)
    monkeypatch.setitem(sys.modules, "pyarrow", None)  # `import pyarrow` now raises ImportError
    monkeypatch.setitem(sys.modules, "pyarrow.ipc", None)
    without = driftline.sql(query)
    assert_rows(as_tuples(without), as_tuples(with_arrow))
    with pytest.raises(driftline.NotSupportedError, match="pyarrow"):
        driftline.sql(query, as_arrow=True)


def server_error_detail(server, query: str):
    """The server's own problem+json answer to a query, read without the client."""
    req = urllib.request.Request(
        server.url + "/api/v1/sql",
        data=json.dumps({"sql": query}).encode(),
        method="POST",
        headers={"Authorization": f"Bearer {server.key}", "Content-Type": "application/json"},
    )
    with pytest.raises(urllib.error.HTTPError) as caught:
        urllib.request.urlopen(req, timeout=30)
    return caught.value.code, json.loads(caught.value.read())["detail"]


@pytest.mark.parametrize("as_arrow", [False, True])
def test_ddl_raises_with_the_servers_message(client, crns, as_arrow):
    track_inputs()
    query = "DROP TABLE predictions"
    status, detail = server_error_detail(client, query)
    assert status == 400 and detail
    with pytest.raises(driftline.DriftlineError) as caught:
        driftline.sql(query, as_arrow=as_arrow)
    assert not isinstance(caught.value, driftline.ServerUnavailableError)
    assert caught.value.status == 400
    assert caught.value.detail == detail
    assert detail in str(caught.value)
    # The table is still there with every row.
    assert driftline.sql(f"SELECT count(*) AS n FROM predictions WHERE model_deployment_crn = '{crns['model_deployment_crn']}'")["n"].tolist() == [len(INPUTS)]


def test_bad_sql_raises_with_the_servers_message(client):
    status, detail = server_error_detail(client, "SELEC 1")
    assert status == 400
    with pytest.raises(driftline.DriftlineError) as caught:
        driftline.sql("SELEC 1")
    assert caught.value.status == 400 and caught.value.detail == detail


@pytest.mark.both_backends
def test_reads_its_own_writes(server, crns):
    # A linger of a minute: nothing is sent before sql() flushes it.
    driftline.init(url=server.url, api_key=server.key, linger_ms=60_000, batch_size=1000, **crns)
    answers = [predict({"plan": plan, "tenure": tenure}) for plan, tenure in INPUTS]
    label = answers[0]["uuid"]
    metrics.track_delayed_metrics({"label": 1}, label)
    assert driftline.stats()["sent"] == 0
    frame = driftline.sql(
        "SELECT uuid, json_get_int(metrics, 'label') AS label FROM labelled_predictions "
        f"WHERE model_deployment_crn = '{crns['model_deployment_crn']}' ORDER BY uuid"
    )
    assert sorted(frame["uuid"]) == sorted(a["uuid"] for a in answers)
    labels = dict(zip(frame["uuid"], frame["label"]))
    assert labels[label] == 1
    assert all(pd.isna(v) for u, v in labels.items() if u != label)


def test_query_is_checked_before_sending(client):
    with pytest.raises(ValueError, match="empty"):
        driftline.sql("  ")
    with pytest.raises(TypeError):
        driftline.sql(None)  # type: ignore[arg-type]


@pytest.fixture
def limited_server(driftline_bin, tmp_path):
    from conftest import Server

    srv = Server(driftline_bin, tmp_path / "limited", extra_args=["--sql-max-rows", "3"])
    srv.data_dir.mkdir()
    srv.start()
    try:
        yield srv
    finally:
        srv.stop()


def test_a_query_over_the_row_limit_raises_422_with_the_limit(limited_server, crns):
    driftline.init(url=limited_server.url, api_key=limited_server.key, linger_ms=20, **crns)
    track_inputs()
    with pytest.raises(driftline.DriftlineError) as caught:
        driftline.sql("SELECT uuid FROM predictions")
    assert not isinstance(caught.value, driftline.ServerUnavailableError)
    assert caught.value.status == 422
    assert "more than 3 rows" in caught.value.detail
    # Within the limit, the same table answers.
    assert len(driftline.sql("SELECT uuid FROM predictions LIMIT 3")) == 3


def open_slow_answer(server, query: str):
    """A POST /api/v1/sql whose (large) answer is not read: the server's query waits on the
    client, holding its place among the queries that run at once."""
    import http.client

    conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=30)
    body = json.dumps({"sql": query})
    conn.request("POST", "/api/v1/sql?format=ndjson", body=body,
                 headers={"Authorization": f"Bearer {server.key}", "Content-Type": "application/json"})
    response = conn.getresponse()
    assert response.status == 200
    return conn


def test_a_busy_server_answers_503_and_the_client_says_so(client, crns):
    track_inputs()
    driftline.flush()
    # 5^8 = 390,625 rows of about 100 bytes: far more than the sockets hold.
    big = "SELECT a.metrics, b.uuid FROM " + ", ".join(f"predictions {t}" for t in "abcdefgh")
    held = [open_slow_answer(client, big) for _ in range(4)]
    try:
        with pytest.raises(driftline.ServerUnavailableError) as caught:
            driftline.sql("SELECT 1 AS one")
        assert caught.value.status == 503
        assert "retry" in caught.value.detail
    finally:
        for conn in held:
            conn.close()
    # Once the held answers are gone the server answers again (boundedly waited for).
    deadline = time.monotonic() + 20
    while True:
        try:
            assert driftline.sql("SELECT 1 AS one")["one"].tolist() == [1]
            break
        except driftline.ServerUnavailableError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.2)
