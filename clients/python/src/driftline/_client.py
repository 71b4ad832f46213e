"""The process-wide client: configuration, the sender, the development server and the calls."""

from __future__ import annotations

import atexit
import contextlib
import contextvars
import functools
import json
import logging
import os
import sys
import threading
import time
import uuid
from typing import Any, Callable, Dict, Iterator, List, Optional, Tuple, TypeVar

from . import _frames, _http, _replica, _uuids
from ._config import DEV_MODEL_BUILD_CRN, DEV_MODEL_CRN, DEV_MODEL_DEPLOYMENT_CRN, Config
from ._delivery import Event, HttpDelivery, Transport
from ._devserver import DevServer
from ._encode import dumps, key_json, value_json
from ._sender import Sender
from .errors import DriftlineError

log = logging.getLogger("driftline")

#: The metrics key under which the decorator records sizes and failures of a prediction.
RESERVED_KEY = "_driftline"

#: The path of the window reads.
READ_METRICS = "/api/v1/read_metrics"

F = TypeVar("F", bound=Callable[..., Any])

_current: contextvars.ContextVar[Optional[Dict[str, Any]]] = contextvars.ContextVar("driftline_prediction", default=None)


def now_ms() -> int:
    return time.time_ns() // 1_000_000


#: Batches in flight at once over HTTP, each on its own connection: while the server stores one
#: (it answers once the batch is stored), the next is on its way and being parsed.
HTTP_SENDERS = 2


