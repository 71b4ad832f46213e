"""read_metrics_arrow and read_metrics(as_frame=True) over the server's Arrow IPC stream
(``format=arrow``), compared with the NDJSON path, and their fallback and failures."""

from __future__ import annotations

import http.server
import json
import sys
import threading
import urllib.parse
from typing import Any, Callable, Dict, Iterator, List

import pandas as pd
import pyarrow as pa
import pyarrow.ipc
import pytest

import driftline
import driftline.metrics_v1 as metrics
import driftline.models_v1 as models
from driftline import _client, _frames, _http

ARROW_STREAM = "application/vnd.apache.arrow.stream"


@models.cml_model(metrics=True)
def predict(args):
    metrics.track_metric("input", args["input"])
    for key, value in args.get("tracked", {}).items():
        metrics.track_metric(key, value)
    return 1


#: Predictions whose metrics nest, miss keys in some rows, and hold ints, floats, strings,
#: booleans, lists, nulls and an ISO date string; each with the delayed metrics given for it.
PREDICTIONS = [
    (
        {
            "input": {"petal_length": 1.5, "species": "setosa", "flag": True, "dims": {"w": 0.25, "h": 4}},
            "tracked": {"when": "2024-05-01T12:00:00Z", "count": 3, "tags": ["a", "b"]},
        },
        [{"label": 1}],
    ),
    (
        {
            "input": {"petal_length": 2, "species": "virginica", "flag": False},
            "tracked": {"when": "2024-05-02T08:30:00+02:00", "count": None},
        },
        [],
    ),
    (
        {"input": {"petal_length": 3.25, "note": "no species", "dims": {"w": 1.0}}, "tracked": {"count": 7}},
        # Two deliveries: the later one's keys win.
        [{"label": 0, "label_source": "lab"}, {"label": 1, "checked": True}],
    ),
    (
        {"input": {"petal_length": 0.5, "species": "setosa", "flag": True}, "tracked": {"tags": []}},
        [{"label_source": "field"}],
    ),
]


def track_predictions() -> List[str]:
    uuids = []
    for args, delayed in PREDICTIONS:
        answer = predict(args)
        uuids.append(answer["uuid"])
        for labels in delayed:
            metrics.track_delayed_metrics(labels, answer["uuid"])
            assert driftline.flush(10)  # stored before the next one, which is merged after it
    return uuids


@pytest.fixture
def http_calls(monkeypatch: pytest.MonkeyPatch) -> List[Dict[str, Any]]:
    """The read_metrics requests the client makes, by kind (``arrow``: the Arrow stream opened;
    ``lines``: an NDJSON answer read) with their query parameters."""
    calls: List[Dict[str, Any]] = []
    open_get, get_lines = _http.open_get, _http.get_lines

    def spy_open_get(base_url, api_key, path, params, accept, timeout):
        calls.append({"kind": "arrow", "path": path, "params": dict(params), "accept": accept})
        return open_get(base_url, api_key, path, params, accept, timeout)

    def spy_get_lines(base_url, api_key, path, params, timeout):
        calls.append({"kind": "lines", "path": path, "params": dict(params)})
        return get_lines(base_url, api_key, path, params, timeout)

    monkeypatch.setattr(_http, "open_get", spy_open_get)
    monkeypatch.setattr(_http, "get_lines", spy_get_lines)
    return calls


def ndjson_table(**window: Any) -> pa.Table:
    """The table built from the NDJSON answer, as from a server without format=arrow."""
    return _frames.to_arrow(_client.read_rows(_client.window_params(**window)))


def ndjson_frame(**window: Any) -> pd.DataFrame:
    return _frames.to_frame(_client.read_rows(_client.window_params(**window)))


def window(crns: Dict[str, str]) -> Dict[str, Any]:
    return {
        "model_crn": None,
        "model_build_crn": None,
        "model_deployment_crn": crns["model_deployment_crn"],
        "start_timestamp_ms": None,
        "end_timestamp_ms": None,
    }


def assert_same_table(actual: pa.Table, expected: pa.Table) -> None:
    assert actual.schema.equals(expected.schema), f"{actual.schema}\n!=\n{expected.schema}"
    assert actual.to_pylist() == expected.to_pylist()
    assert actual.equals(expected)


