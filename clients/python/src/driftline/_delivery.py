"""How a batch of queued events leaves the process: what a transport answers, and the HTTP one.

The sender thread (``_sender.py``) owns the queue, the counters and the backoff; a transport
sends one batch and says what became of each event: counted as delivered or refused, or handed
back to be sent again after a backoff. Two transports exist: :class:`HttpDelivery` (``POST
/api/v1/events``, here) and ``KafkaDelivery`` (one message per event, ``_kafka.py``).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Callable, Dict, List, Optional, Protocol, Tuple

from . import _http
from .errors import DriftlineError, ServerUnavailableError

log = logging.getLogger("driftline")

#: A queued event: its encoded JSON, and its Kafka message key (None: no key).
Event = Tuple[str, Optional[str]]
#: Where and with which key to POST: ``(base_url, api_key)``.
Target = Callable[[], Tuple[str, Optional[str]]]


@dataclass
class Delivery:
    """What became of a batch: counters to add, events to send again, the latest error."""

    #: Added to the sender's counters (``sent``, ``accepted``, ``duplicates``, ``rejected``,
    #: ``failed``, ``batches``).
    counts: Dict[str, int] = field(default_factory=dict)
    #: Events to send again after a backoff, in their order.
    retry: List[Event] = field(default_factory=list)
    #: The reason of a failure, for ``stats()["last_error"]``.
    error: Optional[str] = None

    def merge(self, other: "Delivery") -> "Delivery":
        """Both outcomes as one (the later error wins)."""
        counts = dict(self.counts)
        for name, n in other.counts.items():
            counts[name] = counts.get(name, 0) + n
        return Delivery(counts, self.retry + other.retry, other.error or self.error)


class Transport(Protocol):
    """What the sender thread needs of a way out. Only the sender thread calls ``send`` and
    ``poll``; ``close`` is called after that thread has stopped (or given up on)."""

    def send(self, batch: List[Event], stopping: Callable[[], bool]) -> Delivery:
        """Send ``batch``; return early, handing back what is not sent, once ``stopping()``."""

    def poll(self) -> Optional[str]:
        """Serve what the transport has to do between batches (called at least once a second
        while idle); an error to show in ``stats()["last_error"]``, or None."""

    def after_fork_in_child(self) -> None:
        """In a forked child: forget the parent's connections without closing them."""

    def close(self) -> None:
        """Release connections; what is still unsent is given up."""


class HttpDelivery:
    """POSTs batches to ``/api/v1/events`` over one kept-alive connection.

    The server unreachable, or answering 5xx, 408 or 429: the whole batch is handed back to be
    sent again (the server keeps one row per prediction UUID, so a batch stored twice is stored
    once). 413: the batch is sent in halves. Any other refusal (400, 401, 403): counted as
    ``failed``, since sending the same bytes again cannot succeed.
    """

    def __init__(self, target: Target, timeout_s: float, on_unreachable: Optional[Callable[[], None]] = None) -> None:
        self._target = target
        self._timeout_s = timeout_s
        self._on_unreachable = on_unreachable
        self._poster = _http.EventPoster(timeout_s)

    def send(self, batch: List[Event], stopping: Callable[[], bool]) -> Delivery:
        try:
            url, key = self._target()
            body = ("[" + ",".join([event for event, _ in batch]) + "]").encode("utf-8")
            report = self._poster.post(url, key, body)
        except ServerUnavailableError as err:
            outcome = Delivery(retry=batch, error=str(err))
            if err.status is None and self._on_unreachable is not None:
                try:
                    self._on_unreachable()
                except Exception as again:
                    outcome.error = str(again)
            log.debug("driftline: send failed, will retry: %s", err)
            return outcome
        except DriftlineError as err:
            if err.status == 413 and len(batch) > 1:
                half = len(batch) // 2
                return self.send(batch[:half], stopping).merge(self.send(batch[half:], stopping))
            log.warning("driftline: %d events refused: %s", len(batch), err)
            return Delivery({"failed": len(batch)}, error=str(err))
        counts = {"batches": 1, "sent": len(batch)}
        for name in ("accepted", "duplicates", "rejected"):
            value = report.get(name)
            if isinstance(value, int):
                counts[name] = value
        outcome = Delivery(counts)
        errors = report.get("errors") or []
        if errors:
            first = errors[0]
            outcome.error = f"event rejected by the server: {first.get('reason', first)}"
            log.warning("driftline: %d events rejected, first: %s", len(errors), first)
        return outcome

    def poll(self) -> Optional[str]:
        """Nothing to serve between batches."""
        return None

    def after_fork_in_child(self) -> None:
        # The parent's connection is dropped, not closed: closing the child's copy of the socket
        # does not end the parent's connection.
        self._poster = _http.EventPoster(self._timeout_s)

    def close(self) -> None:
        self._poster.close()
