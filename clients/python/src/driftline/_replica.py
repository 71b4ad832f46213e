"""Resource use of this process, as ``replica_stats`` events: CPU percent and resident memory.

CPU is the process's user plus system time (all threads, from ``time.process_time``) over the
wall time since the previous measurement, in percent of one core: 250.0 is two and a half cores
busy. The first measurement covers the time since ``driftline`` was imported, and a forked child
starts over from the fork. Memory is the resident set from ``/proc/self/statm`` on Linux, else
``psutil`` when installed, else the peak resident set from ``resource.getrusage``.
"""

from __future__ import annotations

import os
import re
import socket
import sys
import threading
import time
from typing import Any, Dict, Optional

#: What the server accepts as a replica id: it becomes part of a series path, so no dots.
REPLICA_ID_RE = re.compile(r"[A-Za-z0-9_:-]{1,128}")
MAX_REPLICA_ID = 128
#: The largest CPU figure the server accepts (percent of one core: a thousand cores).
MAX_CPU_PERCENT = 100_000.0
#: The largest memory figure the server accepts (the integers a double holds exactly).
MAX_MEMORY_BYTES = 2**53


def check_replica_id(replica_id: Any, name: str = "replica_id") -> str:
    """``replica_id`` if the server accepts it; a ValueError naming ``name`` otherwise."""
    if not isinstance(replica_id, str):
        raise TypeError(f"{name} must be a string such as 'churn-7d9f-x2k', not {type(replica_id).__name__}")
    if not REPLICA_ID_RE.fullmatch(replica_id):
        raise ValueError(
            f"{name}={replica_id!r} is not a replica id: use 1 to {MAX_REPLICA_ID} letters, digits, "
            "'-', '_' and ':' (no dots), such as 'churn-7d9f-x2k'"
        )
    return replica_id


def default_replica_id() -> str:
    """``<hostname>:<pid>``: the first label of the host name with other characters as ``-``.

    The pid is part of it because the figures are this process's own: worker processes sharing
    a host (gunicorn, several models on one machine) each get their own series rather than one
    series of interleaved figures. Set ``DRIFTLINE_REPLICA_ID`` to a stable name (such as the pod
    name) to keep one series across restarts of the process.
    """
    pid = str(os.getpid())
    try:
        host = socket.gethostname().split(".")[0]
    except OSError:
        host = ""
    host = re.sub(r"[^A-Za-z0-9_-]", "-", host).strip("-") or "host"
    return host[: MAX_REPLICA_ID - len(pid) - 1] + ":" + pid


def check_cpu_percent(value: Any) -> float:
    """A CPU figure the server accepts, or a ValueError naming ``cpu_percent``."""
    if isinstance(value, bool) or not isinstance(value, (int, float)) and not hasattr(value, "__float__"):
        raise TypeError(f"cpu_percent must be a number (percent of one core, such as 37.5), not {type(value).__name__}")
    number = float(value)
    if not 0.0 <= number <= MAX_CPU_PERCENT:
        raise ValueError(f"cpu_percent={value!r} is outside [0, {MAX_CPU_PERCENT:.0f}] (percent of one core, such as 37.5)")
    return number


def check_memory_bytes(value: Any) -> int:
    """A memory figure the server accepts (a whole number of bytes), or a ValueError naming it."""
    if isinstance(value, bool) or not isinstance(value, (int, float)) and not hasattr(value, "__index__"):
        raise TypeError(f"memory_bytes must be a whole number of bytes, not {type(value).__name__}")
    if isinstance(value, float):
        if not value.is_integer():
            raise ValueError(f"memory_bytes={value!r} is not a whole number of bytes")
        value = int(value)
    number = int(value)
    if not 0 <= number <= MAX_MEMORY_BYTES:
        raise ValueError(f"memory_bytes={value!r} is outside [0, 2**53] bytes")
    return number


class Meter:
    """CPU use since the previous measurement, and resident memory, of this process."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._cpu_s = time.process_time()
        self._wall_s = time.monotonic()

    def restart(self) -> None:
        """Measure the next CPU figure from now (in a forked child: from the fork)."""
        # A new lock: the parent's may have been held by another thread at the fork.
        self._lock = threading.Lock()
        self._cpu_s = time.process_time()
        self._wall_s = time.monotonic()

    def cpu_percent(self) -> float:
        """Percent of one core this process used since the previous call (or since the start)."""
        cpu_s, wall_s = time.process_time(), time.monotonic()
        with self._lock:
            used, elapsed = cpu_s - self._cpu_s, wall_s - self._wall_s
            self._cpu_s, self._wall_s = cpu_s, wall_s
        if elapsed <= 0 or used <= 0:
            return 0.0
        return min(100.0 * used / elapsed, MAX_CPU_PERCENT)


def memory_bytes() -> Optional[int]:
    """Resident memory of this process in bytes; None where it cannot be measured."""
    try:
        with open("/proc/self/statm", "rb") as f:
            return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    except (OSError, ValueError, IndexError, AttributeError):
        pass
    try:
        import psutil  # type: ignore  # optional: pip install 'driftline[psutil]'

        return int(psutil.Process().memory_info().rss)
    except Exception:
        pass
    try:
        import resource

        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        return int(peak) if sys.platform == "darwin" else int(peak) * 1024  # bytes on macOS, KiB elsewhere
    except Exception:
        return None


METER = Meter()
if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=METER.restart)


def event(
    model_deployment_crn: str,
    replica_id: str,
    timestamp_ms: int,
    cpu_percent: float,
    memory_bytes: int,
) -> Dict[str, Any]:
    """The ``replica_stats`` event of these figures."""
    return {
        "v": 1,
        "type": "replica_stats",
        "model_deployment_crn": model_deployment_crn,
        "replica_id": replica_id,
        "timestamp_ms": timestamp_ms,
        "cpu_percent": cpu_percent,
        "memory_bytes": memory_bytes,
    }
