"""driftline: record every prediction a model makes, attach late ground truth, read any window.

The model-metrics API of Cloudera AI, against a driftline server::

    import driftline.models_v1 as models
    import driftline.metrics_v1 as metrics

    @models.cml_model(metrics=True)
    def predict(args):
        metrics.track_metric("input", args)
        ...

Configure with ``DRIFTLINE_URL``, ``DRIFTLINE_API_KEY`` and ``DRIFTLINE_MODEL_CRN``,
``DRIFTLINE_MODEL_BUILD_CRN``, ``DRIFTLINE_MODEL_DEPLOYMENT_CRN``, or with :func:`init`.
``DRIFTLINE_KAFKA_BROKERS`` (and ``DRIFTLINE_KAFKA_TOPIC``) sends events to Kafka instead, for
``driftline ingest`` (``pip install 'driftline[kafka]'``); reads still need ``DRIFTLINE_URL``.
Without a URL or brokers the client runs in development mode on a local ``driftline serve`` it
starts.

Beyond Cloudera's API: :func:`series` and :func:`series_frame` read one metric of a deployment
over time in buckets (count, sum, min, max, mean, stddev, quantiles, category counts), and
:func:`track_replica_stats` (or ``init(replica_stats_every_s=...)``) records this process's CPU
and memory as the series ``@replica.<id>.cpu_percent`` and ``@replica.<id>.memory_bytes``;
:func:`sql` runs a SQL query on the server and returns a pandas DataFrame (or an Arrow table).
"""

from __future__ import annotations

import json
from typing import Any, Dict, Optional

from . import _client, _replica, _series
from ._config import Config
from .errors import DevServerError, DriftlineError, NotSupportedError, ServerUnavailableError
from .metrics_v1 import (
    read_aggregate_metrics,
    read_metrics,
    read_metrics_arrow,
    track_aggregate_metrics,
    track_delayed_metrics,
    track_metric,
)
from .models_v1 import cml_model, model

__version__ = "0.1.0"


def init(
    url: Optional[str] = None,
    api_key: Optional[str] = None,
    *,
    model_crn: Optional[str] = None,
    model_build_crn: Optional[str] = None,
    model_deployment_crn: Optional[str] = None,
    dev: bool = False,
    queue_size: Optional[int] = None,
    batch_size: Optional[int] = None,
    linger_ms: Optional[float] = None,
    request_timeout_s: Optional[float] = None,
    max_backoff_s: Optional[float] = None,
    exit_flush_timeout_s: Optional[float] = None,
    replica_id: Optional[str] = None,
    replica_stats_every_s: Optional[float] = None,
    kafka_brokers: Optional[str] = None,
    kafka_topic: Optional[str] = None,
    kafka_options: Optional[Dict[str, str]] = None,
) -> None:
    """(Re)configure the client; what is not given comes from the ``DRIFTLINE_*`` environment.

    ``dev=True`` uses the local development server even when ``DRIFTLINE_URL`` is set. Events
    queued under the previous configuration are flushed to where they were going first.
    ``queue_size`` (100,000) bounds the events held in memory (the oldest are dropped past it),
    ``batch_size`` (1,000) and ``linger_ms`` (200) decide when a batch is sent.

    ``replica_id`` names this process in replica figures (``DRIFTLINE_REPLICA_ID``; default
    ``<hostname>:<pid>``). ``replica_stats_every_s`` (``DRIFTLINE_REPLICA_STATS_EVERY_S``; default
    off, 0 turns it off) makes the sender thread queue this process's figures, as
    :func:`track_replica_stats` measures them, every that many seconds.

    ``kafka_brokers`` (``DRIFTLINE_KAFKA_BROKERS``, ``host:port[,host:port…]``) sends events to
    Kafka instead of ``url``, one message per event on ``kafka_topic`` (``DRIFTLINE_KAFKA_TOPIC``,
    default ``driftline.events``, the topic ``driftline ingest`` consumes), with an idempotent
    confluent-kafka producer (``pip install 'driftline[kafka]'``; without it this raises
    ImportError). ``kafka_options`` (``DRIFTLINE_KAFKA_OPTIONS``, ``KEY=VALUE,KEY=VALUE``) are
    librdkafka settings added to the producer's (TLS, SASL). ``url`` and ``api_key`` are then
    for reads only; ``kafka_brokers=""`` turns Kafka off again.
    """
    if replica_id is not None:
        _replica.check_replica_id(replica_id)
    if replica_stats_every_s is not None and not 0 <= replica_stats_every_s < float("inf"):
        raise ValueError(f"replica_stats_every_s={replica_stats_every_s!r} must be a number of seconds (0: off)")
    config = Config.from_env()
    if dev and url is None:
        config.url = None
        config.api_key = None
        config.kafka_brokers = None
    if kafka_brokers is not None:
        config.kafka_brokers = kafka_brokers.strip() or None
    if kafka_topic is not None:
        if not kafka_topic.strip():
            raise ValueError("kafka_topic must not be empty; leave it out for driftline.events")
        config.kafka_topic = kafka_topic.strip()
    if kafka_options is not None:
        config.kafka_options = {str(k): str(v) for k, v in kafka_options.items()}
    if url is not None:
        config.url = url
    if api_key is not None:
        config.api_key = api_key
    for name, value in (
        ("model_crn", model_crn),
        ("model_build_crn", model_build_crn),
        ("model_deployment_crn", model_deployment_crn),
        ("queue_size", queue_size),
        ("batch_size", batch_size),
        ("linger_ms", linger_ms),
        ("request_timeout_s", request_timeout_s),
        ("max_backoff_s", max_backoff_s),
        ("exit_flush_timeout_s", exit_flush_timeout_s),
        ("replica_id", replica_id),
    ):
        if value is not None:
            setattr(config, name, value)
    if replica_stats_every_s is not None:
        config.replica_stats_every_s = replica_stats_every_s or None
    config.dev = config.uses_dev_server
    _client.configure(config)


