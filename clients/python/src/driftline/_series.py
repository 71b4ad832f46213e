"""Series reads (``GET /api/v1/series``): the query, checked before it is sent, and the frame."""

from __future__ import annotations

import decimal
import math
from typing import Any, Dict, Iterable, List, Optional, Union

from .errors import NotSupportedError

#: Bucket lengths the server knows.
STEPS = ("1m", "1h", "1d")
SOURCES = ("auto", "rollup", "raw")
#: How far back a read reaches when no start is given: a day of minutes, 30 days of hours, a
#: year of days (the server's defaults too; sent explicitly so that older servers agree).
DEFAULT_WINDOW_MS = {"1m": 86_400_000, "1h": 30 * 86_400_000, "1d": 365 * 86_400_000}
MAX_QUANTILES = 100

#: The frame's columns of every bucket, whether the bucket has them or not.
FIXED_COLUMNS = ("bucket_start", "bucket_start_ms", "count", "sum", "min", "max", "mean", "stddev")

Quantiles = Union[str, float, Iterable[float], None]


def check_step(step: Any) -> str:
    """``step`` if it is ``1m``, ``1h`` or ``1d``; a ValueError naming ``step`` otherwise."""
    if step not in STEPS:
        raise ValueError(f"step={step!r} is not a bucket length: use '1m', '1h' or '1d'")
    return str(step)


def check_source(source: Any) -> str:
    """``source`` if it is ``auto``, ``rollup`` or ``raw``; a ValueError naming it otherwise."""
    if source not in SOURCES:
        raise ValueError(f"source={source!r} is not a series source: use 'auto', 'rollup' or 'raw'")
    return str(source)


def check_quantiles(quantiles: Quantiles) -> List[float]:
    """The ranks asked for, each a number in [0, 1]: ``[0.5, 0.99]``, ``0.5`` or ``"0.5,0.99"``."""
    if quantiles is None:
        return []
    if isinstance(quantiles, bool):
        raise TypeError("quantiles must be ranks such as [0.5, 0.9, 0.99], not a bool")
    if isinstance(quantiles, str):
        items: List[Any] = [q.strip() for q in quantiles.split(",") if q.strip()]
    elif isinstance(quantiles, (int, float)):
        items = [quantiles]
    else:
        try:
            items = list(quantiles)
        except TypeError:
            raise TypeError(f"quantiles must be ranks such as [0.5, 0.9, 0.99], not {type(quantiles).__name__}") from None
    ranks = []
    for q in items:
        try:
            rank = float(q) if not isinstance(q, bool) else math.nan
        except (TypeError, ValueError):
            rank = math.nan
        if not 0.0 <= rank <= 1.0:
            raise ValueError(f"quantiles: {q!r} is not a rank in [0, 1]; ask for ranks such as [0.5, 0.9, 0.99]")
        ranks.append(rank)
    if len(ranks) > MAX_QUANTILES:
        raise ValueError(f"quantiles: {len(ranks)} ranks asked for, at most {MAX_QUANTILES} in one read")
    return ranks


def query(
    metric: Any,
    model_deployment_crn: str,
    start_timestamp_ms: Optional[int],
    end_timestamp_ms: Optional[int],
    step: Any,
    quantiles: Quantiles,
    include_sketch: bool,
    source: Any,
    now_ms: int,
) -> Dict[str, Any]:
    """The query string of a series read, checked argument by argument.

    Without ``start_timestamp_ms``, the window reaches back :data:`DEFAULT_WINDOW_MS` of the step
    from its end (``now_ms`` when no end is given).
    """
    if not isinstance(metric, str) or not metric:
        raise ValueError(f"metric={metric!r} is not a metric path: name one such as 'input.tenure', 'prediction' or '@latency_ms'")
    step = check_step(step)
    source = check_source(source)
    ranks = check_quantiles(quantiles)
    end = None if end_timestamp_ms is None else int(end_timestamp_ms)
    if start_timestamp_ms is None:
        start = max(0, (now_ms if end is None else end) - DEFAULT_WINDOW_MS[step])
    else:
        start = int(start_timestamp_ms)
    if end is not None and end <= start:
        raise ValueError(f"end_timestamp_ms ({end}) must be after start_timestamp_ms ({start})")
    return {
        "model_deployment_crn": model_deployment_crn,
        "metric": metric,
        "start_timestamp_ms": start,
        "end_timestamp_ms": end,
        "step": step,
        "quantiles": ",".join(repr(q) for q in ranks) or None,
        "include": "sketch" if include_sketch else None,
        "source": source,
    }


def quantile_column(rank: Union[str, float]) -> str:
    """The frame column of a rank: ``p50`` for 0.5, ``p99.9`` for 0.999, ``p100`` for 1."""
    percent = (decimal.Decimal(repr(float(rank))) * 100).normalize()
    return "p" + format(percent, "f")


def to_frame(answer: Dict[str, Any], quantiles: Quantiles, include_sketch: bool) -> Any:
    """A pandas DataFrame of a series answer, one row per bucket (see :func:`driftline.series_frame`)."""
    try:
        import pandas as pd
    except ImportError:
        raise NotSupportedError("driftline.series_frame() needs pandas: pip install 'driftline[pandas]'") from None
    q_columns = [quantile_column(q) for q in check_quantiles(quantiles)]
    count_columns: List[str] = []
    records = []
    for point in answer.get("series") or []:
        record: Dict[str, Any] = {
            "bucket_start_ms": point.get("bucketStartMs"),
            "count": point.get("count"),
            **{name: point.get(name) for name in ("sum", "min", "max", "mean", "stddev")},
        }
        for rank, value in (point.get("quantiles") or {}).items():
            record[quantile_column(rank)] = value
        for value, n in (point.get("counts") or {}).items():
            column = f"counts.{value}"
            if column not in count_columns:
                count_columns.append(column)
            record[column] = n
        if "counts" in point or "otherCount" in point:
            record["other_count"] = point.get("otherCount", 0)
        if include_sketch:
            record["sketch"] = point.get("sketch")
        records.append(record)
    columns = list(FIXED_COLUMNS[1:]) + q_columns + sorted(count_columns)
    if any("other_count" in r for r in records):
        columns.append("other_count")
    if include_sketch:
        columns.append("sketch")
    frame = pd.DataFrame.from_records(records, columns=columns)
    numeric = ["sum", "min", "max", "mean", "stddev", *q_columns]
    frame[numeric] = frame[numeric].astype("float64")  # None (a categorical bucket) as NaN
    frame.insert(0, "bucket_start", pd.to_datetime(frame["bucket_start_ms"].astype("int64"), unit="ms", utc=True))
    return frame
