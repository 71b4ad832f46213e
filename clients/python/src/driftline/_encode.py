"""JSON encoding of tracked values: NumPy and pandas scalars and arrays, and no NaN on the wire.

Everything is encoded compact and ASCII-only (``ensure_ascii``), so the length of an encoded text
is its size in bytes.
"""

from __future__ import annotations

import json
import math
from typing import Any, Callable, Iterable

try:  # CPython's C accelerator
    from json.encoder import c_make_encoder as _c_make_encoder  # type: ignore[attr-defined]
    from json.encoder import encode_basestring_ascii as _encode_str
except ImportError:  # pragma: no cover - other interpreters
    _c_make_encoder = None
    from json.encoder import py_encode_basestring_ascii as _encode_str


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
_json_encoder = json.JSONEncoder(separators=(",", ":"), allow_nan=False, default=_default)
_encode_plain = json.JSONEncoder(separators=(",", ":"), allow_nan=False).encode


def _c_encoder() -> Callable[[Any], str]:
    """The C encoder itself, made once, when this interpreter has it: ``JSONEncoder.encode``
    makes a new one on every call. Without circular-reference markers (a cycle ends in a
    RecursionError, which :func:`dumps` handles), so it keeps no state and threads share it."""
    slow = _json_encoder.encode
    if _c_make_encoder is None:
        return slow
    try:
        make = _c_make_encoder(None, _default, _encode_str, None, ":", ",", False, False, False)
    except TypeError:  # another signature in this Python version
        return slow
    join = "".join

    def encode(obj: Any) -> str:
        return join(make(obj, 0))

    sample = {"a": [1, 2.5, "é", None, True], "b": {"c": -0.0}, "d": (1,)}
    try:
        if encode(sample) == slow(sample):
            return encode
    except Exception:  # pragma: no cover - fall back rather than fail at import
        pass
    return slow  # pragma: no cover


_encode = _c_encoder()


def dumps(obj: Any) -> str:
    """Encode ``obj`` as compact JSON that driftline accepts; never raises for odd values."""
    try:
        return _encode(obj)
    except (ValueError, TypeError, RecursionError):
        # A NaN or infinity, a key that is not a string, or a cycle: convert to plain values.
        return _encode_plain(_plain(obj))


def value_json(value: Any) -> str:
    """``dumps(value)``, with the common scalars encoded without calling the encoder."""
    kind = type(value)
    if kind is str:
        return _encode_str(value)
    if kind is float:
        return float.__repr__(value) if math.isfinite(value) else "null"
    if kind is int:
        return int.__repr__(value) if -(10**18) < value < 10**18 else dumps(value)
    if value is None:
        return "null"
    if kind is bool:
        return "true" if value else "false"
    return dumps(value)


def key_json(key: str) -> str:
    """A string key as JSON."""
    return _encode_str(key)


def object_json(items: Iterable[str]) -> str:
    """A JSON object from already encoded ``"key":value`` members."""
    return "{" + ",".join(items) + "}"
