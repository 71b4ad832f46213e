"""Windows as pandas DataFrames and Arrow tables, built chunk by chunk from the NDJSON stream."""

from __future__ import annotations

from typing import Any, Dict, Iterable, Iterator, List

CHUNK_ROWS = 10_000

#: The columns every row has, in the server's names.
ID_COLUMNS = ("predictionUuid", "modelCrn", "modelBuildCrn", "modelDeploymentCrn", "startTimeStampMs", "endTimeStampMs")


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
        import json

        return pa.array([None if v is None else json.dumps(v) if not isinstance(v, str) else v for v in values], type=pa.string())
