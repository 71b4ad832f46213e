"""The bounded event queue and the background thread that sends it in batches.

Events are encoded JSON texts. ``put`` never blocks and never raises: when the queue is full the
oldest queued event is dropped and counted. The sender thread takes a batch when ``batch_size``
events are queued or the oldest has waited ``linger_ms``, POSTs it, and on a failure that may pass
(the server down, 5xx, 408, 429) retries the same batch with capped exponential backoff, so an
event is stored once however often it is sent (the server keeps one row per prediction UUID).

With a ``periodic`` producer, the same thread also queues the event it makes every ``every_s``
seconds (this process's replica figures), so sampling needs no thread of its own. While a batch
is being retried the thread waits on the server, and samples resume when it answers again.
"""

from __future__ import annotations

import collections
import logging
import threading
import time
from typing import Any, Callable, Deque, Dict, List, Optional, Tuple

from . import _http
from .errors import DriftlineError, ServerUnavailableError

log = logging.getLogger("driftline")

Target = Callable[[], Tuple[str, Optional[str]]]
#: Seconds between two calls, and a function returning an encoded event to queue (or None).
Periodic = Tuple[float, Callable[[], Optional[str]]]


class Sender:
    """A bounded queue of encoded events and the thread that delivers them."""

    def __init__(
        self,
        target: Target,
        *,
        queue_size: int,
        batch_size: int,
        linger_ms: float,
        request_timeout_s: float,
        max_backoff_s: float,
        on_unreachable: Optional[Callable[[], None]] = None,
        periodic: Optional[Periodic] = None,
    ) -> None:
        if queue_size < 1 or batch_size < 1:
            raise ValueError("queue_size and batch_size must be at least 1")
        self._target = target
        self._on_unreachable = on_unreachable
        self._queue_size = queue_size
        self._batch_size = batch_size
        self._linger_s = max(linger_ms, 0.0) / 1000.0
        self._timeout_s = request_timeout_s
        self._max_backoff_s = max_backoff_s
        if periodic is not None and not periodic[0] > 0:
            raise ValueError("the interval of a periodic event must be a positive number of seconds")
        self._periodic = periodic
        self._next_periodic = time.monotonic() + periodic[0] if periodic is not None else float("inf")
        self._queue: Deque[Tuple[float, str]] = collections.deque()
        self._cond = threading.Condition()
        self._in_flight = 0
        self._flush_waiters = 0
        self._stopping = False
        self._counts: Dict[str, int] = {
            "enqueued": 0,
            "dropped": 0,
            "sent": 0,
            "accepted": 0,
            "duplicates": 0,
            "rejected": 0,
            "failed": 0,
            "batches": 0,
            "retries": 0,
        }
        self._last_error: Optional[str] = None
        self._thread = threading.Thread(target=self._run, name="driftline-sender", daemon=True)
        self._thread.start()

    # ---- the model's side: never blocks, never raises -------------------------------------

    def put(self, event_json: str) -> None:
        """Queue one encoded event, dropping the oldest queued one when full."""
        with self._cond:
            if self._stopping:
                self._counts["dropped"] += 1
                return
            if len(self._queue) >= self._queue_size:
                self._queue.popleft()
                self._counts["dropped"] += 1
            self._queue.append((time.monotonic(), event_json))
            self._counts["enqueued"] += 1
            # Wake the thread when a linger starts or a batch fills, not on every event: a
            # thread waiting out a backoff would otherwise be woken by every prediction.
            queued = len(self._queue)
            if queued == 1 or queued == self._batch_size:
                self._cond.notify_all()

    # ---- the caller's side ----------------------------------------------------------------

    def flush(self, timeout: Optional[float] = None) -> bool:
        """Send everything queued now; True when nothing is left queued or in flight."""
        deadline = None if timeout is None else time.monotonic() + timeout
        with self._cond:
            self._flush_waiters += 1
            self._cond.notify_all()
            try:
                while self._queue or self._in_flight:
                    if not self._thread.is_alive():
                        return False
                    remaining = None if deadline is None else deadline - time.monotonic()
                    if remaining is not None and remaining <= 0:
                        return False
                    self._cond.wait(0.5 if remaining is None else min(remaining, 0.5))
                return True
            finally:
                self._flush_waiters -= 1

    def close(self, timeout: float) -> bool:
        """Flush for at most ``timeout`` seconds, then stop the thread; what is left is dropped."""
        delivered = self.flush(timeout)
        with self._cond:
            self._stopping = True
            left = len(self._queue)
            self._counts["dropped"] += left
            self._queue.clear()
            self._cond.notify_all()
        self._thread.join(timeout=max(self._timeout_s, 1.0) + 1.0)
        if left:
            log.warning("driftline: %d events were not delivered before exit (%s)", left, self._last_error)
        return delivered

    def stats(self) -> Dict[str, Any]:
        """Counters since start: queued, in flight, sent, server answers, drops, retries."""
        with self._cond:
            out: Dict[str, Any] = dict(self._counts)
            out["queued"] = len(self._queue)
            out["in_flight"] = self._in_flight
            out["last_error"] = self._last_error
            return out

    # ---- the thread -----------------------------------------------------------------------

    def _take_batch(self) -> Optional[List[str]]:
        """The next batch; an empty one when the periodic event is due; None when stopping."""
        with self._cond:
            while True:
                if self._stopping:
                    return None
                now = time.monotonic()
                if now >= self._next_periodic:
                    return []
                if self._queue:
                    waited = now - self._queue[0][0]
                    if len(self._queue) >= self._batch_size or self._flush_waiters or waited >= self._linger_s:
                        n = min(self._batch_size, len(self._queue))
                        batch = [self._queue.popleft()[1] for _ in range(n)]
                        self._in_flight = n
                        return batch
                    wait = self._linger_s - waited
                else:
                    wait = 1.0
                self._cond.wait(min(wait, self._next_periodic - now))

    def _queue_periodic(self) -> None:
        """Make and queue the periodic event, outside the lock (it may read files)."""
        assert self._periodic is not None
        every_s, make = self._periodic
        due, now = self._next_periodic + every_s, time.monotonic()
        self._next_periodic = due if due > now else now + every_s  # late (a retry): skip, not catch up
        try:
            event_json = make()
        except Exception as err:  # a failed sample must not stop the sending
            message = f"periodic event failed: {err}"
            with self._cond:
                repeated, self._last_error = self._last_error == message, message
            if not repeated:
                log.warning("driftline: %s", message)
            return
        if event_json is not None:
            self.put(event_json)

    def _run(self) -> None:
        while True:
            batch = self._take_batch()
            if batch is None:
                return
            if not batch:
                self._queue_periodic()
                continue
            try:
                self._deliver(batch)
            except Exception as err:  # never let the thread die on a surprise
                self._record_failure(len(batch), f"unexpected error while sending: {err!r}")
            with self._cond:
                self._in_flight = 0
                self._cond.notify_all()

    def _deliver(self, batch: List[str]) -> None:
        backoff = 0.05
        while True:
            try:
                url, key = self._target()
                body = ("[" + ",".join(batch) + "]").encode("utf-8")
                report = _http.post_events(url, key, body, self._timeout_s)
            except ServerUnavailableError as err:
                with self._cond:
                    self._last_error = str(err)
                    self._counts["retries"] += 1
                    if self._stopping:
                        return
                if err.status is None and self._on_unreachable is not None:
                    try:
                        self._on_unreachable()
                    except Exception as again:
                        with self._cond:
                            self._last_error = str(again)
                log.debug("driftline: send failed, retrying in %.2fs: %s", backoff, err)
                with self._cond:
                    self._cond.wait_for(lambda: self._stopping, timeout=backoff)
                    if self._stopping:
                        return
                backoff = min(backoff * 2, self._max_backoff_s)
                continue
            except DriftlineError as err:
                if err.status == 413 and len(batch) > 1:
                    half = len(batch) // 2
                    self._deliver(batch[:half])
                    self._deliver(batch[half:])
                    return
                # 400, 401, 403, ...: sending the same bytes again cannot succeed.
                self._record_failure(len(batch), str(err))
                log.warning("driftline: %d events refused: %s", len(batch), err)
                return
            with self._cond:
                self._counts["batches"] += 1
                self._counts["sent"] += len(batch)
                for name in ("accepted", "duplicates", "rejected"):
                    value = report.get(name)
                    if isinstance(value, int):
                        self._counts[name] += value
                errors = report.get("errors") or []
                if errors:
                    first = errors[0]
                    self._last_error = f"event rejected by the server: {first.get('reason', first)}"
            if errors:
                log.warning("driftline: %d events rejected, first: %s", len(errors), errors[0])
            return

    def _record_failure(self, n: int, message: str) -> None:
        with self._cond:
            self._counts["failed"] += n
            self._last_error = message