@pytest.mark.both_backends
@pytest.mark.parametrize("chunk_rows", [_frames.CHUNK_ROWS, 3])
def test_arrow_and_ndjson_give_the_same_table(client, crns, http_calls, monkeypatch, chunk_rows):
    monkeypatch.setattr(_frames, "CHUNK_ROWS", chunk_rows)
    uuids = track_predictions()
    table = metrics.read_metrics_arrow(model_deployment_crn=crns["model_deployment_crn"])
    assert [c["kind"] for c in http_calls] == ["arrow"]
    assert http_calls[0]["params"]["format"] == "arrow"
    assert http_calls[0]["accept"] == ARROW_STREAM
    expected = ndjson_table(**window(crns))
    assert [c["kind"] for c in http_calls] == ["arrow", "lines"]
    assert http_calls[1]["params"]["format"] == "ndjson"
    assert_same_table(table, expected)

    # What the table holds, beyond its being equal to the NDJSON one.
    assert table.column_names[:6] == list(_frames.ID_COLUMNS)
    assert sorted(table.column("predictionUuid").to_pylist()) == sorted(uuids)
    rows = {r["predictionUuid"]: r for r in table.to_pylist()}
    first, second, third, fourth = (rows[u] for u in uuids)
    assert first["modelCrn"] == crns["model_crn"] and first["modelBuildCrn"] == crns["model_build_crn"]
    assert first["input.dims.w"] == 0.25 and first["input.dims.h"] == 4 and second["input.dims.h"] is None
    assert [r["input.petal_length"] for r in (first, second, third, fourth)] == [1.5, 2.0, 3.25, 0.5]
    assert [r["input.flag"] for r in (first, second, third, fourth)] == [True, False, None, True]
    assert [r["label"] for r in (first, second, third, fourth)] == [1, None, 1, None]
    assert [r["label_source"] for r in (first, second, third, fourth)] == [None, None, "lab", "field"]
    assert third["checked"] is True and third["input.species"] is None
    assert first["tags"] == ["a", "b"] and fourth["tags"] == []
    assert first["when"] == "2024-05-01T12:00:00Z"
    schema = table.schema
    assert schema.field("when").type == pa.string()  # an ISO date stays text
    assert schema.field("input.flag").type == pa.bool_()
    assert schema.field("input.petal_length").type == pa.float64()
    assert schema.field("count").type == pa.int64()
    assert schema.field("startTimeStampMs").type == pa.int64()


@pytest.mark.both_backends
def test_as_frame_from_arrow_equals_the_ndjson_frame(client, crns, http_calls):
    track_predictions()
    frame = metrics.read_metrics(model_deployment_crn=crns["model_deployment_crn"], as_frame=True)
    assert [c["kind"] for c in http_calls] == ["arrow"]
    pd.testing.assert_frame_equal(frame, ndjson_frame(**window(crns)))
    assert len(frame) == len(PREDICTIONS)
    assert frame["label"].notna().sum() == 2


@pytest.mark.both_backends
def test_a_column_of_mixed_types_holds_json_text_in_both(client, crns):
    for value in (1, "a", 2.5, {"x": 1}):
        predict({"input": {"v": 0}, "tracked": {"mixed": value}})
    table = metrics.read_metrics_arrow(model_deployment_crn=crns["model_deployment_crn"])
    assert_same_table(table, ndjson_table(**window(crns)))
    assert table.schema.field("mixed.x").type == pa.int64()
    assert sorted(v for v in table.column("mixed").to_pylist() if v is not None) == ["1", "2.5", "a"]


@pytest.mark.both_backends
def test_an_empty_window_has_the_id_columns(client, crns, http_calls):
    table = metrics.read_metrics_arrow(model_deployment_crn="crn:test:deployment/none")
    assert [c["kind"] for c in http_calls] == ["arrow"]
    assert table.num_rows == 0
    assert table.schema.equals(ndjson_table(**dict(window(crns), model_deployment_crn="crn:test:deployment/none")).schema)
    frame = metrics.read_metrics(model_deployment_crn="crn:test:deployment/none", as_frame=True)
    assert len(frame) == 0 and list(frame.columns) == list(_frames.ID_COLUMNS)


@pytest.mark.both_backends
def test_reads_its_own_writes(server, crns, http_calls):
    driftline.init(url=server.url, api_key=server.key, linger_ms=600_000, **crns)
    answer = predict({"input": {"petal_length": 1.0}})
    assert driftline.stats()["queued"] == 1
    table = metrics.read_metrics_arrow(model_deployment_crn=crns["model_deployment_crn"])
    assert table.column("predictionUuid").to_pylist() == [answer["uuid"]]
    metrics.track_delayed_metrics({"label": 1}, answer["uuid"])
    frame = metrics.read_metrics(model_deployment_crn=crns["model_deployment_crn"], as_frame=True)
    assert frame["label"].tolist() == [1]
    assert [c["kind"] for c in http_calls] == ["arrow", "arrow"]


