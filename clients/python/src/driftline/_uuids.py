"""Version-4 UUIDs for predictions, made in batches from ``os.urandom``.

``str(uuid.uuid4())`` costs about 2.7 µs a call; most of it is building the ``UUID`` object and
its string. Here one ``os.urandom`` call gives the random bytes of ``BATCH`` UUIDs at once, the
version and variant bits are set over the whole buffer with two ``bytes.translate`` calls, the
buffer is hex-encoded in one call and cut into the canonical ``8-4-4-4-12`` strings. A call then
takes one string from the pool. The randomness is the same as ``uuid.uuid4()``'s (122 bits from
``os.urandom``); the strings are what ``str(uuid.UUID(...))`` prints.

A forked child empties its pool (the parent's remaining strings would otherwise be handed out by
both processes) and refills it from ``os.urandom`` in the child.
"""

from __future__ import annotations

import os
from typing import List

#: UUIDs made per ``os.urandom`` call.
BATCH = 256

# Byte 6 holds the version in its high nibble (0100), byte 8 the variant in its two high bits (10).
_VERSION_4 = bytes((b & 0x0F) | 0x40 for b in range(256))
_VARIANT_RFC4122 = bytes((b & 0x3F) | 0x80 for b in range(256))

_pool: List[str] = []


def make_batch(count: int = BATCH) -> List[str]:
    """``count`` new random version-4 UUID strings."""
    raw = bytearray(os.urandom(16 * count))
    raw[6::16] = raw[6::16].translate(_VERSION_4)
    raw[8::16] = raw[8::16].translate(_VARIANT_RFC4122)
    h = raw.hex()
    return [f"{h[i:i + 8]}-{h[i + 8:i + 12]}-{h[i + 12:i + 16]}-{h[i + 16:i + 20]}-{h[i + 20:i + 32]}" for i in range(0, 32 * count, 32)]


def uuid4() -> str:
    """A new random version-4 UUID as a string, like ``str(uuid.uuid4())``. Thread-safe:
    ``list.pop`` and ``list.extend`` are atomic, so no two callers get the same string."""
    while True:
        try:
            return _pool.pop()
        except IndexError:
            _pool.extend(make_batch())


def _after_fork_in_child() -> None:
    _pool.clear()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_after_fork_in_child)
