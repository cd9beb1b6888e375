"""Stateless operators: filter and select (native expressions), map and flat_map (batch UDFs).

``filter`` and ``select`` run :func:`sabot.columnar.filter` / :func:`sabot.columnar.project`
over the whole batch (the native core, GIL released); the event times travel as one more column
so they stay with their rows. ``map`` / ``flat_map`` call the user's function once per batch.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from .. import columnar
from ..errors import ProcessingError
from .chunk import TIME_COLUMN, Chunk, to_batch
from .event_time import extract_ms
from .operator import Operator


class Filter(Operator):
    def __init__(self, name: str, predicate: pc.Expression, threads: int | None) -> None:
        super().__init__(name)
        self.predicate = predicate
        self.threads = threads

    def process(self, chunk: Chunk, port: int) -> None:
        out = columnar.filter(chunk.with_time(), self.predicate, threads=self.threads)
        self.emit(Chunk.from_table_with_time(out))


class Select(Operator):
    def __init__(self, name: str, columns: dict[str, Any], threads: int | None) -> None:
        super().__init__(name)
        self.columns = dict(columns)
        self.columns[TIME_COLUMN] = pc.field(TIME_COLUMN)
        self.threads = threads

    def process(self, chunk: Chunk, port: int) -> None:
        out = columnar.project(chunk.with_time(), self.columns, threads=self.threads)
        self.emit(Chunk.from_table_with_time(out))


def as_batches(value: Any, what: str) -> list[pa.RecordBatch]:
    """A UDF's result as RecordBatches: a RecordBatch, Table, list of dicts, or an iterable of
    RecordBatches / Tables; None means nothing."""
    if value is None:
        return []
    if isinstance(value, pa.RecordBatch):
        return [value]
    if isinstance(value, pa.Table):
        return value.to_batches()
    if isinstance(value, list) and (not value or isinstance(value[0], dict)):
        return [pa.RecordBatch.from_pylist(value)] if value else []
    if isinstance(value, Iterable) and not isinstance(value, (str, bytes, dict)):
        out: list[pa.RecordBatch] = []
        for v in value:
            if isinstance(v, (pa.RecordBatch, pa.Table)):
                out.extend(as_batches(v, what))
            else:
                raise TypeError(f"{what} returned an iterable holding {type(v).__name__}; "
                                "accepted: RecordBatches or Tables")
        return out
    raise TypeError(f"{what} returned {type(value).__name__}; accepted: a pyarrow RecordBatch or "
                    "Table, a list of dicts, an iterable of RecordBatches, or None")


class BatchUDF(Operator):
    """``map`` (one batch out per batch in) and ``flat_map`` (any number of batches)."""

    def __init__(self, name: str, fn: Callable[[pa.RecordBatch], Any], flat: bool,
                 time_column: str | None, time_unit: str) -> None:
        super().__init__(name)
        self.fn = fn
        self.flat = flat
        self.time_column = time_column
        self.time_unit = time_unit

    def process(self, chunk: Chunk, port: int) -> None:
        try:
            result = self.fn(chunk.batch)
        except Exception as exc:
            raise ProcessingError(
                f"operator {self.name!r} failed on {self.describe_input(chunk)}: "
                f"{type(exc).__name__}: {exc}", original=exc) from exc
        kind = "flat_map" if self.flat else "map"
        if not self.flat and not isinstance(result, (pa.RecordBatch, pa.Table)):
            raise ProcessingError(
                f"operator {self.name!r}: a map function must return a pyarrow RecordBatch or "
                f"Table (use flat_map for other shapes), got {type(result).__name__}")
        try:
            batches = as_batches(result, f"operator {self.name!r} ({kind})")
        except TypeError as exc:
            raise ProcessingError(str(exc)) from exc
        for b in batches:
            self.emit(Chunk(b, self._times(b, chunk)))

    def _times(self, out: pa.RecordBatch, chunk: Chunk) -> np.ndarray:
        if self.time_column is not None and self.time_column in out.schema.names:
            ts, bad = extract_ms(out.column(self.time_column), self.time_unit)
            if bad is None:
                return ts
        if out.num_rows == chunk.num_rows:
            return chunk.ts  # same rows (a map): keep their event times
        if chunk.num_rows:
            # Rows made from the batch: they happen at the batch's latest time.
            return np.full(out.num_rows, int(chunk.ts.max()), dtype=np.int64)
        return np.zeros(out.num_rows, dtype=np.int64)


class Union(Operator):
    """Several streams as one; the watermark is the minimum of the inputs'."""

    def __init__(self, name: str, inputs: int) -> None:
        super().__init__(name, inputs)

    def process(self, chunk: Chunk, port: int) -> None:
        self.emit(chunk)




def concat(chunks: list[Chunk]) -> Chunk:
    tables = [c.with_time() for c in chunks]
    return Chunk.from_table_with_time(pa.concat_tables(tables, promote_options="default"))


__all__ = ["BatchUDF", "Filter", "Select", "Union", "as_batches", "concat", "to_batch"]
