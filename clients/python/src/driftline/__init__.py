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
Without a URL the client runs in development mode on a local ``driftline serve`` it starts.
"""

from __future__ import annotations

from typing import Any, Dict, Optional

from . import _client
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
) -> None:
    """(Re)configure the client; what is not given comes from the ``DRIFTLINE_*`` environment.

    ``dev=True`` uses the local development server even when ``DRIFTLINE_URL`` is set. Events
    queued under the previous configuration are flushed to where they were going first.
    ``queue_size`` (100,000) bounds the events held in memory (the oldest are dropped past it),
    ``batch_size`` (1,000) and ``linger_ms`` (200) decide when a batch is sent.
    """
    config = Config.from_env()
    if dev and url is None:
        config.url = None
        config.api_key = None
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
    ):
        if value is not None:
            setattr(config, name, value)
    config.dev = config.url is None
    _client.configure(config)


def flush(timeout: Optional[float] = 30.0) -> bool:
    """Send every queued event now. True when all were delivered within ``timeout`` seconds
    (None: no limit); False when the server stayed unreachable (the events stay queued)."""
    return _client.get_client().sender.flush(timeout)


def stats() -> Dict[str, Any]:
    """The client's counters: ``enqueued``, ``queued``, ``in_flight``, ``sent``, ``accepted``,
    ``duplicates``, ``rejected`` (by the server), ``failed`` (refused requests), ``dropped``
    (the oldest events, when the queue was full), ``batches``, ``retries``, ``last_error``, and
    ``url`` and ``dev`` of where events go."""
    client = _client.get_client()
    out = client.sender.stats()
    out["dev"] = client.dev_server is not None
    out["url"] = client.dev_server.url if client.dev_server is not None else client.config.url
    return out


def shutdown() -> bool:
    """Flush (for at most the exit flush timeout) and stop the client. Runs at exit by itself;
    the next call after it starts a new client from the environment."""
    return _client.shutdown()


def sql(query: str) -> Any:
    """Run a SQL query on the server and return a pandas DataFrame.

    The server has no SQL endpoint yet, so this raises :class:`NotSupportedError` (a
    ``NotImplementedError``); read windows with :func:`read_metrics` (``as_frame=True``) meanwhile.
    """
    raise NotSupportedError(
        "driftline.sql() needs the server's SQL endpoint, which this version of driftline does not "
        "have yet; use driftline.read_metrics(..., as_frame=True) and query the DataFrame instead"
    )


__all__ = [
    "init",
    "flush",
    "stats",
    "shutdown",
    "sql",
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
