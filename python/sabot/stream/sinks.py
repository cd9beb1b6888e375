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
from .rescale import Ownership, merge_watermarks


class Sink(Operator):
    """An operator without outputs. ``is_sink`` marks the ends the job runs towards.

    With checkpoints, a sink takes part in them in two phases: :meth:`prepare` on the job's
    thread as the checkpoint is taken (flush, or set this epoch's output aside), :meth:`commit`
    once the checkpoint is durable (make that output visible), and after a restore
    :meth:`recover` (finish a commit the crash interrupted, drop output of later epochs).
    Sinks that do nothing here are at-least-once across a restore.
    """

    is_sink = True

    def prepare(self, epoch: int) -> None:
        """Checkpoint ``epoch`` is being taken (before :meth:`snapshot`)."""

    def commit(self, epoch: int) -> None:
        """Checkpoint ``epoch`` is durable."""

    def recover(self, epoch: int) -> None:
        """The job was restored from checkpoint ``epoch`` (after :meth:`restore`)."""

    def release(self) -> None:
        """The job is over (ended or failed, after its last checkpoint): close connections."""


class CollectSink(Sink):
    """Keeps every batch; the job's result is their concatenation. With ``queue`` (an unbounded
    job's ``collect()``) batches go to the async consumer instead, who applies backpressure."""

    def __init__(self, name: str, queue: asyncio.Queue[Any] | None = None) -> None:
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

    def snapshot(self) -> dict[str, Any]:
        state = super().snapshot()
        state["batches"] = list(self.batches)  # an unbounded collect() hands batches on instead
        return state

    def restore(self, state: dict[str, Any]) -> None:
        super().restore(state)
        self.batches = list(state["batches"])

    def rescale(self, parts: list[dict[str, Any]], own: Ownership) -> dict[str, Any]:
        # (what the old instances collected, all with the new instance 0)
        batches = [b for p in parts for b in p["batches"]] if own.instance == 0 else []
        return {"__watermarks": merge_watermarks(parts, 1, own), "batches": batches}

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

    state_attrs = ("rows",)

    def rescale(self, parts: list[dict[str, Any]], own: Ownership) -> dict[str, Any]:
        return {"__watermarks": merge_watermarks(parts, 1, own),
                "rows": sum(p["rows"] for p in parts) if own.instance == 0 else 0}

    def __init__(self, name: str) -> None:
        super().__init__(name)
        self.rows = 0

    def process(self, chunk: Chunk, port: int) -> None:
        self.rows += chunk.num_rows