class Client:
    """One configuration, one queue and sender thread, and the development server if used."""

    def __init__(self, config: Config) -> None:
        self.config = config
        self.dev_server: Optional[DevServer] = DevServer() if config.uses_dev_server else None
        transports: List[Transport]
        if config.kafka_brokers is not None:
            from ._kafka import KafkaDelivery

            # One producer: it batches and sends asynchronously itself.
            transports = [
                KafkaDelivery(
                    config.kafka_brokers,
                    config.kafka_topic,
                    config.kafka_options,
                    batch_size=config.batch_size,
                    timeout_s=config.request_timeout_s,
                )
            ]
        else:
            transports = [
                HttpDelivery(
                    self.target,
                    config.request_timeout_s,
                    on_unreachable=self._dev_unreachable if self.dev_server else None,
                )
                for _ in range(HTTP_SENDERS)
            ]
        self.sender = Sender(
            transports,
            queue_size=config.queue_size,
            batch_size=config.batch_size,
            linger_ms=config.linger_ms,
            request_timeout_s=config.request_timeout_s,
            max_backoff_s=config.max_backoff_s,
            periodic=(config.replica_stats_every_s, self._replica_stats_event) if config.replica_stats_every_s else None,
        )
        model_crn, build_crn, deployment_crn = self.identity()
        #: The start of every prediction event's JSON: its type and this replica's CRNs.
        self.prediction_prefix = (
            f'{{"v":1,"type":"prediction","model_crn":{dumps(model_crn)},'
            f'"model_build_crn":{dumps(build_crn)},"model_deployment_crn":{dumps(deployment_crn)},'
        )

    def target(self) -> Tuple[str, Optional[str]]:
        """The server's URL and key, for sending over HTTP and for every read."""
        if self.dev_server is not None:
            return self.dev_server.target()
        self.check_readable()
        assert self.config.url is not None
        return self.config.url, self.config.api_key

    def check_readable(self) -> None:
        """Raise when there is no server to read from: events go to Kafka and no URL is set."""
        if self.dev_server is None and self.config.url is None:
            raise DriftlineError(
                "reading needs driftline's HTTP API, and only Kafka is configured "
                f"(DRIFTLINE_KAFKA_BROKERS={self.config.kafka_brokers}): set DRIFTLINE_URL and "
                "DRIFTLINE_API_KEY (a read key), or driftline.init(url=..., api_key=...), to the "
                "`driftline serve` on the store that `driftline ingest` fills"
            )

    def _dev_unreachable(self) -> None:
        # The shared server may have been stopped by the process that started it: start or
        # find another one on the same store before the next attempt.
        assert self.dev_server is not None
        self.dev_server.url = None

    def identity(self) -> Tuple[str, str, str]:
        c = self.config
        return (
            c.model_crn or DEV_MODEL_CRN,
            c.model_build_crn or DEV_MODEL_BUILD_CRN,
            c.model_deployment_crn or DEV_MODEL_DEPLOYMENT_CRN,
        )

    def replica_id(self) -> str:
        """This process's replica id: configured, or ``<hostname>:<pid>`` (checked either way)."""
        if self.config.replica_id is None:
            return _replica.default_replica_id()
        # init(replica_id=...) was checked when given: a bad one here is from the environment.
        return _replica.check_replica_id(self.config.replica_id, "DRIFTLINE_REPLICA_ID")

    def _replica_stats_event(self) -> Optional[Event]:
        """This process's figures now, encoded with their key; run by the sender thread every
        interval."""
        memory = _replica.memory_bytes()
        cpu = _replica.METER.cpu_percent()
        if memory is None:
            return None
        deployment = self.identity()[2]
        event = _replica.event(deployment, self.replica_id(), now_ms(), cpu, memory)
        return dumps(event), deployment

    def after_fork_in_child(self) -> None:
        """In a forked child: a sender of its own, and a development server it does not own."""
        self.sender.after_fork_in_child()
        if self.dev_server is not None:
            self.dev_server.after_fork_in_child()

    def close(self) -> bool:
        try:
            return self.sender.close(self.config.exit_flush_timeout_s)
        finally:
            if self.dev_server is not None:
                self.dev_server.stop()

    # ---- reads --------------------------------------------------------------------------

    def read_lines(self, params: Dict[str, Any]) -> Iterator[Dict[str, Any]]:
        """The predictions of a window, one dict at a time, streamed as NDJSON, after sending
        what this process has queued."""
        url, key = self._before_read()
        yield from self._ndjson_rows(url, key, params)

    def read_arrow_rows(self, params: Dict[str, Any]) -> Iterator[Dict[str, Any]]:
        """The predictions of a window as :meth:`read_lines` gives them, after sending what this
        process has queued, read from the server's Arrow IPC stream (``format=arrow``) one
        record batch at a time. Read as NDJSON instead when pyarrow is not installed, or when
        the server refuses ``format=arrow`` (a server that predates it)."""
        url, key = self._before_read()
        try:
            import pyarrow.ipc  # noqa: F401
        except ImportError:
            yield from self._ndjson_rows(url, key, params)
            return
        what = f"GET {READ_METRICS}"
        try:
            resp = _http.open_get(url, key, READ_METRICS, dict(params, format="arrow"), ARROW_STREAM, self.config.request_timeout_s)
        except DriftlineError as err:
            # A server without format=arrow answers 400 naming the parameter. Any other 400
            # that mentions it comes again from the NDJSON read, which then raises it.
            if err.status != 400 or "format" not in (err.detail or ""):
                raise
            log.debug("driftline: the server at %s refused format=arrow (%s); reading NDJSON", url, err.detail)
            yield from self._ndjson_rows(url, key, params)
            return
        with contextlib.closing(resp):
            content_type = resp.headers.get("Content-Type", "").split(";")[0].strip()
            if content_type != ARROW_STREAM:
                raise DriftlineError(
                    f"{what}: the server answered format=arrow with {content_type or 'no content type'}, "
                    f"not an Arrow IPC stream ({ARROW_STREAM})"
                )
            yield from _frames.arrow_rows(_frames.arrow_batches(resp, what))

    def _before_read(self) -> Tuple[str, Optional[str]]:
        """The server's URL and key, once what this process has queued is sent: a process
        reads its own writes."""
        self.check_readable()
        self.sender.flush(self.config.request_timeout_s)
        return self.target()

    def _ndjson_rows(self, url: str, key: Optional[str], params: Dict[str, Any]) -> Iterator[Dict[str, Any]]:
        for line in _http.get_lines(url, key, READ_METRICS, dict(params, format="ndjson"), self.config.request_timeout_s):
            row = json.loads(line)
            if isinstance(row, dict) and set(row) == {"error"}:
                raise DriftlineError(f"reading metrics failed on the server: {row['error']}; read the window again")
            yield row


