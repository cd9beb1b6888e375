"""Key groups: which instance of a distributed job owns each row's key.

A key's hash picks one of ``key_groups`` groups (a fixed number, like Flink's max
parallelism); the groups are cut into ``instances`` contiguous ranges, one per instance. The
number of groups never changes for a job, so a job started again on another number of instances
hands whole groups over. The hash is the same in every process (no Python ``hash``, which is
salted per process): integers (and times, booleans) by their int64 value, floats by their bits,
anything else by the CRC-32 of its text, so equal keys of two inputs of a join (an ``int32``
and an ``int64`` column, a string and a large string) land on the same instance.
"""

from __future__ import annotations

import zlib

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from ..errors import ConfigError

DEFAULT_KEY_GROUPS = 128
MAX_KEY_GROUPS = 32_768

_M1 = np.uint64(0xBF58476D1CE4E5B9)
_M2 = np.uint64(0x94D049BB133111EB)
_GOLD = np.uint64(0x9E3779B97F4A7C15)


def check_key_groups(value: object) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= MAX_KEY_GROUPS:
        raise ConfigError("key_groups", value, f"an integer from 1 to {MAX_KEY_GROUPS}")
    return value


def _mix(x: np.ndarray) -> np.ndarray:
    """splitmix64's finalizer: every input bit moves every output bit."""
    with np.errstate(over="ignore"):
        x = x ^ (x >> np.uint64(30))
        x = x * _M1
        x = x ^ (x >> np.uint64(27))
        x = x * _M2
        return x ^ (x >> np.uint64(31))


def _column_hash(col: pa.Array) -> np.ndarray:
    t = col.type
    if pa.types.is_dictionary(t):
        col = col.cast(t.value_type)
        t = col.type
    if pa.types.is_timestamp(t):
        col = col.cast(pa.timestamp("us", t.tz)).view(pa.int64())  # (one unit for every column)
    elif pa.types.is_duration(t):
        col = col.cast(pa.duration("us")).view(pa.int64())
    elif pa.types.is_date64(t):
        col = col.cast(pa.date32())
    if pa.types.is_date32(col.type) or pa.types.is_time(col.type):
        col = col.cast(pa.int32() if col.type.bit_width == 32 else pa.int64())
    t = col.type
    if pa.types.is_integer(t) or pa.types.is_boolean(t):
        vals = np.asarray(col.cast(pa.int64()).fill_null(0).to_numpy(zero_copy_only=False),
                          dtype=np.int64).view(np.uint64)
        return _mix(vals)
    if pa.types.is_floating(t):
        vals = np.asarray(col.cast(pa.float64()).fill_null(0.0).to_numpy(zero_copy_only=False),
                          dtype=np.float64) + 0.0  # -0.0 and 0.0 alike
        return _mix(vals.view(np.uint64))
    # Anything else: each distinct value's text, hashed once per batch.
    enc = pc.dictionary_encode(col)
    if isinstance(enc, pa.ChunkedArray):
        enc = enc.combine_chunks()
    words = np.array([zlib.crc32(_text(v)) for v in enc.dictionary.to_pylist()] or [0],
                     dtype=np.uint64)
    idx = np.asarray(enc.indices.fill_null(0).to_numpy(zero_copy_only=False), dtype=np.int64)
    return _mix(words[idx] if len(words) else np.zeros(len(col), np.uint64))


def _text(value: object) -> bytes:
    if isinstance(value, bytes):
        return value
    if isinstance(value, str):
        return value.encode("utf-8")
    return repr(value).encode("utf-8")


def key_hashes(batch: pa.RecordBatch, keys: list[str]) -> np.ndarray:
    """One uint64 per row, from the key columns (all rows alike when ``keys`` is empty)."""
    h = np.zeros(batch.num_rows, dtype=np.uint64)
    with np.errstate(over="ignore"):
        for k in keys:
            h = _mix(h * _GOLD + _column_hash(batch.column(k)))
    return h


def owners_of_keys(keys: list[object], width: int, key_groups: int, instances: int
                   ) -> np.ndarray:
    """The instance owning each of ``keys``: Python values as an operator keeps them (a value
    for one key column, a tuple for ``width`` > 1), hashed as their columns are."""
    if not keys:
        return np.zeros(0, dtype=np.int64)
    if width == 1:
        cols = [pa.array([k[0] if isinstance(k, tuple) else k for k in keys])]
    else:
        cols = [pa.array([k[i] for k in keys]) for i in range(width)]  # type: ignore[index]
    names = [f"k{i}" for i in range(width)]
    return owners(pa.record_batch(cols, names=names), names, key_groups, instances)


def instance_of_groups(groups: np.ndarray, key_groups: int, instances: int) -> np.ndarray:
    """The instance owning each key group: group g goes to ``g * instances // key_groups``."""
    return (groups.astype(np.int64) * instances) // key_groups


def owners(batch: pa.RecordBatch, keys: list[str], key_groups: int, instances: int) -> np.ndarray:
    """The instance (0 .. instances-1) that owns each row's key."""
    if not keys:
        return np.zeros(batch.num_rows, dtype=np.int64)
    groups = key_hashes(batch, keys) % np.uint64(key_groups)
    return instance_of_groups(groups, key_groups, instances)


def groups_of(instance: int, instances: int, key_groups: int) -> range:
    """The key groups ``instance`` owns (a contiguous range)."""
    lo = -(-instance * key_groups // instances)
    hi = -(-(instance + 1) * key_groups // instances)
    return range(lo, hi)
