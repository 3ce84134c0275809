"""Python values <-> ``txcoord.v1.Value``.

=====================  ===================================================
Python                 Value
=====================  ===================================================
``None``               ``null_value``
``bool``               ``bool_value``
``int``                ``int_value`` (int64; larger ints as ``decimal_value``)
``float``              ``double_value``
``decimal.Decimal``    ``decimal_value`` (plain notation, "12.30")
``str``                ``string_value``
``bytes``/bytearray    ``bytes_value``
``datetime.datetime``  ``timestamp_value`` (aware: converted to UTC, "...Z")
``datetime.date``      ``date_value``
``datetime.time``      ``time_value``
=====================  ===================================================
"""
from __future__ import annotations

import datetime as _dt
from decimal import Decimal
from typing import Any

from .v1 import common_pb2

_INT64_MIN, _INT64_MAX = -(2 ** 63), 2 ** 63 - 1


def _decimal_text(d: Decimal) -> str:
    if not d.is_finite():
        raise ValueError(f"txcoord: cannot send non-finite Decimal {d!r}")
    return format(d, "f")


def to_value(v: Any) -> common_pb2.Value:
    """Converts one Python value to a ``Value`` (raises ``TypeError`` for others)."""
    if v is None:
        return common_pb2.Value(null_value=0)
    if isinstance(v, bool):
        return common_pb2.Value(bool_value=v)
    if isinstance(v, int):
        if _INT64_MIN <= v <= _INT64_MAX:
            return common_pb2.Value(int_value=v)
        return common_pb2.Value(decimal_value=str(v))
    if isinstance(v, float):
        return common_pb2.Value(double_value=v)
    if isinstance(v, Decimal):
        return common_pb2.Value(decimal_value=_decimal_text(v))
    if isinstance(v, str):
        return common_pb2.Value(string_value=v)
    if isinstance(v, (bytes, bytearray, memoryview)):
        return common_pb2.Value(bytes_value=bytes(v))
    if isinstance(v, _dt.datetime):
        if v.tzinfo is not None and v.utcoffset() is not None:
            u = v.astimezone(_dt.timezone.utc).replace(tzinfo=None)
            return common_pb2.Value(timestamp_value=u.isoformat() + "Z")
        return common_pb2.Value(timestamp_value=v.isoformat())
    if isinstance(v, _dt.date):
        return common_pb2.Value(date_value=v.isoformat())
    if isinstance(v, _dt.time):
        if v.tzinfo is not None:
            raise TypeError("txcoord: time values with a time zone are not supported")
        return common_pb2.Value(time_value=v.isoformat())
    raise TypeError(f"txcoord: cannot convert {type(v).__name__} to a SQL value")


def _parse_timestamp(s: str) -> _dt.datetime:
    t = s.replace(" ", "T", 1)
    if t.endswith("Z"):
        return _dt.datetime.fromisoformat(t[:-1]).replace(tzinfo=_dt.timezone.utc)
    return _dt.datetime.fromisoformat(t)


def from_value(v: common_pb2.Value) -> Any:
    """Converts a ``Value`` to its Python value (see the module's table)."""
    kind = v.WhichOneof("kind")
    if kind is None or kind == "null_value":
        return None
    if kind == "bool_value":
        return v.bool_value
    if kind == "int_value":
        return v.int_value
    if kind == "double_value":
        return v.double_value
    if kind == "decimal_value":
        return Decimal(v.decimal_value)
    if kind == "string_value":
        return v.string_value
    if kind == "bytes_value":
        return bytes(v.bytes_value)
    if kind == "date_value":
        return _dt.date.fromisoformat(v.date_value)
    if kind == "time_value":
        return _dt.time.fromisoformat(v.time_value)
    if kind == "timestamp_value":
        return _parse_timestamp(v.timestamp_value)
    raise ValueError(f"txcoord: unknown Value kind {kind}")