_lock = threading.RLock()
_client: Optional[Client] = None
_atexit_registered = False


def get_client() -> Client:
    """The current client, made from the environment on first use."""
    client = _client
    if client is not None:
        return client
    with _lock:
        if _client is None:
            _install(Client(Config.from_env()))
        assert _client is not None
        return _client


def _install(client: Client) -> None:
    global _client, _atexit_registered
    _client = client
    if not _atexit_registered:
        atexit.register(_close_at_exit)
        _atexit_registered = True


def _close_at_exit() -> None:
    global _client
    with _lock:
        client, _client = _client, None
    if client is not None:
        try:
            client.close()
        except Exception as err:  # never fail the interpreter's exit
            log.warning("driftline: closing at exit failed: %s", err)


def _before_fork() -> None:
    # A child made by multiprocessing leaves with os._exit, so atexit does not flush it: have
    # multiprocessing run the same close in every child it starts (registered once, here,
    # because multiprocessing forgets a child's finalizers before it runs the child's code).
    global _mp_hook_registered
    if _client is None or _mp_hook_registered:
        return
    util = sys.modules.get("multiprocessing.util")
    if util is None:
        return
    util.register_after_fork(_close_at_exit, _register_mp_finalizer)  # type: ignore[attr-defined]
    _mp_hook_registered = True


def _register_mp_finalizer(_: Any) -> None:
    util = sys.modules.get("multiprocessing.util")
    if util is not None:
        util.Finalize(None, _close_at_exit, exitpriority=10)  # type: ignore[attr-defined]


def _after_fork_in_child() -> None:
    """Give a forked child a client of its own: a new lock (another thread may have held this
    one at the fork), an empty queue (what was queued is the parent's to send) and a sender
    thread, started when the child first queues or flushes."""
    global _lock
    _lock = threading.RLock()
    client = _client
    if client is not None:
        client.after_fork_in_child()


_mp_hook_registered = False
if hasattr(os, "register_at_fork"):
    os.register_at_fork(before=_before_fork, after_in_child=_after_fork_in_child)


def configure(config: Config) -> Client:
    """Replace the current client (flushing and closing the previous one) with a new one."""
    global _client
    with _lock:
        old, _client = _client, None
        if old is not None:
            old.close()
        client = Client(config)
        _install(client)
        return client


def shutdown() -> bool:
    """Flush and stop the current client; the next call makes a new one from the environment."""
    global _client
    with _lock:
        old, _client = _client, None
    return old.close() if old is not None else True


# ---- tracking -----------------------------------------------------------------------------


def track_metric(key: str, value: Any) -> None:
    """Attach ``key: value`` to the prediction being made in this thread (or task)."""
    metrics = _current.get()
    if metrics is None:
        log.warning(
            "driftline: track_metric(%r) called outside a predict function decorated with "
            "@models.cml_model(metrics=True); the value is ignored",
            key,
        )
        return
    metrics[str(key)] = value


def instrument(func: F) -> F:
    """Wrap a predict function so each call is recorded as one prediction event."""

    @functools.wraps(func)
    def wrapper(*args: Any, **kwargs: Any) -> Dict[str, Any]:
        prediction_uuid = _uuids.uuid4()
        metrics: Dict[str, Any] = {}
        token = _current.set(metrics)
        start = now_ms()
        try:
            result = func(*args, **kwargs)
        except BaseException as err:
            end = now_ms()
            _current.reset(token)
            _enqueue_prediction(prediction_uuid, start, end, metrics, args, kwargs, None, err)
            raise
        end = now_ms()
        _current.reset(token)
        _enqueue_prediction(prediction_uuid, start, end, metrics, args, kwargs, result, None)
        return {"uuid": prediction_uuid, "prediction": result}

    return wrapper  # type: ignore[return-value]