def test_without_pyarrow_as_frame_reads_ndjson(client, crns, http_calls, monkeypatch):
    track_predictions()
    with_arrow = metrics.read_metrics(model_deployment_crn=crns["model_deployment_crn"], as_frame=True)
    monkeypatch.setitem(sys.modules, "pyarrow", None)  # `import pyarrow` now raises ImportError
    monkeypatch.setitem(sys.modules, "pyarrow.ipc", None)
    without = metrics.read_metrics(model_deployment_crn=crns["model_deployment_crn"], as_frame=True)
    assert [c["kind"] for c in http_calls] == ["arrow", "lines"]
    pd.testing.assert_frame_equal(without, with_arrow)
    with pytest.raises(ImportError, match="pyarrow"):
        metrics.read_metrics_arrow(model_deployment_crn=crns["model_deployment_crn"])
    assert len(http_calls) == 2  # nothing was asked for


@pytest.mark.both_backends
def test_error_answers_raise_with_the_problem_detail(client, crns):
    with pytest.raises(driftline.DriftlineError) as caught:
        metrics.read_metrics_arrow(model_crn=crns["model_crn"], model_deployment_crn=crns["model_deployment_crn"])
    assert caught.value.status == 400
    assert "select by exactly one CRN" in caught.value.detail
    assert "select by exactly one CRN" in str(caught.value)

    driftline.init(url=client.url, api_key="wrong-key-wrong-key", linger_ms=20, **crns)
    with pytest.raises(driftline.DriftlineError) as caught:
        metrics.read_metrics(model_crn=crns["model_crn"], as_frame=True)
    assert caught.value.status == 401
    assert "API key" in caught.value.detail


# ---- a stub server: an older server, and answers cut off ---------------------------------

#: Two rows as read_metrics's NDJSON answer has them.
STUB_ROWS = [
    {
        "modelCrn": "crn:test:model/stub",
        "modelBuildCrn": "crn:test:build/stub",
        "modelDeploymentCrn": "crn:test:deployment/stub",
        "predictionUuid": f"00000000-0000-4000-8000-00000000000{i}",
        "startTimeStampMs": 1_700_000_000_000 + i,
        "endTimeStampMs": 1_700_000_000_005 + i,
        "metrics": {"input": {"a": i, "b": "x" * i}, "label": i % 2 == 0},
    }
    for i in range(2)
]


def arrow_stream(rows: List[Dict[str, Any]]) -> bytes:
    """The rows as the server's format=arrow answer: one record batch, none without rows."""
    schema = pa.schema(
        [pa.field(name, pa.string(), nullable=False) for name in ("model_crn", "model_build_crn", "model_deployment_crn", "uuid")]
        + [pa.field(name, pa.int64(), nullable=False) for name in ("start_timestamp_ms", "end_timestamp_ms")]
        + [pa.field("metrics", pa.string(), nullable=False)]
    )
    batch = pa.record_batch(
        [
            pa.array([r["modelCrn"] for r in rows]),
            pa.array([r["modelBuildCrn"] for r in rows]),
            pa.array([r["modelDeploymentCrn"] for r in rows]),
            pa.array([r["predictionUuid"] for r in rows]),
            pa.array([r["startTimeStampMs"] for r in rows], pa.int64()),
            pa.array([r["endTimeStampMs"] for r in rows], pa.int64()),
            pa.array([json.dumps(r["metrics"], separators=(",", ":"), sort_keys=True) for r in rows]),
        ],
        schema=schema,
    )
    sink = pa.BufferOutputStream()
    with pa.ipc.new_stream(sink, schema) as writer:
        if rows:
            writer.write_batch(batch)
    return sink.getvalue().to_pybytes()


class Stub:
    """An HTTP/1.1 server on a loopback port whose GET answers ``answer`` writes, given the
    request's handler and query; the queries asked are kept in ``asked``."""

    def __init__(self, answer: Callable[[http.server.BaseHTTPRequestHandler, Dict[str, str]], None]) -> None:
        self.asked: List[Dict[str, str]] = []
        stub = self

        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_GET(self) -> None:  # noqa: N802 (the handler's name)
                query = dict(urllib.parse.parse_qsl(urllib.parse.urlsplit(self.path).query))
                stub.asked.append(query)
                answer(self, query)

            def log_message(self, *args: Any) -> None:
                pass

        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)

    def __enter__(self) -> "Stub":
        self.thread.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


