"""``env.from_files``: JSON lines, CSV or Parquet files matching a glob, in name order.

Bounded by default (the files there at the start). With ``follow=True`` it polls for new files
and, for JSON lines, for lines appended to the files it has: only complete lines (ending in a
newline) are read, so a writer may append while the job runs. JSON lines are read 16 MiB at a
time, so a large file does not sit in memory whole; in a bounded job the next block is read and
decoded on a helper thread while the job works on this one (one block ahead: the position in a
checkpoint counts only the blocks handed out). A CSV or Parquet file is read
once its size stayed the same for one poll (and a Parquet file once its footer is written).
The files form one source partition (read in order).

When every consumer of the source keeps only some columns (a ``select`` of plain columns right
after it, see :mod:`.projection`), the job calls :meth:`FileSource.project`: JSON lines then
decode only those columns (and the event-time column). Their types are the given ``schema``'s,
or else the ones the first records had (numbers, booleans and strings only; a block
whose lines do not fit them is decoded whole, as without the projection).
"""

from __future__ import annotations

import asyncio
import contextlib
import glob as globlib
import os
from collections.abc import AsyncIterator
from concurrent.futures import Future, ThreadPoolExecutor

import pyarrow as pa
import pyarrow.parquet as pq

from ..errors import ConfigError
from .record_parsing import FORMATS, infer_jsonl_types, parse_csv, parse_jsonl, parse_jsonl_columns
from .source import Item, Source

#: A JSON-lines file is read this many bytes at a time (memory stays bounded by the block).
BLOCK_BYTES = 16 << 20
#: Without a schema, a projection takes its columns' types from the records in this many bytes.
SAMPLE_BYTES = 64 << 10
#: Read and decode the next block of a finished JSON-lines file while the job uses this one.
READ_AHEAD = True


