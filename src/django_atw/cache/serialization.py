"""Cache values as msgpack, with extension types for common Python values.

Round-trips None, bool, int, float, str, bytes (msgpack's own bin type), lists, dicts and the
extension types below. Tuples come back as lists (msgpack has one array type). Anything else
raises ``SerializationError`` and is not cached.
"""

from __future__ import annotations

import datetime
import decimal
import uuid
from typing import Any

import msgpack

# Extension type codes; stored values depend on them, so never renumber one.
_DATETIME = 1
_DATE = 2
_UUID = 3
_DECIMAL = 4
_SET = 5
_FROZENSET = 6
_TIME = 7
_TIMEDELTA = 8


class SerializationError(ValueError):
    """A value cannot be stored in the cache (an unsupported type, or a corrupt entry)."""


def _encode_ext(value: Any) -> msgpack.ExtType:
    # datetime before date: a datetime is a date too.
    if isinstance(value, datetime.datetime):
        return msgpack.ExtType(_DATETIME, value.isoformat().encode())
    if isinstance(value, datetime.date):
        return msgpack.ExtType(_DATE, value.isoformat().encode())
    if isinstance(value, datetime.time):
        return msgpack.ExtType(_TIME, value.isoformat().encode())
    if isinstance(value, datetime.timedelta):
        return msgpack.ExtType(_TIMEDELTA, _pack([value.days, value.seconds, value.microseconds]))
    if isinstance(value, uuid.UUID):
        return msgpack.ExtType(_UUID, value.bytes)
    if isinstance(value, decimal.Decimal):
        return msgpack.ExtType(_DECIMAL, str(value).encode())
    if isinstance(value, frozenset):
        return msgpack.ExtType(_FROZENSET, _pack(list(value)))
    if isinstance(value, set):
        return msgpack.ExtType(_SET, _pack(list(value)))
    raise SerializationError(f"a {type(value).__module__}.{type(value).__qualname__} cannot be cached")


def _decode_ext(code: int, data: bytes) -> Any:
    if code == _DATETIME:
        return datetime.datetime.fromisoformat(data.decode())
    if code == _DATE:
        return datetime.date.fromisoformat(data.decode())
    if code == _TIME:
        return datetime.time.fromisoformat(data.decode())
    if code == _TIMEDELTA:
        days, seconds, microseconds = _unpack(data)
        return datetime.timedelta(days=days, seconds=seconds, microseconds=microseconds)
    if code == _UUID:
        return uuid.UUID(bytes=data)
    if code == _DECIMAL:
        return decimal.Decimal(data.decode())
    if code == _SET:
        return set(_unpack(data))
    if code == _FROZENSET:
        return frozenset(_unpack(data))
    return msgpack.ExtType(code, data)


def _pack(value: Any) -> bytes:
    packed: bytes = msgpack.packb(value, default=_encode_ext, use_bin_type=True, datetime=False)
    return packed


def _unpack(data: bytes) -> Any:
    return msgpack.unpackb(data, ext_hook=_decode_ext, raw=False, strict_map_key=False)


def dumps(value: Any) -> bytes:
    """Serialize ``value``; raise ``SerializationError`` naming what cannot be cached."""
    try:
        return _pack(value)
    except SerializationError:
        raise
    except (TypeError, ValueError, OverflowError) as exc:
        raise SerializationError(str(exc)) from exc


def loads(data: bytes) -> Any:
    """Deserialize a value written by ``dumps``."""
    try:
        return _unpack(bytes(data))
    except (ValueError, TypeError, msgpack.ExtraData, msgpack.FormatError, msgpack.StackError) as exc:
        raise SerializationError(f"corrupt cache entry: {exc}") from exc
