"""Reading a batch's event times: one int64 millisecond per row, from the ``timestamp=`` column.

Arrow timestamps (any unit, any zone) and dates are converted exactly; integers are epoch
milliseconds unless ``timestamp_unit`` says "s", "us" or "ns"; strings are ISO-8601, with or
without a zone ("2024-05-01T12:00:00Z", "2024-05-01 12:00:00.250", "...+02:00"); a string without
a zone is read as UTC. Rows whose time is null or does not parse are bad records.
"""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from ..errors import ConfigError

UNITS = ("s", "ms", "us", "ns")
_PER_MS = {"s": None, "ms": 1, "us": 1000, "ns": 1_000_000}
_ZONED = r"(Z|[+-]\d\d:?\d\d)$"


def check_unit(unit: str) -> str:
    if unit not in UNITS:
        raise ConfigError("timestamp_unit", unit, f"one of {', '.join(UNITS)}")
    return unit


def _ints_to_ms(values: pa.Array, unit: str) -> pa.Array:
    values = values.cast(pa.int64())
    if unit == "s":
        return pc.multiply_checked(values, 1000)
    div = _PER_MS[unit]
    return values if div == 1 else pc.divide(values, div)


def _strings_to_ms(values: pa.Array) -> tuple[pa.Array, pa.Array]:
    """(int64 ms with nulls where unparseable, bool mask of the unparseable)."""
    zoned = pc.fill_null(pc.match_substring_regex(values, _ZONED), False)
    out = pa.nulls(len(values), pa.int64())
    parts = []
    for mask, typ in ((zoned, pa.timestamp("ms", "UTC")), (pc.invert(zoned), pa.timestamp("ms"))):
        sub = values.filter(mask)
        if len(sub) == 0:
            continue
        try:
            conv = pc.cast(sub, typ).cast(pa.int64())
        except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
            # Some strings do not parse: convert one by one (only on this bad-input path).
            conv = pa.array([_one_string(s, typ) for s in sub.to_pylist()], pa.int64())
        parts.append((mask, conv))
    if not parts:
        return out, pc.is_null(values)
    merged = np.full(len(values), 0, dtype=np.int64)
    valid = np.zeros(len(values), dtype=bool)
    for mask, conv in parts:
        idx = np.flatnonzero(np.asarray(mask.to_numpy(zero_copy_only=False)))
        merged[idx] = np.asarray(conv.fill_null(0).to_numpy(zero_copy_only=False))
        valid[idx] = np.asarray(conv.is_valid().to_numpy(zero_copy_only=False))
    arr = pa.array(merged, mask=~valid)
    return arr, pa.array(~valid)


def _one_string(s: str | None, typ: pa.DataType) -> int | None:
    if s is None:
        return None
    try:
        return pc.cast(pa.array([s]), typ).cast(pa.int64())[0].as_py()
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
        return None


def extract_ms(column: pa.Array | pa.ChunkedArray, unit: str = "ms") -> tuple[np.ndarray, np.ndarray | None]:
    """(event times as int64 ms, a bool array of bad rows or None when all are good)."""
    if isinstance(column, pa.ChunkedArray):
        column = column.combine_chunks()
    typ = column.type
    if pa.types.is_timestamp(typ):
        ms = pc.cast(column, pa.timestamp("ms", typ.tz), safe=False).cast(pa.int64())
    elif pa.types.is_date(typ):
        ms = pc.cast(pc.cast(column, pa.timestamp("ms")), pa.int64())
    elif pa.types.is_integer(typ):
        ms = _ints_to_ms(column, unit)
    elif pa.types.is_floating(typ):
        factor = {"s": 1000.0, "ms": 1.0, "us": 1e-3, "ns": 1e-6}[unit]
        ms = pc.cast(pc.floor(pc.multiply(column, factor)), pa.int64())
    elif pa.types.is_string(typ) or pa.types.is_large_string(typ):
        ms, _ = _strings_to_ms(column)
    else:
        raise TypeError(f"cannot read event times from a {typ} column; accepted: Arrow timestamps "
                        "or dates, integers (epoch, see timestamp_unit) or ISO-8601 strings")
    bad = None
    if ms.null_count:
        bad = np.asarray(ms.is_null().to_numpy(zero_copy_only=False))
        ms = ms.fill_null(0)
    return np.asarray(ms.to_numpy(zero_copy_only=False), dtype=np.int64), bad


def to_timestamps(ms: np.ndarray) -> pa.Array:
    """int64 milliseconds as an Arrow ``timestamp[ms]`` array (zero copy)."""
    return pa.array(ms, pa.int64()).view(pa.timestamp("ms"))
