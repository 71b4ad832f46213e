"""Kafka delivery: one message per event, to the topic `driftline ingest` consumes.

Needs confluent-kafka, the optional extra ``driftline[kafka]``; it is imported only when Kafka
delivery is configured. Each message's value is the same v1 event JSON that the HTTP path posts.

Keys. A prediction and its delayed metrics are keyed by the prediction UUID: they land in one
partition, in the order they were sent (and one write lane of `driftline ingest` writes them),
while a deployment's predictions spread over every partition. Aggregate metrics and replica
figures are keyed by the deployment CRN.

Retries. The producer is idempotent (``enable.idempotence=true``, so ``acks=all``): librdkafka
retries a produce request itself without writing a message twice or out of order. A message the
broker has not acknowledged within ``message.timeout.ms`` (the client's request timeout, 30 s)
is handed back to the sender thread, which produces it again after a backoff; should the first
attempt have reached the topic after all, the store keeps the event once (prediction UUIDs, and
the uniqueness keys of delayed and aggregate metrics). A message refused for good (too large,
unknown topic, not authorised) is counted as ``failed``.

Forking. librdkafka's threads do not exist in a forked child, and destroying the parent's
producer there would wait for them forever: the child leaves that producer alone (never freed)
and makes its own when it first sends. The child's own producer is not freed either: a parent
thread may have held one of libc's locks at the fork (the resolver's, taken by every broker
address lookup), and a child thread that then waits for it waits forever, so destroying the
producer, which joins its threads, could hang the child's exit. Its undelivered events are
reported at exit instead. A child forked that way may never reach the broker; configure the
client after forking (a pre-forking server's worker start) to be safe.
"""

from __future__ import annotations

import ctypes
import functools
import logging
from typing import Any, Callable, Dict, List, Optional

from ._delivery import Delivery, Event
from .errors import DriftlineError

log = logging.getLogger("driftline")

#: Delivery errors that producing the same message again cannot mend (by librdkafka's names).
PERMANENT_ERRORS = frozenset(
    {
        "MSG_SIZE_TOO_LARGE",
        "INVALID_MSG",
        "INVALID_MSG_SIZE",
        "INVALID_RECORD",
        "RECORD_LIST_TOO_LARGE",
        "INVALID_REQUIRED_ACKS",
        "POLICY_VIOLATION",
        "TOPIC_EXCEPTION",
        "UNKNOWN_TOPIC_OR_PART",
        "_UNKNOWN_TOPIC",
        "_UNKNOWN_PARTITION",
        "TOPIC_AUTHORIZATION_FAILED",
        "CLUSTER_AUTHORIZATION_FAILED",
        "SASL_AUTHENTICATION_FAILED",
        "_AUTHENTICATION",
        "_INVALID_ARG",
    }
)

#: Producers never to be freed: a parent's, in a forked child, and that child's own (see the module doc).
_ABANDONED: List[Any] = []

_NOT_REPORTED = object()


def load_confluent_kafka() -> Any:
    """The ``confluent_kafka`` module, or an ImportError saying which extra to install."""
    try:
        import confluent_kafka
    except ImportError:
        raise ImportError(
            "events are configured to go to Kafka (DRIFTLINE_KAFKA_BROKERS or "
            "driftline.init(kafka_brokers=...)), which needs confluent-kafka: "
            "pip install 'driftline[kafka]'"
        ) from None
    return confluent_kafka


def describe(err: Any) -> str:
    """A librdkafka error as ``text (NAME)``."""
    try:
        return f"{err.str()} ({err.name()})"
    except Exception:
        return str(err)


class _DebugLog:
    """Takes librdkafka's log lines (served by ``poll``) at DEBUG: a broker that cannot be
    reached is retried by librdkafka and shows in ``stats()["last_error"]``, not as log spam."""

    def log(self, level: int, msg: str, *args: Any) -> None:
        log.debug("driftline: librdkafka: " + msg, *args)


