"""Dense integer ids for the key of each row (vectorized), and keys as Python tuples."""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc


def key_ids(table: pa.Table, keys: list[str]) -> np.ndarray:
    """One int64 per row, equal for rows with equal keys (nulls equal nulls)."""
    if not keys:
        return np.zeros(table.num_rows, dtype=np.int64)
    if len(keys) == 1:
        col = table.column(keys[0])
    else:
        parts = [pc.fill_null(pc.cast(table.column(k), pa.string()), "\x00") for k in keys]
        col = pc.binary_join_element_wise(*parts, "\x1f")
    enc = pc.dictionary_encode(col.combine_chunks() if isinstance(col, pa.ChunkedArray) else col,
                               null_encoding="encode")
    return np.asarray(enc.indices.to_numpy(zero_copy_only=False), dtype=np.int64)


def change_points(table: pa.Table, keys: list[str]) -> np.ndarray:
    """For rows sorted by key: True where a row's key differs from the previous row's."""
    n = table.num_rows
    out = np.zeros(n, dtype=bool)
    if n:
        out[0] = True
    if n < 2:
        return out
    for k in keys:
        col = table.column(k).combine_chunks()
        a, b = col.slice(1), col.slice(0, n - 1)
        eq = pc.equal(a, b)
        both_null = pc.and_(pc.is_null(a), pc.is_null(b))
        same = pc.or_(pc.fill_null(eq, False), both_null)
        out[1:] |= ~np.asarray(same.to_numpy(zero_copy_only=False))
    return out


def key_tuples(table: pa.Table, keys: list[str]) -> list[tuple]:
    cols = [table.column(k).to_pylist() for k in keys]
    return list(zip(*cols)) if cols else [()] * table.num_rows
