"""``to_files``: output batches written as Parquet or JSON-lines files in a directory.

Files are written under a temporary name (``.part-NNNNN.<ext>.inprogress``) and renamed to
``part-NNNNN.<ext>`` when complete, so a reader of the directory never sees a partial file.
Without checkpoints a file is complete at ``roll_every`` rows, or a duration of wall clock, or
at the end. With checkpoints the sink is exactly-once: a file is also closed at each
checkpoint, and every closed file is renamed only once the checkpoint that covers its rows is
durable; after a restore, the files of the restored checkpoint are renamed if the crash came
first, and the in-progress files of later (uncommitted) epochs are removed, so the directory
ends with each row once. JSON lines are encoded row by row (Python per row at this sink).
"""

from __future__ import annotations

import json
import os
import time
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

from ..errors import ConfigError
from .chunk import Chunk
from .durations import to_ms
from .sinks import Sink

FORMATS = ("parquet", "jsonl")


def check_args(fmt: str, roll_every: Any) -> tuple[str, int | None, int | None]:
    if fmt not in FORMATS:
        raise ConfigError("to_files(format)", fmt, " or ".join(FORMATS))
    if roll_every is None:
        return fmt, None, None
    if isinstance(roll_every, int) and not isinstance(roll_every, bool):
        if roll_every < 1:
            raise ConfigError("to_files(roll_every)", roll_every, "a positive number of rows or a duration")
        return fmt, roll_every, None
    return fmt, None, to_ms(roll_every, "to_files(roll_every)")


class FileSink(Sink):
    state_attrs = ("seq", "closed", "pending", "files")

    def __init__(self, name: str, directory: str, fmt: str, roll_rows: int | None,
                 roll_ms: int | None) -> None:
        super().__init__(name)
        self.dir = directory
        self.fmt = fmt
        self.roll_rows = roll_rows
        self.roll_ms = roll_ms
        self.seq = 0
        self._writer: Any = None
        self._rows = 0
        self._opened = 0.0
        self.files: list[str] = []  # file names committed
        self.closed: list[int] = []  # files closed since the last checkpoint (checkpointed jobs)
        self.pending: dict[int, list[int]] = {}  # epoch -> files waiting for its commit
        self.transactional = False
        #: On a cluster, instance i's files are ``part-iNNN-NNNNN``: the instances share the
        #: directory, never a name.
        self.tag = ""

    def _tmp(self, seq: int) -> str:
        return os.path.join(self.dir, f".part-{self.tag}{seq:05d}.{self.fmt}.inprogress")

    def _final(self, seq: int) -> str:
        return os.path.join(self.dir, f"part-{self.tag}{seq:05d}.{self.fmt}")

    def open(self, ctx: Any) -> None:
        super().open(ctx)
        self.transactional = bool(getattr(ctx, "checkpointing", False))
        instance = getattr(ctx, "instance", None)
        self.tag = "" if instance is None else f"i{instance:03d}-"
        os.makedirs(self.dir, exist_ok=True)
        existing = [f for f in os.listdir(self.dir) if f.startswith(f"part-{self.tag}")
                    and (self.tag or not f.startswith("part-i"))]
        self.seq = len(existing)

    def _start(self, schema: pa.Schema) -> None:
        tmp = self._tmp(self.seq)
        if self.fmt == "parquet":
            self._writer = pq.ParquetWriter(tmp, schema)
        else:
            self._writer = open(tmp, "w", encoding="utf-8")
        self._rows = 0
        self._opened = time.monotonic()

    def _roll(self) -> None:
        if self._writer is None:
            return
        if self.fmt == "jsonl":
            self._writer.flush()
            os.fsync(self._writer.fileno())
        self._writer.close()
        self._writer = None
        if self.transactional:
            self.closed.append(self.seq)
        else:
            self._publish(self.seq)
        self.seq += 1

    def _publish(self, seq: int) -> None:
        tmp, final = self._tmp(seq), self._final(seq)
        if os.path.exists(tmp):
            os.replace(tmp, final)
        if os.path.exists(final):
            self.files.append(final)

    def process(self, chunk: Chunk, port: int) -> None:
        batch = chunk.batch
        if self._writer is not None and self.fmt == "parquet" and batch.schema != self._writer.schema:
            self._roll()  # a new schema starts a new file
        if self._writer is None:
            self._start(batch.schema)
        if self.fmt == "parquet":
            self._writer.write_batch(batch)
        else:
            for row in batch.to_pylist():
                self._writer.write(json.dumps(row, default=str) + "\n")
        self._rows += batch.num_rows
        if self.roll_rows is not None and self._rows >= self.roll_rows:
            self._roll()

    def on_processing_time(self, now_ms: int) -> None:
        if self.roll_ms is not None and self._writer is not None and \
                (time.monotonic() - self._opened) * 1000 >= self.roll_ms:
            self._roll()

    def close(self) -> None:
        self._roll()

    # -- checkpoints (exactly-once) -------------------------------------------------------------
    def prepare(self, epoch: int) -> None:
        self._roll()
        if self.closed:
            self.pending[epoch] = self.closed
            self.closed = []

    def commit(self, epoch: int) -> None:
        for e in sorted(e for e in self.pending if e <= epoch):
            for seq in self.pending.pop(e):
                self._publish(seq)

    def recover(self, epoch: int) -> None:
        self.commit(epoch)
        # Output of epochs after the restored checkpoint was never committed: it is written
        # again from the restored positions.
        mine = f".part-{self.tag}"
        for name in os.listdir(self.dir):
            if name.startswith(mine) and name.endswith(".inprogress"):
                try:
                    seq = int(name[len(mine):].split(".", 1)[0])
                except ValueError:
                    continue
                if seq >= self.seq:
                    os.remove(os.path.join(self.dir, name))