def flush(timeout: Optional[float] = 30.0) -> bool:
    """Send every queued event now. True when all were delivered within ``timeout`` seconds
    (None: no limit); False when the server stayed unreachable (the events stay queued). With
    Kafka delivery, delivered means acknowledged by the broker (``acks=all``)."""
    return _client.get_client().sender.flush(timeout)


def stats() -> Dict[str, Any]:
    """The client's counters: ``enqueued``, ``queued``, ``in_flight``, ``sent``, ``accepted``,
    ``duplicates``, ``rejected`` (by the server), ``failed`` (refused requests), ``dropped``
    (the oldest events, when the queue was full), ``batches``, ``retries``, ``last_error``, and
    ``url`` and ``dev`` of where events go.

    With Kafka delivery ``sent`` counts the messages the broker acknowledged, ``failed`` those
    it refused for good; ``accepted``, ``duplicates`` and ``rejected`` stay 0 (``driftline
    ingest`` decides those), and ``kafka`` holds ``brokers`` and ``topic``."""
    client = _client.get_client()
    out = client.sender.stats()
    out["dev"] = client.dev_server is not None
    out["url"] = client.dev_server.url if client.dev_server is not None else client.config.url
    if client.config.kafka_brokers is not None:
        out["kafka"] = {"brokers": client.config.kafka_brokers, "topic": client.config.kafka_topic}
    return out


def shutdown() -> bool:
    """Flush (for at most the exit flush timeout) and stop the client. Runs at exit by itself;
    the next call after it starts a new client from the environment."""
    return _client.shutdown()