def prediction_json(
    prefix: str,
    prediction_uuid: str,
    start_ms: int,
    end_ms: int,
    metrics: Dict[str, Any],
    payload: Any,
    result: Any,
    error: Optional[BaseException],
) -> str:
    """The encoded prediction event, ``prefix`` holding its type and CRNs.

    The input (``payload``) is encoded once: its size is the length of that text (ASCII, so one
    byte a character), and a tracked metric that is the input itself (``track_metric("input",
    args)``) reuses the same text; the output likewise. Every other metric is encoded as
    ``json.dumps`` would, so the event is the same as encoding the whole dict at once.
    """
    try:
        payload_json: Optional[str] = dumps(payload)
    except Exception:  # a value whose str() raises: record no size rather than no prediction
        payload_json = None
    technical = '"input_bytes":' + ("null" if payload_json is None else str(len(payload_json)))
    result_json: Optional[str] = None
    if error is None:
        try:
            result_json = value_json(result)
        except Exception:
            result_json = None
        technical += ',"output_bytes":' + ("null" if result_json is None else str(len(result_json)))
    else:
        technical += ',"error":' + dumps({"type": type(error).__name__, "message": str(error)})
    members = []
    for key, value in metrics.items():
        if key == RESERVED_KEY:
            continue  # the decorator's own, below
        if value is payload and payload_json is not None:
            encoded = payload_json
        elif value is result and result_json is not None:
            encoded = result_json
        else:
            encoded = value_json(value)
        members.append(key_json(key) + ":" + encoded)
    members.append(f'"{RESERVED_KEY}":{{{technical}}}')
    return (
        f'{prefix}"uuid":"{prediction_uuid}","start_timestamp_ms":{start_ms},'
        f'"end_timestamp_ms":{max(end_ms, start_ms)},"metrics":{{{",".join(members)}}}}}'
    )


def _enqueue_prediction(
    prediction_uuid: str,
    start: int,
    end: int,
    metrics: Dict[str, Any],
    args: Tuple[Any, ...],
    kwargs: Dict[str, Any],
    result: Any,
    error: Optional[BaseException],
) -> None:
    try:
        client = _client or get_client()
        payload = args[0] if len(args) == 1 and not kwargs else {"args": list(args), "kwargs": kwargs}
        client.sender.put(
            prediction_json(
                client.prediction_prefix,
                prediction_uuid,
                start,
                end,
                metrics,
                payload,
                result,
                error,
            ),
            prediction_uuid,
        )
    except Exception as err:  # tracking must never fail a prediction
        log.warning("driftline: could not record prediction %s: %s", prediction_uuid, err)


def track_delayed_metrics(metrics: Dict[str, Any], prediction_uuid: str, timestamp_ms: Optional[int] = None) -> None:
    """Queue metrics that arrived later (ground truth) for an earlier prediction."""
    if not isinstance(metrics, dict):
        raise TypeError("metrics must be a dict such as {'label': 1}")
    str(uuid.UUID(str(prediction_uuid)))  # a clear ValueError now rather than a rejection later
    event = {
        "v": 1,
        "type": "delayed_metrics",
        "uuid": str(prediction_uuid),
        "timestamp_ms": now_ms() if timestamp_ms is None else int(timestamp_ms),
        "metrics": metrics,
    }
    get_client().sender.put(dumps(event), event["uuid"])


def track_aggregate_metrics(
    metrics: Dict[str, Any],
    start_timestamp_ms: int,
    end_timestamp_ms: int,
    model_deployment_crn: Optional[str] = None,
) -> None:
    """Queue metrics computed over a window of a deployment's predictions."""
    if not isinstance(metrics, dict):
        raise TypeError("metrics must be a dict such as {'roc_auc': 0.91}")
    client = get_client()
    event = {
        "v": 1,
        "type": "aggregate_metrics",
        "model_deployment_crn": model_deployment_crn or client.identity()[2],
        "start_timestamp_ms": int(start_timestamp_ms),
        "end_timestamp_ms": int(end_timestamp_ms),
        "metrics": metrics,
    }
    client.sender.put(dumps(event), event["model_deployment_crn"])