class FileSource(Source):
    def __init__(self, pattern: str, fmt: str, follow: bool, schema: pa.Schema | None, poll_ms: int,
                 batch_size: int) -> None:
        if fmt not in FORMATS:
            raise ConfigError("from_files(format)", fmt, " or ".join(FORMATS))
        if not isinstance(pattern, str) or not pattern:
            raise ConfigError("from_files(pattern)", pattern, "a glob pattern such as 'in/*.jsonl'")
        self.pattern = pattern
        self.fmt = fmt
        self.follow = follow
        self.schema = schema
        self.poll_s = poll_ms / 1000
        self.batch_size = batch_size
        self.bounded = not follow
        self.partitions = 1
        self.name = f"from_files({fmt})"
        self._offsets: dict[str, int] = {}
        self._sizes: dict[str, int] = {}
        self._done: set[str] = set()
        # within a file read but not yet handed out whole: (path, its offset before, items given)
        self._cursor: tuple[str, int | None, int] | None = None
        self._skip: dict[str, int] = {}
        self.columns: frozenset[str] | None = None  # the columns the job reads (None: all)
        self._types: pa.Schema | None = None  # their types, once known
        # the next block of a finished file, read and decoded on a helper thread while the job
        # works on this one: ((path, start, size), its future (length, items))
        self._ahead: tuple[tuple[str, int, int], Future[tuple[int, list[Item]]]] | None = None
        self._pool: ThreadPoolExecutor | None = None

    def project(self, columns: frozenset[str] | None) -> None:
        """Decode only ``columns`` of JSON lines (None: every field); other formats ignore it."""
        self.columns, self._types = (columns if self.fmt == "jsonl" else None), None
        if self.columns is not None and self.schema is not None:
            kept = [f for f in self.schema if f.name in self.columns]
            self._types = pa.schema(kept) if kept else None
            if not kept:
                self.columns = None

    def position(self) -> object:
        return {"offsets": dict(self._offsets), "sizes": dict(self._sizes),
                "done": sorted(self._done), "cursor": self._cursor}

    def seek(self, position: object) -> None:
        pos = dict(position)  # type: ignore[call-overload]
        self._offsets, self._sizes = dict(pos["offsets"]), dict(pos["sizes"])
        self._done = set(pos["done"])
        if pos["cursor"] is not None:  # part way through one file's items: read it again
            path, before, given = pos["cursor"]
            self._done.discard(path)
            if before is None:
                self._offsets.pop(path, None)
            else:
                self._offsets[path] = before
            self._skip[path] = given

    async def read(self) -> AsyncIterator[Item]:
        try:
            async for item in self._items():
                yield item
        finally:
            self._stop_ahead()

    async def _items(self) -> AsyncIterator[Item]:
        while True:
            for path in sorted(globlib.glob(self.pattern)):
                while path not in self._done:  # a JSON-lines file a block at a time
                    before = self._offsets.get(path)
                    await self._wait_ahead()
                    items = self._read(path)
                    if not items:
                        break
                    skip = self._skip.pop(path, 0)
                    for k, item in enumerate(items):
                        if k < skip:
                            continue
                        self._cursor = (path, before, k + 1) if k + 1 < len(items) else None
                        yield item
                        await asyncio.sleep(0)
                    if self._offsets.get(path) == before:
                        break
            if not self.follow:
                return
            await asyncio.sleep(self.poll_s)

    def _read(self, path: str) -> list[Item]:
        try:
            size = os.path.getsize(path)
        except OSError:
            return []
        if self.fmt == "jsonl":
            return self._jsonl(path, size)
        if self.follow and self._sizes.get(path) != size:
            self._sizes[path] = size  # still growing (or new): read it at the next poll
            return []
        try:
            if self.fmt == "parquet":
                table = pq.read_table(path, schema=self.schema)
            else:
                with open(path, "rb") as f:
                    table = parse_csv(f.read(), self.schema)
        except (pa.ArrowInvalid, OSError) as exc:
            if self.follow and "footer" in str(exc).lower() or "magic" in str(exc).lower():
                return []  # a Parquet file still being written
            raise ConfigError(f"from_files({path})", self.fmt, f"a readable {self.fmt} file ({exc})") from exc
        self._done.add(path)
        return [(0, b) for b in table.to_batches(max_chunksize=self.batch_size)]

    def _jsonl(self, path: str, size: int) -> list[Item]:
        start = self._offsets.get(path, 0)
        if size <= start:
            if not self.follow:
                self._done.add(path)
            return []
        ahead, self._ahead = self._ahead, None
        if ahead is not None and ahead[0] == (path, start, size):
            end, items = ahead[1].result()  # read and decoded while the last block was used
        else:
            if ahead is not None:
                ahead[1].cancel()
            end, items = self._block(path, start, size)
        if end == 0:
            return []
        self._offsets[path] = start + end
        if not self.follow and start + end >= size:
            self._done.add(path)
        if not self.follow and start + end < size and READ_AHEAD:
            if self._pool is None:
                self._pool = ThreadPoolExecutor(1, thread_name_prefix="sabot-file-read-ahead")
            nxt = (path, start + end, size)
            self._ahead = (nxt, self._pool.submit(self._block, *nxt))
        return items

    def _block(self, path: str, start: int, size: int) -> tuple[int, list[Item]]:
        """The complete lines from ``start`` (their length) as items; reads no state but the
        columns and their types, so it may run on the read-ahead thread."""
        block = BLOCK_BYTES
        with open(path, "rb") as f:
            while True:  # a block ending at a newline (a longer line makes the block grow)
                f.seek(start)
                data = f.read(min(block, size - start))
                end = data.rfind(b"\n") + 1
                at_eof = start + len(data) >= size
                if end or at_eof:
                    break
                block *= 2
        if not self.follow and at_eof and end < len(data):
            end = len(data)  # the last line of a finished file may lack its newline
        if end == 0:
            return 0, []
        table, bad = self._parse(data[:end])
        items: list[Item] = []
        if bad:
            items.append((0, bad))
        if table is not None:
            items.extend((0, b) for b in table.to_batches(max_chunksize=self.batch_size))
        return end, items

    async def _wait_ahead(self) -> None:
        """Let the job work on what it has until the block read ahead is decoded."""
        if self._ahead is None or self._ahead[1].done():
            return
        with contextlib.suppress(Exception):  # an error is raised where the block is used
            await asyncio.wrap_future(self._ahead[1])

    def _stop_ahead(self) -> None:
        if self._ahead is not None:
            self._ahead[1].cancel()
            self._ahead = None
        if self._pool is not None:
            self._pool.shutdown(wait=False, cancel_futures=True)
            self._pool = None

    def _parse(self, block: bytes) -> tuple[pa.Table | None, list]:
        cols = self.columns
        if cols is None:
            return parse_jsonl(block, self.schema)
        if self._types is None and self.schema is None:  # the types of the first records
            sample = infer_jsonl_types(block[:block.find(b"\n", SAMPLE_BYTES) + 1 or len(block)])
            if sample is not None:
                self._types = _pinned(sample, cols)
        if self._types is not None:
            table = parse_jsonl_columns(block, self._types)
            if table is not None:
                return (table if table.num_rows else None), []
        table, bad = parse_jsonl(block, self.schema)
        if table is None:
            return None, bad
        if self._types is None and self.schema is None:
            self._types = _pinned(table.schema, cols)
        return table.select([n for n in table.column_names if n in cols]), bad


def _pinned(schema: pa.Schema, columns: frozenset[str]) -> pa.Schema | None:
    """The types of ``columns`` as decoded from one block, if every one is there and is a type
    a JSON value decodes to the same way in every block (int64, double, bool, string)."""
    kept = [f for f in schema if f.name in columns]
    plain = (pa.int64(), pa.float64(), pa.bool_(), pa.string())
    if len(kept) != len(columns) or any(f.type not in plain for f in kept):
        return None
    return pa.schema(kept)