def send(handler: http.server.BaseHTTPRequestHandler, status: int, content_type: str, body: bytes) -> None:
    handler.send_response(status)
    handler.send_header("Content-Type", content_type)
    handler.send_header("Content-Length", str(len(body)))
    handler.end_headers()
    handler.wfile.write(body)


def send_chunked(handler: http.server.BaseHTTPRequestHandler, body: bytes, *, finish: bool) -> None:
    """``body`` as one chunk of a chunked answer; with ``finish`` the answer then ends as it
    should, else the connection is closed where it is, as a server does when a read fails."""
    handler.send_response(200)
    handler.send_header("Content-Type", ARROW_STREAM)
    handler.send_header("Transfer-Encoding", "chunked")
    handler.end_headers()
    handler.wfile.write(b"%x\r\n%s\r\n" % (len(body), body))
    if finish:
        handler.wfile.write(b"0\r\n\r\n")
    else:
        handler.close_connection = True
    handler.wfile.flush()


@pytest.fixture
def use_stub(crns: Dict[str, str]) -> Iterator[Callable[..., Stub]]:
    """Starts a stub server and configures the client for it."""
    started: List[Stub] = []

    def start(answer: Callable[[http.server.BaseHTTPRequestHandler, Dict[str, str]], None]) -> Stub:
        stub = Stub(answer).__enter__()
        started.append(stub)
        driftline.init(url=stub.url, api_key="stub-key-stub-key", linger_ms=20, **crns)
        return stub

    try:
        yield start
    finally:
        driftline.shutdown()
        for stub in started:
            stub.__exit__(None, None, None)


def test_a_server_without_format_arrow_is_read_as_ndjson(use_stub, http_calls):
    def older_server(handler, query):
        if query.get("format") == "ndjson":
            send(handler, 200, "application/x-ndjson", b"".join(json.dumps(r).encode() + b"\n" for r in STUB_ROWS))
        else:
            problem = {"type": "about:blank", "title": "Bad Request", "status": 400,
                       "detail": f"parameter `format`: `{query.get('format')}` is not a format; use json or ndjson"}
            send(handler, 400, "application/problem+json", json.dumps(problem).encode())

    stub = use_stub(older_server)
    table = metrics.read_metrics_arrow(model_deployment_crn="crn:test:deployment/stub")
    assert [q["format"] for q in stub.asked] == ["arrow", "ndjson"]
    assert_same_table(table, _frames.to_arrow(STUB_ROWS))
    frame = metrics.read_metrics(model_deployment_crn="crn:test:deployment/stub", as_frame=True)
    pd.testing.assert_frame_equal(frame, _frames.to_frame(STUB_ROWS))
    assert [c["kind"] for c in http_calls] == ["arrow", "lines", "arrow", "lines"]


def test_the_stub_stream_whole_gives_the_table(use_stub):
    use_stub(lambda handler, query: send_chunked(handler, arrow_stream(STUB_ROWS), finish=True))
    assert_same_table(metrics.read_metrics_arrow(model_deployment_crn="crn:test:deployment/stub"), _frames.to_arrow(STUB_ROWS))


@pytest.mark.parametrize(
    "cut",
    [
        pytest.param(lambda stream: len(stream) - 30, id="inside-the-batch"),
        pytest.param(lambda stream: len(stream) - 8, id="before-the-end-marker"),
        pytest.param(lambda stream: len(arrow_stream([])) - 8, id="after-the-schema"),
        pytest.param(lambda stream: 6, id="inside-the-schema"),
    ],
)
@pytest.mark.parametrize("finish", [False, True], ids=["connection-closed", "chunked-body-ended"])
@pytest.mark.parametrize("as_frame", [False, True], ids=["table", "frame"])
def test_a_stream_cut_off_raises(use_stub, cut, finish, as_frame):
    stream = arrow_stream(STUB_ROWS)
    use_stub(lambda handler, query: send_chunked(handler, stream[: cut(stream)], finish=finish))
    with pytest.raises(driftline.DriftlineError, match="cut off before its end") as caught:
        if as_frame:
            metrics.read_metrics(model_deployment_crn="crn:test:deployment/stub", as_frame=True)
        else:
            metrics.read_metrics_arrow(model_deployment_crn="crn:test:deployment/stub")
    assert "read the window again" in str(caught.value)


def test_an_answer_that_is_not_an_arrow_stream_raises(use_stub):
    use_stub(lambda handler, query: send(handler, 200, "application/json", b'{"metrics":[]}'))
    with pytest.raises(driftline.DriftlineError, match="not an Arrow IPC stream"):
        metrics.read_metrics_arrow(model_deployment_crn="crn:test:deployment/stub")