def track_replica_stats(
    cpu_percent: Optional[float],
    memory_bytes: Optional[int],
    replica_id: Optional[str],
    timestamp_ms: Optional[int],
) -> Optional[Dict[str, Any]]:
    """Queue one ``replica_stats`` event, measuring the figures not given; the event, or None
    when this platform cannot measure memory (logged, nothing queued)."""
    # Every given argument is checked before anything is measured.
    cpu = None if cpu_percent is None else _replica.check_cpu_percent(cpu_percent)
    memory = None if memory_bytes is None else _replica.check_memory_bytes(memory_bytes)
    timestamp = now_ms() if timestamp_ms is None else int(timestamp_ms)
    client = get_client()
    replica = client.replica_id() if replica_id is None else _replica.check_replica_id(replica_id)
    if memory is None:
        memory = _replica.memory_bytes()
        if memory is None:
            log.warning("driftline: the memory of this process cannot be measured here; pass memory_bytes")
            return None
    if cpu is None:
        cpu = _replica.METER.cpu_percent()
    deployment = client.identity()[2]
    event = _replica.event(deployment, replica, timestamp, cpu, memory)
    client.sender.put(dumps(event), deployment)
    return event


# ---- reading ------------------------------------------------------------------------------


def window_params(
    model_crn: Optional[str],
    model_build_crn: Optional[str],
    model_deployment_crn: Optional[str],
    start_timestamp_ms: Optional[int],
    end_timestamp_ms: Optional[int],
) -> Dict[str, Any]:
    """The query of a window; without any CRN, this process's deployment."""
    given = {
        "model_crn": model_crn,
        "model_build_crn": model_build_crn,
        "model_deployment_crn": model_deployment_crn,
    }
    given = {k: v for k, v in given.items() if v is not None}
    if not given:
        given = {"model_deployment_crn": get_client().identity()[2]}
    return dict(
        given,
        start_timestamp_ms=None if start_timestamp_ms is None else int(start_timestamp_ms),
        end_timestamp_ms=None if end_timestamp_ms is None else int(end_timestamp_ms),
    )


def read_rows(params: Dict[str, Any], arrow: bool = False) -> Iterator[Dict[str, Any]]:
    """The predictions of a window, one dict at a time: from the server's Arrow IPC stream when
    ``arrow`` (and pyarrow is installed and the server knows it), else from its NDJSON."""
    client = get_client()
    return client.read_arrow_rows(params) if arrow else client.read_lines(params)


def read_aggregates(params: Dict[str, Any]) -> List[Dict[str, Any]]:
    client = get_client()
    client.check_readable()
    client.sender.flush(client.config.request_timeout_s)
    url, key = client.target()
    answer = _http.get_json(url, key, "/api/v1/aggregate_metrics", params, client.config.request_timeout_s)
    return list(answer.get("metrics", [])) if isinstance(answer, dict) else []


def read_series(params: Dict[str, Any]) -> Dict[str, Any]:
    """The answer of ``GET /api/v1/series``, after sending what this process has queued."""
    client = get_client()
    client.check_readable()
    client.sender.flush(client.config.request_timeout_s)
    url, key = client.target()
    answer = _http.get_json(url, key, "/api/v1/series", params, client.config.request_timeout_s)
    if not isinstance(answer, dict):
        raise DriftlineError(f"GET /api/v1/series: the server's answer is not a JSON object: {str(answer)[:200]}")
    return answer


#: The content type of an Arrow IPC stream, which ``POST /api/v1/sql`` answers when asked for it,
#: and ``GET /api/v1/read_metrics`` with ``format=arrow``.
ARROW_STREAM = "application/vnd.apache.arrow.stream"


def run_sql(query: str, arrow: bool) -> Tuple[bytes, str]:
    """The answer of ``POST /api/v1/sql`` (bytes and content type), after sending what this
    process has queued: an Arrow IPC stream when ``arrow``, else the JSON array of rows."""
    client = get_client()
    client.check_readable()
    client.sender.flush(client.config.request_timeout_s)
    url, key = client.target()
    body = json.dumps({"sql": query}).encode("utf-8")
    accept = ARROW_STREAM if arrow else "application/json"
    try:
        return _http.post_for_bytes(url, key, "/api/v1/sql", body, accept, client.config.request_timeout_s)
    except DriftlineError as err:
        if err.status in (404, 405):
            from .errors import NotSupportedError

            raise NotSupportedError(
                f"{err}; the server at {url} has no SQL endpoint (POST /api/v1/sql): upgrade it",
                status=err.status,
                title=err.title,
                detail=err.detail,
                problem=err.problem,
            ) from None
        raise
