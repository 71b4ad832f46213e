"""The bounded event queue and the background thread that sends it in batches.

Events are encoded JSON texts (with a Kafka message key). ``put`` never blocks and never raises:
when the queue is full the oldest queued event is dropped and counted. The sender thread takes a
batch when ``batch_size`` events are queued or the oldest has waited ``linger_ms``, hands it to
its transport (``_delivery.py``: HTTP, or Kafka in ``_kafka.py``), and sends what the transport
hands back (the server or the broker away) again with capped exponential backoff, so an event is
stored once however often it is sent (the store keeps one row per prediction UUID).

With more than one transport (HTTP: one connection each) as many threads send at once, so one
batch crosses the network and is parsed while the server stores the one before; the server
answers each only once it is stored, so a single sender would leave it idle in between.

A forked child starts with an empty queue and threads of its own (see ``after_fork_in_child``).

With a ``periodic`` producer, the first thread also queues the event it makes every ``every_s``
seconds (this process's replica figures), so sampling needs no thread of its own. While a batch
is being retried the thread waits on the server, and samples resume when it answers again.
"""

from __future__ import annotations

import collections
import logging
import threading
import time
from typing import Any, Callable, Deque, Dict, List, Optional, Tuple

from ._delivery import Event, Transport

log = logging.getLogger("driftline")

#: Seconds between two calls, and a function returning an event to queue (or None).
Periodic = Tuple[float, Callable[[], Optional[Event]]]


