"""JSON encoding of tracked values: NumPy and pandas scalars and arrays, and no NaN on the wire."""

from __future__ import annotations

import json
import math
from typing import Any


def _default(obj: Any) -> Any:
    if hasattr(obj, "tolist"):  # NumPy arrays and scalars, pandas objects
        return obj.tolist()
    if hasattr(obj, "item"):
        return obj.item()
    if isinstance(obj, (set, frozenset, tuple)):
        return list(obj)
    if isinstance(obj, bytes):
        return obj.decode("utf-8", "replace")
    if hasattr(obj, "isoformat"):
        return obj.isoformat()
    return str(obj)


def _plain(obj: Any, depth: int = 0) -> Any:
    """The same value as plain JSON types: string keys, and NaN and infinities as null."""
    if depth > 200:
        return str(obj)
    if obj is None or isinstance(obj, (bool, int, str)):
        return obj
    if isinstance(obj, float):
        return obj if math.isfinite(obj) else None
    if isinstance(obj, dict):
        return {str(k): _plain(v, depth + 1) for k, v in obj.items()}
    if isinstance(obj, (list, tuple, set, frozenset)):
        return [_plain(v, depth + 1) for v in obj]
    converted = _default(obj)
    if converted is obj or isinstance(converted, str):
        return converted
    return _plain(converted, depth + 1)


# One encoder for every call: `json.dumps` with non-default options builds a new one each time,
# which costs more than encoding a small event.
_encode = json.JSONEncoder(separators=(",", ":"), allow_nan=False, default=_default).encode
_encode_plain = json.JSONEncoder(separators=(",", ":"), allow_nan=False).encode


def dumps(obj: Any) -> str:
    """Encode ``obj`` as compact JSON that driftline accepts; never raises for odd values."""
    try:
        return _encode(obj)
    except (ValueError, TypeError, RecursionError):
        # A NaN or infinity, a key that is not a string, or a cycle: convert to plain values.
        return _encode_plain(_plain(obj))