def series(
    metric: str,
    *,
    model_deployment_crn: Optional[str] = None,
    start_timestamp_ms: Optional[int] = None,
    end_timestamp_ms: Optional[int] = None,
    step: str = "1h",
    quantiles: _series.Quantiles = None,
    include_sketch: bool = False,
    source: str = "auto",
    dev: bool = False,
) -> Dict[str, Any]:
    """One metric of a deployment over time, one summary per bucket, as the server answers it::

        {"resolution": "1h", "series": [{"bucketStartMs": ..., "count": 4, "sum": 16.0,
          "min": 1.0, "max": 10.0, "mean": 4.0, "stddev": 4.08, "quantiles": {"0.5": 2.0}}]}

    ``metric`` is a dotted path of the tracked metrics (``input.tenure``, ``prediction``,
    ``label``) or one of the store's series: ``@predictions``, ``@latency_ms``, ``@event_bytes``,
    ``@labels``, ``@rejected``, ``@replica.<id>.cpu_percent``, ``@replica.<id>.memory_bytes``.
    Buckets with numbers have ``sum``, ``min``, ``max``, ``mean``, ``stddev`` (two values or
    more) and the asked ``quantiles`` (keyed by rank as the server writes it: ``"0.5"``, ``"1"``);
    buckets with strings or booleans have ``counts`` of the most frequent values and
    ``otherCount``; ``include_sketch=True`` adds each bucket's KLL sketch in base64 as ``sketch``.
    Buckets without values are absent.

    The deployment defaults to this process's. Buckets are ``step`` long (``1m``, ``1h``,
    ``1d``) and start in ``[start_timestamp_ms, end_timestamp_ms)`` floored to the step; the end
    defaults to now, the start to a day before the end at ``1m``, 30 days at ``1h`` and 365 days
    at ``1d`` (one answer holds at most 100,000 buckets). ``source`` is ``auto`` (rollups where
    complete, raw rows for the rest), ``rollup`` or ``raw``. Queued events are sent first, so the
    process reads its own writes. Arguments are checked before anything is sent (a ValueError
    naming the argument); a refused read raises :class:`DriftlineError` with the server's detail.
    ``dev`` is accepted like everywhere else; the configuration decides where reads go.
    """
    deployment = model_deployment_crn or _client.get_client().identity()[2]
    params = _series.query(
        metric, deployment, start_timestamp_ms, end_timestamp_ms, step, quantiles, include_sketch, source, _client.now_ms()
    )
    return _client.read_series(params)


def series_frame(
    metric: str,
    *,
    model_deployment_crn: Optional[str] = None,
    start_timestamp_ms: Optional[int] = None,
    end_timestamp_ms: Optional[int] = None,
    step: str = "1h",
    quantiles: _series.Quantiles = None,
    include_sketch: bool = False,
    source: str = "auto",
    dev: bool = False,
) -> Any:
    """The same read as :func:`series` as a pandas DataFrame, one row per bucket.

    Columns: ``bucket_start`` (a UTC datetime), ``bucket_start_ms``, ``count``, ``sum``, ``min``,
    ``max``, ``mean``, ``stddev``, one per asked quantile (``p50`` for 0.5, ``p99.9`` for 0.999),
    then for categorical values ``counts.<value>`` and ``other_count``, and ``sketch`` with
    ``include_sketch=True``. What a bucket lacks is NaN. Raises :class:`NotSupportedError` when
    pandas is not installed (``pip install 'driftline[pandas]'``).
    """
    try:
        import pandas  # noqa: F401  (fail before reading, not after)
    except ImportError:
        raise NotSupportedError("driftline.series_frame() needs pandas: pip install 'driftline[pandas]'") from None
    answer = series(
        metric,
        model_deployment_crn=model_deployment_crn,
        start_timestamp_ms=start_timestamp_ms,
        end_timestamp_ms=end_timestamp_ms,
        step=step,
        quantiles=quantiles,
        include_sketch=include_sketch,
        source=source,
        dev=dev,
    )
    return _series.to_frame(answer, quantiles, include_sketch)


def track_replica_stats(
    cpu_percent: Optional[float] = None,
    memory_bytes: Optional[int] = None,
    *,
    replica_id: Optional[str] = None,
    timestamp_ms: Optional[int] = None,
) -> Optional[Dict[str, Any]]:
    """Record the resource use of this replica: CPU in percent of one core, resident memory.

    What is not given is measured in this process: CPU as user plus system time over wall time
    since the previous measurement (the first: since ``driftline`` was imported), memory as the
    resident set (``/proc/self/statm`` on Linux, else ``psutil`` if installed, else the peak
    from ``resource.getrusage``). ``replica_id`` defaults to the configured one
    (``DRIFTLINE_REPLICA_ID``) or ``<hostname>:<pid>``, so worker processes sharing a host keep
    separate series; ``timestamp_ms`` to now. The event goes through the same queue and sender as
    predictions: this never waits on the network. Returns the queued event (None, with a
    warning, where memory cannot be measured). Figures or a replica id the server would refuse
    raise ValueError (or TypeError) here, naming the argument, and nothing is queued.
    The server keeps them as ``@replica.<replica_id>.cpu_percent`` and ``….memory_bytes``.
    """
    return _client.track_replica_stats(cpu_percent, memory_bytes, replica_id, timestamp_ms)


