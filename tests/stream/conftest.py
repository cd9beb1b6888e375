"""Oracles for the streaming tests: DuckDB over the whole data, and table comparison."""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import pyarrow as pa
import pytest

duckdb = pytest.importorskip("duckdb")


def _sql(query: str, **tables: Any) -> pa.Table:
    con = duckdb.connect()
    try:
        for name, t in tables.items():
            con.register(name, _ms(t))
        return con.sql(query).to_arrow_table()
    finally:
        con.close()


def _ms(t: pa.Table) -> pa.Table:
    """Timestamp columns as int64 epoch milliseconds (what the queries compute with)."""
    for i, f in enumerate(t.schema):
        if pa.types.is_timestamp(f.type):
            t = t.set_column(i, f.name, t.column(i).cast(pa.timestamp("ms", f.type.tz)).cast(pa.int64()))
    return t


def _norm(v: Any) -> Any:
    if isinstance(v, float):
        return None if math.isnan(v) else round(v, 6)
    if hasattr(v, "timestamp") and hasattr(v, "tzinfo"):
        return v.replace(tzinfo=None)
    return v


def _rows(t: pa.Table, columns: list[str]) -> list[tuple[Any, ...]]:
    t = _ms(t)
    cols = [t.column(c).to_pylist() for c in columns]
    rows = [tuple(_norm(x) for x in r) for r in zip(*cols)]
    return sorted(rows, key=lambda r: tuple((x is None, str(type(x)), x if x is not None else 0) for x in r))


def _same(actual: pa.Table, expected: pa.Table, columns: list[str] | None = None) -> None:
    columns = columns or expected.column_names
    a, e = _rows(actual, columns), _rows(expected, columns)
    assert len(a) == len(e), f"{len(a)} rows, expected {len(e)}"
    for i, (x, y) in enumerate(zip(a, e)):
        assert x == y, f"row {i}: {x} != expected {y}"


@pytest.fixture
def sql() -> Callable[..., pa.Table]:
    """``sql(query, name=table, ...)``: DuckDB's answer as a pyarrow Table."""
    return _sql


@pytest.fixture
def same_rows() -> Callable[..., None]:
    """Assert two tables hold the same rows (any order) over ``columns``."""
    return _same