class KafkaDelivery:
    """Produces batches of events to ``topic`` and waits for the broker's acknowledgements."""

    def __init__(
        self,
        brokers: str,
        topic: str,
        options: Dict[str, str],
        *,
        batch_size: int,
        timeout_s: float,
    ) -> None:
        self._kafka = load_confluent_kafka()
        self.brokers = brokers
        self.topic = topic
        self._settings: Dict[str, Any] = {
            "bootstrap.servers": brokers,
            "client.id": "driftline-python",
            "enable.idempotence": True,
            "acks": "all",
            # The sender thread batches already (batch_size, linger_ms): hand a batch on at once.
            "linger.ms": 5,
            "message.timeout.ms": max(int(timeout_s * 1000), 1000),
            # One batch is in the producer at a time; a bound, not a buffer of its own.
            "queue.buffering.max.messages": max(batch_size, 1),
        }
        self._settings.update(options)
        self._settings["error_cb"] = self._on_error
        self._settings["logger"] = _DebugLog()
        self._errors: List[str] = []
        self._fatal = False
        self._forked_beside_threads = False
        # Made now, so that settings librdkafka refuses fail init() rather than every send.
        self._producer: Optional[Any] = self._make_producer()

    def _make_producer(self) -> Any:
        try:
            return self._kafka.Producer(self._settings)
        except self._kafka.KafkaException as err:
            raise DriftlineError(
                f"the Kafka producer settings are refused: {describe(err.args[0])}; "
                "check DRIFTLINE_KAFKA_BROKERS and DRIFTLINE_KAFKA_OPTIONS"
            ) from None

    def _on_error(self, err: Any) -> None:
        # Called by librdkafka inside poll()/flush(), on the sender thread.
        if err.fatal():
            self._fatal = True
        self._errors.append(f"Kafka at {self.brokers}: {describe(err)}")
        del self._errors[:-1]

    def _take_error(self) -> Optional[str]:
        error = self._errors[-1] if self._errors else None
        self._errors.clear()
        return error

    # ---- the transport ------------------------------------------------------------------

    def send(self, batch: List[Event], stopping: Callable[[], bool]) -> Delivery:
        producer = self._producer
        if producer is None:
            producer = self._producer = self._make_producer()
        reports: Dict[int, Any] = {}  # the broker's answer per event: None, or the error
        refused: Dict[int, Any] = {}  # what produce() refused at once (too large, ...)
        produced = 0
        for i, (event, key) in enumerate(batch):
            while not stopping():
                try:
                    producer.produce(self.topic, event.encode("utf-8"), key, on_delivery=functools.partial(_record, reports, i))
                    produced += 1
                    break
                except BufferError:  # the producer's queue is full: serve acknowledgements
                    producer.poll(0.05)
                except self._kafka.KafkaException as err:
                    refused[i] = err.args[0]
                    break
            else:
                break
        # flush() sends at once (no linger) and serves the acknowledgements.
        while len(reports) < produced and not stopping():
            producer.flush(0.1)
        reports.update(refused)
        outcome = self._outcome(batch, reports)
        if self._fatal:
            self._replace_producer()
        return outcome

    def _outcome(self, batch: List[Event], reports: Dict[int, Any]) -> Delivery:
        sent = failed = 0
        retry: List[Event] = []
        refused: Optional[Any] = None
        transient: Optional[Any] = None
        for i, event in enumerate(batch):
            err = reports.get(i, _NOT_REPORTED)
            if err is None:
                sent += 1
            elif err is _NOT_REPORTED:
                retry.append(event)
            elif err.name() in PERMANENT_ERRORS:
                failed += 1
                refused = refused or err
            else:
                retry.append(event)
                transient = transient or err
        counts = {"sent": sent}
        if sent:
            counts["batches"] = 1
        error = self._take_error()
        if transient is not None:
            broker_error = error
            error = f"producing to {self.topic} at {self.brokers} failed, will retry: {describe(transient)}"
            if broker_error:
                error += f"; {broker_error}"
            log.debug("driftline: %s", error)
        if failed:
            counts["failed"] = failed
            error = f"Kafka refused {failed} events for {self.topic}: {describe(refused)}"
            log.warning("driftline: %s", error)
        return Delivery(counts, retry, error)

    def poll(self) -> Optional[str]:
        """Serve librdkafka's callbacks (errors, log lines) while no batch is being sent."""
        if self._producer is not None:
            self._producer.poll(0)
        return self._take_error()

    def _replace_producer(self) -> None:
        """After a fatal error (the idempotent producer cannot go on): a new producer next time."""
        self._let_go()
        self._fatal = False

    def after_fork_in_child(self) -> None:
        old, self._producer = self._producer, None
        self._errors = []
        self._fatal = False
        if old is not None:
            self._forked_beside_threads = True
            _abandon(old)

    def close(self) -> None:
        """Give up what is still unacknowledged (the sender counted it) and stop the producer."""
        self._let_go()

    def _let_go(self) -> None:
        """Drop the producer and what it still holds; freed, unless this is a child forked
        while the parent's producer ran (see the module doc)."""
        producer, self._producer = self._producer, None
        if producer is not None:
            producer.purge()
            producer.poll(0)
            if self._forked_beside_threads:
                _abandon(producer)


def _abandon(producer: Any) -> None:
    """Keep ``producer`` from ever being freed, not even by the interpreter's exit."""
    _ABANDONED.append(producer)
    try:
        ctypes.pythonapi.Py_IncRef(ctypes.py_object(producer))
    except Exception:
        pass


def _record(reports: Dict[int, Any], index: int, err: Any, msg: Any) -> None:
    reports[index] = err
