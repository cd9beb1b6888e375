"""``window(...).reduce(fn)``: a user function folds each key's rows of each time window.

``fn(batch) -> row`` takes a RecordBatch of rows of one key and one window and returns one row
(a dict, or a one-row RecordBatch) with the same columns. It must be associative: the operator
folds incrementally, calling ``fn`` once per (key, window) and input batch on the rows that
arrived plus the row reduced so far, so memory holds one row per live (key, window), not the
window's rows. Python runs once per (key, window) and batch, never per row. A window fires when
the watermark passes its end; late events and ``allowed_lateness`` behave as for ``agg``, and
``emit("update")`` emits the current row of each window a batch changed.
"""

from __future__ import annotations

from collections.abc import Callable, Hashable
from typing import Any

import numpy as np
import pyarrow as pa

from .chunk import Chunk, to_batch
from .durations import MAX_TIME, MIN_TIME
from .event_time import to_timestamps
from .key_ids import key_ids, key_tuples
from .operator import Operator
from .reduce_call import call_reduce, with_row
from .windows import TimeWindows

WS = "__sabot_window"


class WindowReduce(Operator):
    state_attrs = ("acc", "fired_end", "schema")

    def __init__(self, name: str, keys: list[str], windows: TimeWindows,
                 fn: Callable[[pa.RecordBatch], Any], allowed_lateness: int, emit_mode: str) -> None:
        super().__init__(name)
        self.keys = keys
        self.w = windows
        self.fn = fn
        self.lateness = allowed_lateness
        self.mode = emit_mode
        self.acc: dict[tuple[Hashable, int], dict[str, Any]] = {}  # (key, start) -> row
        self.fired_end = MIN_TIME
        self.schema: pa.Schema | None = None

    def process(self, chunk: Chunk, port: int) -> None:
        wm = self.watermark
        if wm > MIN_TIME:
            chunk = self.route_late(chunk, self.w.last_end(chunk.ts) - 1 + self.lateness <= wm)
        if chunk.num_rows == 0:
            return
        batch = chunk.batch
        missing = [k for k in self.keys if k not in batch.schema.names]
        if missing:
            raise KeyError(f"{self.name}: key column(s) {missing} not in the stream; it has "
                           f"{batch.schema.names}")
        if self.schema is None:
            self.schema = batch.schema
        idx, starts = self.w.windows_of_panes(self.w.pane_of(chunk.ts))
        alive = starts + self.w.size + self.w.offset - 1 + self.lateness > wm
        idx, starts = idx[alive], starts[alive]
        rows = pa.Table.from_batches([batch]).take(pa.array(idx, pa.int64()))
        ids = key_ids(rows, self.keys) if self.keys else np.zeros(rows.num_rows, np.int64)
        # one group per (key, window): sort by both, cut where either changes
        order = np.lexsort((starts, ids))
        sid, sst = ids[order], starts[order]
        cut = np.r_[0, np.flatnonzero((np.diff(sid) != 0) | (np.diff(sst) != 0)) + 1, len(order)]
        rows = rows.take(pa.array(order, pa.int64()))
        heads = rows.take(pa.array(cut[:-1], pa.int64()))
        keys = key_tuples(heads, self.keys) if self.keys else [()] * (len(cut) - 1)
        touched = []
        for g in range(len(cut) - 1):
            key, start = keys[g], int(sst[cut[g]])
            part = rows.slice(int(cut[g]), int(cut[g + 1] - cut[g]))
            part = with_row(self.acc.get((key, start)), part)
            self.acc[(key, start)] = self._call(key, start, part)
            touched.append((key, start))
        if self.mode == "update":
            self._emit(touched)
        elif self.fired_end > MIN_TIME:
            # late updates within the allowed lateness: windows that fired already, again
            self._emit([t for t in touched
                        if t[1] + self.w.size + self.w.offset <= self.fired_end])

    def _call(self, key: Hashable, start: int, part: pa.Table) -> dict[str, Any]:
        return call_reduce(self.name, self.fn, self.keys, key, f"window starting "
                           f"{start + self.w.offset} ms", part)

    def on_watermark(self, watermark: int) -> None:
        limit = MAX_TIME if watermark >= MAX_TIME else watermark + 1
        off, size = self.w.offset, self.w.size
        if self.mode == "final":
            self._emit([t for t in self.acc if self.fired_end < t[1] + size + off <= limit])
        self.fired_end = max(self.fired_end, limit)
        dead = [t for t in self.acc if t[1] + size + off - 1 + self.lateness <= watermark]
        for t in dead:
            del self.acc[t]

    def _emit(self, which: list[tuple[Hashable, int]]) -> None:
        if not which or self.schema is None:
            return
        which = sorted(which, key=lambda t: t[1])
        table = pa.Table.from_pylist([self.acc[t] for t in which], schema=self.schema)
        start = np.array([t[1] for t in which], dtype=np.int64) + self.w.offset
        end = start + self.w.size
        table = table.append_column("window_start", to_timestamps(start))
        table = table.append_column("window_end", to_timestamps(end))
        self.emit(Chunk(to_batch(table), end - 1))