class Sender:
    """A bounded queue of encoded events and the thread that delivers them."""

    def __init__(
        self,
        transports: List[Transport],
        *,
        queue_size: int,
        batch_size: int,
        linger_ms: float,
        request_timeout_s: float,
        max_backoff_s: float,
        periodic: Optional[Periodic] = None,
    ) -> None:
        if queue_size < 1 or batch_size < 1:
            raise ValueError("queue_size and batch_size must be at least 1")
        if not transports:
            raise ValueError("a sender needs at least one transport")
        self._transports = transports
        self._queue_size = queue_size
        self._batch_size = batch_size
        self._linger_s = max(linger_ms, 0.0) / 1000.0
        self._timeout_s = request_timeout_s
        self._max_backoff_s = max_backoff_s
        if periodic is not None and not periodic[0] > 0:
            raise ValueError("the interval of a periodic event must be a positive number of seconds")
        self._periodic = periodic
        self._stopping = False
        self._reset()
        self._start_thread()

    def _reset(self) -> None:
        """A new, empty state: at the start, and in a forked child."""
        self._lock = threading.Lock()
        # The thread waits on `_work` for a batch to fill or a linger to end; flush() waits on
        # `_idle` for the queue to empty. put() notifies only when a batch fills, or when the
        # first event arrives while the thread waits on an empty queue: not once per event.
        self._work = threading.Condition(self._lock)
        self._idle = threading.Condition(self._lock)
        self._queue: Deque[Event] = collections.deque()
        self._oldest_at = 0.0  # when the oldest queued event was queued (monotonic)
        self._waiting_empty = False
        self._in_flight = 0
        self._flush_waiters = 0
        self._enqueued = 0
        self._dropped = 0
        self._counts: Dict[str, int] = {
            "sent": 0,
            "accepted": 0,
            "duplicates": 0,
            "rejected": 0,
            "failed": 0,
            "batches": 0,
            "retries": 0,
        }
        self._last_error: Optional[str] = None
        self._lost_at_stop = 0  # taken from the queue, then given up when stopping
        periodic = self._periodic
        self._next_periodic = time.monotonic() + periodic[0] if periodic is not None else float("inf")
        self._threads: List[threading.Thread] = []

    def _start_thread(self) -> None:
        """Starts one thread per transport; the first also serves the periodic event and polls."""
        self._threads = [
            threading.Thread(target=self._run, args=(i,), name=f"driftline-sender-{i}", daemon=True)
            for i in range(len(self._transports))
        ]
        for thread in self._threads:
            thread.start()

    def _running(self) -> bool:
        return any(thread.is_alive() for thread in self._threads)

    def after_fork_in_child(self) -> None:
        """In a forked child: forget the parent's queue, lock, connection and counters.

        The events queued before the fork are the parent's, which sends them; the child sends
        only its own. The child's threads start when it first queues or flushes (at once when a
        periodic event is configured), so a child that never tracks anything runs no thread.
        """
        self._reset()
        for transport in self._transports:
            transport.after_fork_in_child()
        if self._periodic is not None and not self._stopping:
            self._start_thread()

    # ---- the model's side: never blocks, never raises -------------------------------------

    def put(self, event_json: str, key: Optional[str] = None) -> None:
        """Queue one encoded event, dropping the oldest queued one when full. ``key`` is its Kafka
        message key (the HTTP transport ignores it)."""
        with self._lock:
            if self._stopping:
                self._dropped += 1
                return
            queue = self._queue
            queued = len(queue)
            if queued >= self._queue_size:
                queue.popleft()
                self._dropped += 1
                queued -= 1
            elif queued == 0:
                self._oldest_at = time.monotonic()
            queue.append((event_json, key))
            self._enqueued += 1
            if not self._threads:
                self._start_thread()
            if queued + 1 == self._batch_size or (queued == 0 and self._waiting_empty):
                self._waiting_empty = False
                self._work.notify()

    # ---- the caller's side ----------------------------------------------------------------

    def flush(self, timeout: Optional[float] = None) -> bool:
        """Send everything queued now; True when nothing is left queued or in flight."""
        deadline = None if timeout is None else time.monotonic() + timeout
        with self._lock:
            if not self._threads and self._queue and not self._stopping:
                self._start_thread()
            self._flush_waiters += 1
            self._work.notify_all()
            try:
                while self._queue or self._in_flight:
                    if not self._running():
                        return False
                    remaining = None if deadline is None else deadline - time.monotonic()
                    if remaining is not None and remaining <= 0:
                        return False
                    self._idle.wait(0.5 if remaining is None else min(remaining, 0.5))
                return True
            finally:
                self._flush_waiters -= 1

    def close(self, timeout: float) -> bool:
        """Flush for at most ``timeout`` seconds, then stop the thread; what is left is dropped."""
        delivered = self.flush(timeout)
        with self._lock:
            self._stopping = True
            left = len(self._queue)
            self._dropped += left
            self._queue.clear()
            self._work.notify_all()
            threads = list(self._threads)
        deadline = time.monotonic() + max(self._timeout_s, 1.0) + 1.0
        for thread in threads:
            thread.join(timeout=max(deadline - time.monotonic(), 0.0))
        for transport in self._transports:
            transport.close()
        with self._lock:
            lost = left + self._lost_at_stop
        if lost:
            log.warning("driftline: %d events were not delivered before exit (%s)", lost, self._last_error)
        return delivered

    def stats(self) -> Dict[str, Any]:
        """Counters since start: queued, in flight, sent, server answers, drops, retries."""
        with self._lock:
            out: Dict[str, Any] = {"enqueued": self._enqueued, "dropped": self._dropped}
            out.update(self._counts)
            out["queued"] = len(self._queue)
            out["in_flight"] = self._in_flight
            out["last_error"] = self._last_error
            return out

    # ---- the thread -----------------------------------------------------------------------

    def _take_batch(self, primary: bool) -> Optional[List[Event]]:
        """The next batch; None when stopping; for the primary thread, an empty one when the
        periodic event is due or the queue stayed empty for a second (the transport is then
        polled)."""
        with self._lock:
            while True:
                if self._stopping:
                    return None
                now = time.monotonic()
                next_periodic = self._next_periodic if primary else now + 1.0
                if now >= next_periodic:
                    return []
                queue = self._queue
                queued = len(queue)
                if queued:
                    waited = now - self._oldest_at
                    if queued >= self._batch_size or self._flush_waiters or waited >= self._linger_s:
                        if queued <= self._batch_size:
                            batch = list(queue)
                            queue.clear()
                        else:
                            # The rest keep the time of the oldest: none waits more than linger.
                            batch = [queue.popleft() for _ in range(self._batch_size)]
                        self._in_flight += len(batch)
                        return batch
                    wait = self._linger_s - waited
                    self._work.wait(min(wait, next_periodic - now))
                else:
                    self._waiting_empty = True
                    self._work.wait(min(1.0, next_periodic - now))
                    self._waiting_empty = False
                    if not self._queue and primary:
                        return []

    def _queue_periodic(self) -> None:
        """Make and queue the periodic event, outside the lock (it may read files)."""
        assert self._periodic is not None
        every_s, make = self._periodic
        due, now = self._next_periodic + every_s, time.monotonic()
        self._next_periodic = due if due > now else now + every_s  # late (a retry): skip, not catch up
        try:
            event = make()
        except Exception as err:  # a failed sample must not stop the sending
            message = f"periodic event failed: {err}"
            with self._lock:
                repeated, self._last_error = self._last_error == message, message
            if not repeated:
                log.warning("driftline: %s", message)
            return
        if event is not None:
            self.put(*event)

    def _run(self, index: int) -> None:
        transport = self._transports[index]
        while True:
            batch = self._take_batch(primary=index == 0)
            if batch is None:
                return
            if not batch:
                if time.monotonic() >= self._next_periodic:
                    self._queue_periodic()
                try:
                    error = transport.poll()
                except Exception as err:
                    error = f"unexpected error while polling: {err!r}"
                if error is not None:
                    with self._lock:
                        self._last_error = error
                continue
            in_flight = [len(batch)]
            try:
                self._deliver(transport, batch, in_flight)
            except Exception as err:  # never let the thread die on a surprise
                self._record_failure(in_flight[0], f"unexpected error while sending: {err!r}")
            with self._lock:
                self._in_flight -= in_flight[0]
                if self._flush_waiters:
                    self._idle.notify_all()

    def _deliver(self, transport: Transport, batch: List[Event], in_flight: List[int]) -> None:
        """Sends ``batch`` until it is delivered or given up; ``in_flight[0]`` follows how many of
        its events are still this thread's to send."""
        backoff = 0.05
        while True:
            outcome = transport.send(batch, self._is_stopping)
            with self._lock:
                for name, n in outcome.counts.items():
                    self._counts[name] += n
                if outcome.error is not None:
                    self._last_error = outcome.error
                if not outcome.retry:
                    return
                self._in_flight += len(outcome.retry) - in_flight[0]
                batch = outcome.retry
                in_flight[0] = len(batch)
                self._counts["retries"] += 1
                if not self._stopping:
                    self._work.wait_for(lambda: self._stopping, timeout=backoff)
                if self._stopping:
                    self._dropped += len(batch)
                    self._lost_at_stop += len(batch)
                    return
            backoff = min(backoff * 2, self._max_backoff_s)

    def _is_stopping(self) -> bool:
        return self._stopping

    def _record_failure(self, n: int, message: str) -> None:
        with self._lock:
            self._counts["failed"] += n
            self._last_error = message
