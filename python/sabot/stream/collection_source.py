"""``env.from_collection``: a list of dicts, a Table, RecordBatches, or a (sync or async)
iterable of any of them; bounded (the job ends when the data does)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Iterable
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc

from ..errors import ConfigError
from .bad_records import BadRecord, rows_to_batch
from .source import SEVERAL, Item, Source

DEFAULT_BATCH_SIZE = 65_536


class CollectionSource(Source):
    bounded = True

    def __init__(self, data: Any, *, schema: pa.Schema | None, batch_size: int, partitions: int,
                 partition_by: str | None, name: str) -> None:
        if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
            raise ConfigError("batch_size", batch_size, "a positive integer number of rows")
        if isinstance(partitions, bool) or not isinstance(partitions, int) or partitions < 1:
            raise ConfigError("partitions", partitions, "a positive integer")
        if isinstance(data, (str, bytes, dict)) or not (
                isinstance(data, (pa.Table, pa.RecordBatch, pa.RecordBatchReader))
                or hasattr(data, "__aiter__") or isinstance(data, Iterable)):
            raise ConfigError("from_collection(data)", type(data).__name__,
                              "a list of dicts, a pyarrow Table or RecordBatch(es), or an "
                              "iterable / async iterable of them")
        self.data = data
        self.schema = schema
        self.batch_size = batch_size
        self.partitions = 0 if partition_by else partitions
        self.partition_by = partition_by
        self.name = name
        self._seq = 0
        self._yielded = 0  # items handed out (the position)
        self._skip = 0

    def position(self) -> object:
        return self._yielded

    def seek(self, position: object) -> None:
        # The data is read again from its start and the first ``position`` items are passed
        # over (a list, Table or re-created iterable gives the same items in the same order).
        self._skip = int(position)  # type: ignore[arg-type]

    async def _items(self) -> AsyncIterator[Any]:
        data = self.data
        if isinstance(data, (pa.Table, pa.RecordBatch)):
            yield data
            return
        if isinstance(data, pa.RecordBatchReader):
            for b in data:
                yield b
            return
        if hasattr(data, "__aiter__"):
            async for x in data:
                yield x
            return
        for i, x in enumerate(data):
            yield x
            if i % 4096 == 4095:
                await asyncio.sleep(0)

    async def read(self) -> AsyncIterator[Item]:
        n = 0
        async for item in self._all():
            n += 1
            if n <= self._skip:
                continue
            self._yielded = n
            yield item

    async def _all(self) -> AsyncIterator[Item]:
        rows: list[Any] = []
        async for x in self._items():
            if isinstance(x, (pa.Table, pa.RecordBatch)):
                if rows:
                    for item in self._rows(rows):
                        yield item
                    rows = []
                for item in self._arrow(x):
                    yield item
            else:
                rows.append(x)
                if len(rows) >= self.batch_size:
                    for item in self._rows(rows):
                        yield item
                    rows = []
        if rows:
            for item in self._rows(rows):
                yield item

    def _rows(self, rows: list[Any]) -> list[Item]:
        bad = [BadRecord(r, f"not a record (a dict): {type(r).__name__}") for r in rows
               if not isinstance(r, dict)]
        good = [r for r in rows if isinstance(r, dict)] if bad else rows
        out: list[Item] = []
        if bad:
            out.append((self._next_partition(), bad))
        if good:
            batch, more = rows_to_batch(good, self.schema)
            if more:
                out.append((self._next_partition(), more))
            if batch is not None:
                out.extend(self._arrow(batch))
        return out

    def _arrow(self, x: pa.Table | pa.RecordBatch) -> list[Item]:
        if self.schema is not None and x.schema != self.schema:
            try:
                x = x.select(self.schema.names).cast(self.schema)
            except (pa.ArrowInvalid, pa.ArrowTypeError, KeyError, ValueError) as exc:
                return [(self._next_partition(), [BadRecord(x.slice(0, 1).to_pylist(),
                                                            f"does not fit the schema: {exc}")])]
        batches = x.to_batches(max_chunksize=self.batch_size) if isinstance(x, pa.Table) else [
            x.slice(i, self.batch_size) for i in range(0, x.num_rows, self.batch_size)]
        out: list[Item] = []
        for b in batches:
            if self.partition_by is None:
                out.append((self._next_partition(), b))
                continue
            col = b.column(self.partition_by)
            parts = []
            for value in pc.unique(col).to_pylist():
                mask = pc.is_null(col) if value is None else pc.fill_null(pc.equal(col, value), False)
                parts.append((value, b.filter(mask)))
            out.append((SEVERAL, parts))
        return out

    def _next_partition(self) -> int:
        p = self._seq % max(1, self.partitions)
        self._seq += 1
        return p
