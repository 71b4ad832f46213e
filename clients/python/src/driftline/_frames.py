"""Windows as pandas DataFrames and Arrow tables, built chunk by chunk from the rows of
``read_metrics``: the lines of its NDJSON answer, or the record batches of its Arrow IPC stream
turned into rows of the same shape."""

from __future__ import annotations

import http.client
import json
from typing import Any, Dict, Iterable, Iterator, List, Optional

from ._http import cut_off
from .errors import DriftlineError

CHUNK_ROWS = 10_000

#: The columns every row has, in the server's names.
ID_COLUMNS = ("predictionUuid", "modelCrn", "modelBuildCrn", "modelDeploymentCrn", "startTimeStampMs", "endTimeStampMs")

#: The columns of the ``format=arrow`` answer that hold the ID columns, by those columns' names.
ARROW_ID_COLUMNS = {
    "predictionUuid": "uuid",
    "modelCrn": "model_crn",
    "modelBuildCrn": "model_build_crn",
    "modelDeploymentCrn": "model_deployment_crn",
    "startTimeStampMs": "start_timestamp_ms",
    "endTimeStampMs": "end_timestamp_ms",
}

#: The column of the ``format=arrow`` answer that holds each row's metrics as JSON text.
ARROW_METRICS_COLUMN = "metrics"

#: How an Arrow IPC stream ends: a continuation marker and a zero metadata length.
_END_OF_STREAM = b"\xff\xff\xff\xff\x00\x00\x00\x00"


def flatten(row: Dict[str, Any]) -> Dict[str, Any]:
    """One row with its metrics as dotted columns: ``{"input": {"a": 1}}`` → ``input.a``."""
    out: Dict[str, Any] = {name: row.get(name) for name in ID_COLUMNS}

    def walk(prefix: str, value: Any) -> None:
        if isinstance(value, dict) and value:
            for k, v in value.items():
                walk(f"{prefix}.{k}" if prefix else str(k), v)
        else:
            out[prefix] = value

    metrics = row.get("metrics")
    if isinstance(metrics, dict):
        for k, v in metrics.items():
            walk(str(k), v)
    return out


def _chunks(rows: Iterable[Dict[str, Any]]) -> Iterator[List[Dict[str, Any]]]:
    chunk: List[Dict[str, Any]] = []
    for row in rows:
        chunk.append(flatten(row))
        if len(chunk) >= CHUNK_ROWS:
            yield chunk
            chunk = []
    if chunk:
        yield chunk


def to_frame(rows: Iterable[Dict[str, Any]]) -> Any:
    """A pandas DataFrame of the rows; at most CHUNK_ROWS rows are held as dicts at once."""
    try:
        import pandas as pd
    except ImportError:
        raise ImportError("as_frame=True needs pandas: pip install 'driftline[pandas]'") from None
    frames = [pd.DataFrame.from_records(chunk) for chunk in _chunks(rows)]
    if not frames:
        return pd.DataFrame(columns=list(ID_COLUMNS))
    return frames[0] if len(frames) == 1 else pd.concat(frames, ignore_index=True, sort=False)


def to_arrow(rows: Iterable[Dict[str, Any]]) -> Any:
    """A pyarrow Table of the rows, built one chunk at a time."""
    try:
        import pyarrow as pa
    except ImportError:
        raise ImportError("read_metrics_arrow needs pyarrow: pip install 'driftline[arrow]'") from None
    tables = []
    for chunk in _chunks(rows):
        columns: Dict[str, List[Any]] = {}
        for i, row in enumerate(chunk):
            for name, value in row.items():
                column = columns.get(name)
                if column is None:
                    column = columns[name] = [None] * i
                column.append(value)
            for name, column in columns.items():
                if len(column) < i + 1:
                    column.append(None)
        tables.append(pa.table({name: _array(pa, values) for name, values in columns.items()}))
    if not tables:
        return pa.table({name: pa.array([], type=pa.string() if "Crn" in name or "Uuid" in name else pa.int64()) for name in ID_COLUMNS})
    if len(tables) == 1:
        return tables[0]
    try:
        return pa.concat_tables(tables, promote_options="permissive")
    except TypeError:  # pyarrow before 14
        return pa.concat_tables(tables, promote=True)


def _array(pa: Any, values: List[Any]) -> Any:
    """An Arrow array of one column; mixed types (1 and "a") fall back to their JSON text."""
    try:
        return pa.array(values)
    except (pa.ArrowInvalid, pa.ArrowTypeError):
        return pa.array([None if v is None else json.dumps(v) if not isinstance(v, str) else v for v in values], type=pa.string())


class _Body:
    """An HTTP answer's body as pyarrow reads it, keeping the last eight bytes read.

    pyarrow's stream reader ends without complaint when its source ends between two messages;
    :func:`arrow_batches` then checks that those bytes are the end-of-stream marker, so an answer
    cut off there is not taken for a whole one. No message of ``read_metrics`` ends with them: a
    record batch ends with the ``metrics`` column's UTF-8 text (which has no 0xFF byte) and its
    zero padding.
    """

    def __init__(self, resp: Any) -> None:
        self._resp = resp
        self.tail = b""

    def read(self, size: Optional[int] = -1) -> bytes:
        data = self._resp.read() if size is None or size < 0 else self._resp.read(size)
        if data:
            self.tail = (self.tail + data)[-len(_END_OF_STREAM):]
        return data

    @property
    def closed(self) -> bool:
        return bool(self._resp.closed)

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return False


def arrow_batches(resp: Any, what: str) -> Iterator[Any]:
    """The record batches of an Arrow IPC stream, read from the file-like ``resp`` one at a time
    as they arrive. Raises :class:`DriftlineError` when the stream is cut off (mid-message, or
    between messages before its end-of-stream marker) or lacks a column of ``read_metrics``."""
    import pyarrow as pa
    import pyarrow.ipc

    body = _Body(resp)
    broken = (OSError, http.client.HTTPException, pa.ArrowInvalid)
    try:
        reader = pa.ipc.open_stream(body)
    except broken as err:
        raise cut_off(what, err) from None
    names = set(reader.schema.names)
    missing = [name for name in (*ARROW_ID_COLUMNS.values(), ARROW_METRICS_COLUMN) if name not in names]
    if missing:
        raise DriftlineError(
            f"{what}: the Arrow answer has no column {', '.join(missing)}; its columns are {', '.join(reader.schema.names)}"
        )
    while True:
        try:
            batch = reader.read_next_batch()
        except StopIteration:
            break
        except broken as err:
            raise cut_off(what, err) from None
        yield batch
    if body.tail != _END_OF_STREAM:
        raise cut_off(what, "the Arrow stream ended without its end-of-stream marker")


def arrow_rows(batches: Iterable[Any]) -> Iterator[Dict[str, Any]]:
    """The rows of ``read_metrics``'s Arrow record batches, in the shape of its NDJSON rows (the
    metrics parsed from their JSON text, as the NDJSON path parses them); the rows of one batch
    are made at a time."""
    for batch in batches:
        ids = [batch.column(ARROW_ID_COLUMNS[name]).to_pylist() for name in ID_COLUMNS]
        metrics = batch.column(ARROW_METRICS_COLUMN).to_pylist()
        for *values, text in zip(*ids, metrics):
            row: Dict[str, Any] = dict(zip(ID_COLUMNS, values))
            row["metrics"] = {} if text is None else json.loads(text)
            yield row