def sql(query: str, *, as_arrow: bool = False) -> Any:
    """Run one read-only SQL statement on the server (``POST /api/v1/sql``) and return its rows
    as a pandas DataFrame, or as a ``pyarrow.Table`` with ``as_arrow=True``::

        driftline.sql("SELECT count(*) AS n, avg(json_get_float(metrics, 'score')) AS mean_score "
                      "FROM labelled_predictions WHERE model_deployment_crn = 'crn:...'")

    The tables (``predictions``, ``labelled_predictions``, ``delayed_metrics``,
    ``aggregate_metrics``, ``dead_letters``, ``rollups_1m``/``1h``/``1d``), the JSON functions
    (``json_get_float(metrics, 'input', 'tenure')``, ``->>``) and the drift and performance
    aggregates (``roc_auc``, ``psi``, ``ks_pvalue``, ...) are the server's: see its docs/SQL.md.

    Queued events are sent first, so the process reads its own writes; the server and key are
    the configured ones (the development server in development mode), as for
    :func:`read_metrics`. When ``pyarrow`` is installed the rows travel as an Arrow IPC stream,
    which keeps the server's column types; without it they come as JSON and pandas infers the
    types. A statement the server refuses (a syntax error, ``DROP``/``INSERT``/..., a limit of
    time, rows or memory) raises :class:`DriftlineError` with the server's ``status`` and
    ``detail``; :class:`ServerUnavailableError` when it is busy (503) or away;
    :class:`NotSupportedError` when the server has no SQL endpoint, or when pandas (or for
    ``as_arrow=True``, pyarrow) is not installed.
    """
    if not isinstance(query, str):
        raise TypeError(f"query must be a SQL string, not {type(query).__name__}")
    if not query.strip():
        raise ValueError("query is empty: give one SQL statement, such as 'SELECT count(*) FROM predictions'")
    try:
        import pyarrow  # noqa: F401
        import pyarrow.ipc

        have_arrow = True
    except ImportError:
        have_arrow = False
    if as_arrow and not have_arrow:
        raise NotSupportedError("driftline.sql(..., as_arrow=True) needs pyarrow: pip install 'driftline[arrow]'")
    if not as_arrow:
        try:
            import pandas as pd
        except ImportError:
            raise NotSupportedError("driftline.sql() needs pandas: pip install 'driftline[pandas]'") from None
    raw, content_type = _client.run_sql(query, arrow=have_arrow)
    if have_arrow and content_type.split(";")[0].strip() == _client.ARROW_STREAM:
        try:
            table = pyarrow.ipc.open_stream(raw).read_all()
        except pyarrow.ArrowInvalid as err:
            raise DriftlineError(f"POST /api/v1/sql: the server's Arrow answer cannot be read: {err}") from None
        return table if as_arrow else table.to_pandas()
    try:
        rows = json.loads(raw)
    except ValueError:
        raise DriftlineError(f"POST /api/v1/sql: the server's answer is not JSON: {raw[:200]!r}") from None
    if not isinstance(rows, list):
        raise DriftlineError(f"POST /api/v1/sql: the server's answer is not a JSON array of rows: {str(rows)[:200]}")
    if as_arrow:
        return pyarrow.Table.from_pylist(rows)
    return pd.DataFrame.from_records(rows)


__all__ = [
    "init",
    "flush",
    "stats",
    "shutdown",
    "sql",
    "series",
    "series_frame",
    "track_replica_stats",
    "cml_model",
    "model",
    "track_metric",
    "track_delayed_metrics",
    "track_aggregate_metrics",
    "read_metrics",
    "read_metrics_arrow",
    "read_aggregate_metrics",
    "DriftlineError",
    "ServerUnavailableError",
    "DevServerError",
    "NotSupportedError",
    "__version__",
]
