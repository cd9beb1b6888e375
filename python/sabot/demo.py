"""The built-in demo (``sabot-node demo``): the main job on generated data, on this machine.

Three steps, each checked against a closed-form answer so a wrong result cannot pass as fast:
an Arrow compute expression over a table, a group-by aggregation, and the README's per-item
``square`` job through :func:`sabot.process`. No network is used.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from . import __version__, columnar
from ._native import native_available
from .config import load_config
from .launcher import process


def _native_line() -> str:
    return "native core loaded" if native_available() else \
        "native core not built (pure-Python fallback)"


def _aggregate(table: Any) -> tuple[Any, str]:
    """Sum and count of ``value`` by ``key`` with sabot.columnar (native when built)."""
    out = columnar.aggregate(
        table,
        {"value_sum": ("sum", pc.field("value")), "value_count": ("count", pc.field("value"))},
        by="key", morsel_size_kb=load_config().morsel_size_kb)
    return out, "sabot.columnar.aggregate"


def run_demo(rows: int = 2_000_000, items: int = 1_000_000, seed: int = 7) -> Iterator[str]:
    """Run the demo; yields the lines to print."""
    yield f"sabot {__version__} demo ({_native_line()})"
    rng = np.random.default_rng(seed)
    table = pa.table({"key": rng.integers(0, 100, rows), "value": rng.random(rows)})

    # The engine starts (worker pool, native scheduler) on its first call: timed apart, so the
    # rates below are the steady state a long-running node sees.
    t0 = time.perf_counter()
    process(table.slice(0, 1), pc.field("value") * 2.0 + 1.0)
    process([1, 2], "square")
    yield f"  engine start         {time.perf_counter() - t0:.2f} s"

    t0 = time.perf_counter()
    out = process(table, pc.field("value") * 2.0 + 1.0)
    dt = time.perf_counter() - t0
    expected = 2.0 * pc.sum(table["value"]).as_py() + rows
    got = pc.sum(out).as_py()
    if len(out) != rows or abs(got - expected) > 1e-6 * max(1.0, abs(expected)):
        raise RuntimeError(f"demo check failed: expression sum {got} != {expected}")
    yield f"  columnar expression  value*2+1   {rows:>12,} rows   {rows / dt:>14,.0f} rows/s"

    t0 = time.perf_counter()
    agg, how = _aggregate(table)
    dt = time.perf_counter() - t0
    counts = agg.column(agg.column_names.index("value_count")).to_pylist() \
        if "value_count" in agg.column_names else None
    if counts is not None and sum(counts) != rows:
        raise RuntimeError(f"demo check failed: group counts add up to {sum(counts)}, not {rows}")
    yield (f"  group-by aggregation sum,count   {rows:>12,} rows   {rows / dt:>14,.0f} rows/s"
           f"   ({agg.num_rows} groups, {how})")

    data = list(range(items))
    t0 = time.perf_counter()
    squares = process(data, "square")
    dt = time.perf_counter() - t0
    n = items
    if len(squares) != n or sum(squares) != (n - 1) * n * (2 * n - 1) // 6:
        raise RuntimeError("demo check failed: the squares are wrong")
    yield f"  per-item job         square      {items:>12,} items  {items / dt:>14,.0f} items/s"
