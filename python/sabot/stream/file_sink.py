"""``to_files``: output batches written as Parquet or JSON-lines files in a directory.

Files are written under a temporary name and renamed to ``part-NNNNN.<ext>`` when complete
(``roll_every`` rows, or a duration of wall clock, or at the end), so a reader of the directory
never sees a partial file. JSON lines are encoded row by row (Python per row at this sink).
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
    def __init__(self, name: str, directory: str, fmt: str, roll_rows: int | None,
                 roll_ms: int | None) -> None:
        super().__init__(name)
        self.dir = directory
        self.fmt = fmt
        self.roll_rows = roll_rows
        self.roll_ms = roll_ms
        self.seq = 0
        self._writer: Any = None
        self._tmp: str | None = None
        self._rows = 0
        self._opened = 0.0
        self.files: list[str] = []

    def open(self, ctx: Any) -> None:
        super().open(ctx)
        os.makedirs(self.dir, exist_ok=True)
        existing = [f for f in os.listdir(self.dir) if f.startswith("part-")]
        self.seq = len(existing)

    def _start(self, schema: pa.Schema) -> None:
        self._tmp = os.path.join(self.dir, f".part-{self.seq:05d}.{self.fmt}.tmp")
        if self.fmt == "parquet":
            self._writer = pq.ParquetWriter(self._tmp, schema)
        else:
            self._writer = open(self._tmp, "w", encoding="utf-8")
        self._rows = 0
        self._opened = time.monotonic()

    def _roll(self) -> None:
        if self._writer is None or self._tmp is None:
            return
        self._writer.close()
        final = os.path.join(self.dir, f"part-{self.seq:05d}.{self.fmt}")
        os.replace(self._tmp, final)
        self.files.append(final)
        self.seq += 1
        self._writer = self._tmp = None

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
