"""Turning engine results into JSON: what a job result may contain and how it is written."""

from __future__ import annotations

import base64
import datetime as _dt
import decimal
import json
from typing import Any


def to_json_list(out: Any) -> list[Any]:
    """The engine's result for one chunk (list, numpy array, Arrow array or table, iterable)
    as a Python list."""
    if isinstance(out, list):
        return out
    to_pylist = getattr(out, "to_pylist", None)
    if callable(to_pylist):  # pyarrow Array / ChunkedArray / Table (rows as dicts)
        return to_pylist()
    tolist = getattr(out, "tolist", None)
    if callable(tolist):  # numpy
        value = tolist()
        return value if isinstance(value, list) else [value]
    return list(out)


def json_default(value: Any) -> Any:
    """``json.dumps(default=...)`` for what Arrow and numpy results hold beyond JSON's types."""
    if isinstance(value, (_dt.datetime, _dt.date, _dt.time)):
        return value.isoformat()
    if isinstance(value, _dt.timedelta):
        return value.total_seconds()
    if isinstance(value, decimal.Decimal):
        return str(value)
    if isinstance(value, (bytes, bytearray, memoryview)):
        return base64.b64encode(bytes(value)).decode("ascii")
    item = getattr(value, "item", None)
    if callable(item):  # numpy scalar
        return item()
    if isinstance(value, (set, frozenset, tuple)):
        return list(value)
    raise TypeError(f"a result item of type {type(value).__name__} is not JSON-serializable")


def dumps(value: Any) -> str:
    """Strict JSON (no NaN/Infinity, which JSON cannot carry) with :func:`json_default`."""
    try:
        return json.dumps(value, default=json_default, allow_nan=False)
    except ValueError as exc:
        if "out of range float" in str(exc):
            raise ValueError(
                "the result contains NaN or Infinity, which JSON cannot carry") from None
        raise


__all__ = ["dumps", "json_default", "to_json_list"]
