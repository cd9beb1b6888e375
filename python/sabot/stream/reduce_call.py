"""Calling a window's reduce function: on a batch of one key's rows, one row back (a dict or a
one-row batch with the input's columns), failures named with the operator, key and window."""

from __future__ import annotations

from collections.abc import Callable, Hashable
from typing import Any

import pyarrow as pa

from ..errors import ProcessingError
from .chunk import to_batch


def call_reduce(operator: str, fn: Callable[[pa.RecordBatch], Any], keys: list[str],
                key: Hashable, where: str, part: pa.Table) -> dict[str, Any]:
    """``fn(part)`` as a row of ``part``'s columns, with the key columns set to ``key``."""
    try:
        out = fn(to_batch(part))
    except Exception as exc:
        raise ProcessingError(
            f"operator {operator!r}: reduce function failed for key {key!r}, {where}, on "
            f"{part.num_rows} rows (first: {part.slice(0, 1).to_pylist()[0]!r}): "
            f"{type(exc).__name__}: {exc}", original=exc) from exc
    if isinstance(out, (pa.RecordBatch, pa.Table)):
        if out.num_rows != 1:
            raise ProcessingError(f"operator {operator!r}: the reduce function returned "
                                  f"{out.num_rows} rows; it must return one row")
        out = out.to_pylist()[0]
    if not isinstance(out, dict):
        raise ProcessingError(f"operator {operator!r}: the reduce function returned a "
                              f"{type(out).__name__}; it must return one row (a dict or a "
                              "one-row RecordBatch with the input's columns)")
    row = {c: out.get(c) for c in part.column_names}
    for k, v in zip(keys, key if isinstance(key, tuple) else (key,)):
        row[k] = v  # a reduce keeps the key it was given
    return row


def with_row(row: dict[str, Any] | None, part: pa.Table) -> pa.Table:
    """``part`` with the row reduced so far in front of it (when there is one)."""
    if row is None:
        return part
    return pa.concat_tables([pa.Table.from_pylist([row], schema=part.schema), part])


def group_by_key(rows: pa.Table, keys: list[str], order_by: Any = None
                 ) -> list[tuple[tuple, pa.Table, Any]]:
    """The rows of each key (in arrival order, or sorted by ``order_by``, an array of one value
    per row): (key, its rows, its ``order_by`` values)."""
    import numpy as np

    from .key_ids import key_ids, key_tuples

    ids = key_ids(rows, keys) if keys else np.zeros(rows.num_rows, np.int64)
    order = np.lexsort((order_by, ids)) if order_by is not None else np.argsort(ids, kind="stable")
    sid = ids[order]
    cut = np.r_[0, np.flatnonzero(np.diff(sid)) + 1, len(order)]
    rows = rows.take(pa.array(order, pa.int64()))
    vals = order_by[order] if order_by is not None else None
    heads = rows.take(pa.array(cut[:-1], pa.int64()))
    names = key_tuples(heads, keys) if keys else [()] * (len(cut) - 1)
    out = []
    for g in range(len(cut) - 1):
        lo, hi = int(cut[g]), int(cut[g + 1])
        out.append((names[g], rows.slice(lo, hi - lo), None if vals is None else vals[lo:hi]))
    return out
