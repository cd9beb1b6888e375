"""Sinks: collect, to_callable, print, discard (files: :mod:`.file_sink`)."""

from __future__ import annotations

import asyncio
import sys
from collections.abc import Callable
from typing import Any, TextIO

import pyarrow as pa

from ..errors import ProcessingError
from .chunk import Chunk
from .operator import Operator


class Sink(Operator):
    """An operator without outputs. ``is_sink`` marks the ends the job runs towards."""

    is_sink = True


class CollectSink(Sink):
    """Keeps every batch; the job's result is their concatenation. With ``queue`` (an unbounded
    job's ``collect()``) batches go to the async consumer instead, who applies backpressure."""

    def __init__(self, name: str, queue: "asyncio.Queue[Any] | None" = None) -> None:
        super().__init__(name)
        self.batches: list[pa.RecordBatch] = []
        self.queue = queue

    def process(self, chunk: Chunk, port: int) -> None:
        if self.queue is not None:
            self.queue.put_nowait(chunk.batch)
        else:
            self.batches.append(chunk.batch)

    def table(self) -> pa.Table:
        if not self.batches:
            return pa.table({})
        return pa.Table.from_batches(self.batches) if all(
            b.schema == self.batches[0].schema for b in self.batches) else pa.concat_tables(
            [pa.Table.from_batches([b]) for b in self.batches], promote_options="permissive")

    def backlog(self) -> int:
        return 0 if self.queue is None else self.queue.qsize()


class CallableSink(Sink):
    def __init__(self, name: str, fn: Callable[[pa.RecordBatch], Any]) -> None:
        super().__init__(name)
        self.fn = fn

    def process(self, chunk: Chunk, port: int) -> None:
        try:
            self.fn(chunk.batch)
        except Exception as exc:
            raise ProcessingError(f"sink {self.name!r} failed on {self.describe_input(chunk)}: "
                                  f"{type(exc).__name__}: {exc}", original=exc) from exc


class PrintSink(Sink):
    def __init__(self, name: str, stream: TextIO | None = None) -> None:
        super().__init__(name)
        self.stream = stream

    def process(self, chunk: Chunk, port: int) -> None:
        out = self.stream or sys.stdout
        for row in chunk.batch.to_pylist():
            print(row, file=out)


class DiscardSink(Sink):
    """Counts rows, keeps nothing (benchmarks)."""

    def __init__(self, name: str) -> None:
        super().__init__(name)
        self.rows = 0

    def process(self, chunk: Chunk, port: int) -> None:
        self.rows += chunk.num_rows
