"""Model metrics, with the functions and keyword names of Cloudera AI's ``cml.metrics_v1``.

``track_metric`` inside a predict function decorated with ``@models.cml_model(metrics=True)``
attaches a value to that prediction. ``track_delayed_metrics`` attaches ground truth that arrives
later, by prediction UUID; ``track_aggregate_metrics`` records values computed over a window.
``read_metrics`` reads a window back, after first sending what this process has queued.

``dev=True`` is accepted everywhere for compatibility: without ``DRIFTLINE_URL`` (or
``driftline.init(url=...)``) and without ``DRIFTLINE_KAFKA_BROKERS`` the client always runs in
development mode on the local server. With Kafka delivery the reads need ``DRIFTLINE_URL`` and
may lag behind the writes by what ``driftline ingest`` has not stored yet.
"""

from __future__ import annotations

from typing import Any, Dict, Optional

from . import _client, _frames


def track_metric(key: str, value: Any) -> None:
    """Attach ``key: value`` to the prediction being made by the current call of the decorated
    predict function. Outside one it logs a warning and does nothing; it never raises."""
    _client.track_metric(key, value)


def track_delayed_metrics(metrics: Dict[str, Any], prediction_uuid: str, dev: bool = False) -> None:
    """Attach ``metrics`` (such as ``{"label": 1}``) to the prediction ``prediction_uuid``, the
    ``uuid`` its decorated predict function returned. Queued and sent in the background."""
    _client.track_delayed_metrics(metrics, prediction_uuid)


def track_aggregate_metrics(
    metrics: Dict[str, Any],
    start_timestamp_ms: int,
    end_timestamp_ms: int,
    model_deployment_crn: Optional[str] = None,
    dev: bool = False,
) -> None:
    """Record ``metrics`` computed over ``[start_timestamp_ms, end_timestamp_ms)`` of a deployment
    (by default the one this process is configured as, or the development deployment)."""
    _client.track_aggregate_metrics(metrics, start_timestamp_ms, end_timestamp_ms, model_deployment_crn)


def read_metrics(
    model_crn: Optional[str] = None,
    model_build_crn: Optional[str] = None,
    model_deployment_crn: Optional[str] = None,
    start_timestamp_ms: Optional[int] = None,
    end_timestamp_ms: Optional[int] = None,
    dev: bool = False,
    *,
    as_frame: bool = False,
) -> Any:
    """The predictions of a model, build or deployment (give one CRN) whose start time is in
    ``[start_timestamp_ms, end_timestamp_ms)``, with their tracked and delayed metrics.

    Returns the server's shape, ``{"metrics": [{"modelCrn", "modelBuildCrn",
    "modelDeploymentCrn", "predictionUuid", "startTimeStampMs", "endTimeStampMs", "metrics"}]}``,
    or with ``as_frame=True`` a pandas DataFrame: the columns ``predictionUuid``, ``modelCrn``,
    ``modelBuildCrn``, ``modelDeploymentCrn``, ``startTimeStampMs``, ``endTimeStampMs``, then one
    column per metric, nested keys joined by dots (``input.petal_length``). The frame is built in
    chunks of rows, from the server's Arrow IPC stream (``format=arrow``) when pyarrow is
    installed, else, or from a server without ``format=arrow``, from its NDJSON; both give the
    same frame.

    Raises :class:`driftline.DriftlineError` with the server's detail when the read fails, or
    when the answer is cut off before its end.
    """
    params = _client.window_params(model_crn, model_build_crn, model_deployment_crn, start_timestamp_ms, end_timestamp_ms)
    if as_frame:
        return _frames.to_frame(_client.read_rows(params, arrow=True))
    return {"metrics": list(_client.read_rows(params))}


def read_metrics_arrow(
    model_crn: Optional[str] = None,
    model_build_crn: Optional[str] = None,
    model_deployment_crn: Optional[str] = None,
    start_timestamp_ms: Optional[int] = None,
    end_timestamp_ms: Optional[int] = None,
    dev: bool = False,
) -> Any:
    """The same window as :func:`read_metrics`, as a ``pyarrow.Table`` with the columns of its
    ``as_frame=True`` frame: the prediction's IDs and times, then one column per metric.

    The server sends the window as an Arrow IPC stream (``format=arrow``), read one record batch
    at a time; the table is built from it in chunks of rows, a column's type inferred from its
    values (a column whose values mix types, such as ``1`` and ``"a"``, holds their JSON text).
    A server without ``format=arrow`` is read as NDJSON, which gives the same table. Needs pyarrow (``pip install 'driftline[arrow]'``);
    raises :class:`driftline.DriftlineError` with the server's detail when the read fails, or
    when the answer is cut off before its end.
    """
    params = _client.window_params(model_crn, model_build_crn, model_deployment_crn, start_timestamp_ms, end_timestamp_ms)
    return _frames.to_arrow(_client.read_rows(params, arrow=True))


def read_aggregate_metrics(
    model_deployment_crn: Optional[str] = None,
    start_timestamp_ms: Optional[int] = None,
    end_timestamp_ms: Optional[int] = None,
    dev: bool = False,
) -> Dict[str, Any]:
    """The aggregate metrics of a deployment, ``{"metrics": [{"modelDeploymentCrn",
    "startTimeStampMs", "endTimeStampMs", "metrics", "source"}]}``."""
    params = _client.window_params(None, None, model_deployment_crn, start_timestamp_ms, end_timestamp_ms)
    return {"metrics": _client.read_aggregates(params)}


__all__ = [
    "track_metric",
    "track_delayed_metrics",
    "track_aggregate_metrics",
    "read_metrics",
    "read_metrics_arrow",
    "read_aggregate_metrics",
]
