"""Keyed tumbling and sliding window aggregation, on Arrow batches.

Each batch is aggregated once into partial states per (key, pane) (:mod:`.partials`, on the
native grouped-aggregation kernels); when the watermark passes a window's end the partials of
its panes are merged per (key, window). No Python runs per event: the per-row work (pane
numbers, lateness tests) is numpy over whole columns, the grouping is the native core's.

Lateness: an event whose every window ended (end - 1) more than ``allowed_lateness`` before the
current watermark is late: it goes to the ``late`` side output and is counted. An event for a
window that has fired but is within the allowed lateness updates it: the window's new result
for that key is emitted again at once. ``emit="update"`` emits, after every batch, the current
result of each (key, window) the batch changed; the last row per (key, window) is the final one.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pyarrow as pa

from .aggregates import Agg
from .chunk import Chunk, to_batch
from .durations import MAX_TIME, MIN_TIME
from .event_time import to_timestamps
from .operator import Operator
from .partials import GROUP, PANE, TS, Partials
from .rescale import Ownership, merge_watermarks
from .windows import TimeWindows


class WindowAggregate(Operator):
    state_attrs = ("partials", "fired_end")

    def rescale(self, parts: list[dict[str, Any]], own: Ownership) -> dict[str, Any]:
        partials = self.partials.rescaled([p["partials"] for p in parts], own)
        return {"__watermarks": merge_watermarks(parts, 1, own), "partials": partials,
                "fired_end": min(p["fired_end"] for p in parts)}

    def __init__(self, name: str, keys: list[str], windows: TimeWindows, aggs: dict[str, Agg],
                 allowed_lateness: int, emit_mode: str, threads: int | None) -> None:
        super().__init__(name)
        self.keys = keys
        self.w = windows
        self.aggs = aggs
        self.lateness = allowed_lateness
        self.mode = emit_mode
        self.partials = Partials(keys, aggs, threads)
        self.fired_end = MIN_TIME  # windows ending at or before this have fired
        self.value_columns = sorted({a.column for a in aggs.values() if a.column is not None})

    # -- input ----------------------------------------------------------------------------------
    def process(self, chunk: Chunk, port: int) -> None:
        ts = chunk.ts
        wm = self.watermark
        last_end = self.w.last_end(ts)
        if wm > MIN_TIME:
            chunk = self.route_late(chunk, last_end - 1 + self.lateness <= wm)
            ts = chunk.ts
        if chunk.num_rows == 0:
            return
        table = self._table(chunk)
        self.partials.add(table)
        # An event older than the last fired end may belong to a window that fired already.
        refire = self.mode == "update" or (self.fired_end > MIN_TIME and int(ts.min()) < self.fired_end)
        if refire:
            self._emit_touched(table)

    def _table(self, chunk: Chunk) -> pa.Table:
        batch = chunk.batch
        names = set(batch.schema.names)
        missing = [c for c in self.keys + self.value_columns if c not in names]
        if missing:
            raise KeyError(f"{self.name}: column(s) {missing} not in the stream; it has "
                           f"{batch.schema.names}")
        cols = {c: batch.column(c) for c in self.keys + self.value_columns}
        cols[PANE] = pa.array(self.w.pane_of(chunk.ts), pa.int64())
        cols[TS] = pa.array(chunk.ts, pa.int64())
        return pa.table(cols)

    def _emit_touched(self, table: pa.Table) -> None:
        """Emit the current result of every (key, window) the rows of ``table`` changed that
        has fired already (late updates) or, in update mode, any not expired."""
        panes = np.unique(np.asarray(table.column(PANE).to_numpy()))
        _, starts = self.w.windows_of_panes(panes)
        starts = np.unique(starts)
        ends = starts + self.w.size + self.w.offset
        alive = ends - 1 + self.lateness > self.watermark
        if self.mode != "update":
            alive &= ends <= self.fired_end
        starts = starts[alive]
        if len(starts) == 0:
            return
        keys = table.select(self.keys).group_by(self.keys).aggregate([]) if self.keys else None
        self._emit_windows(set(starts.tolist()), keys)

    # -- firing ---------------------------------------------------------------------------------
    def on_watermark(self, watermark: int) -> None:
        limit = MAX_TIME if watermark >= MAX_TIME else watermark + 1
        if self.mode == "final" and not self.partials.is_empty():
            bounds = self.partials.pane_bounds()
            assert bounds is not None
            lo_end, hi_end = self.fired_end, limit
            off, size = self.w.offset, self.w.size

            def expand(t: pa.Table) -> pa.Table | None:
                return self._expand(t, lambda s: ((s + size + off > lo_end) & (s + size + off <= hi_end)))

            self._emit(self.partials.results(expand))
        self.fired_end = max(self.fired_end, limit)
        self._purge(watermark)

    def _purge(self, watermark: int) -> None:
        slide, size, off, lateness = self.w.slide, self.w.size, self.w.offset, self.lateness

        def dead(panes: np.ndarray) -> np.ndarray:
            return (panes // slide) * slide + size + off - 1 + lateness <= watermark

        self.partials.purge(dead)

    def _expand(self, t: pa.Table, keep_start: callable) -> pa.Table | None:
        panes = np.asarray(t.column(PANE).to_numpy())
        idx, starts = self.w.windows_of_panes(panes)
        keep = keep_start(starts)
        idx, starts = idx[keep], starts[keep]
        if len(idx) == 0:
            return None
        out = t.take(pa.array(idx, pa.int64()))
        return out.append_column(GROUP, pa.array(starts, pa.int64()))

    def _emit_windows(self, starts: set[int], keys: pa.Table | None) -> None:
        arr = np.array(sorted(starts), dtype=np.int64)

        def expand(t: pa.Table) -> pa.Table | None:
            return self._expand(t, lambda s: np.isin(s, arr))

        self._emit(self.partials.results(expand, keys))

    def _emit(self, merged: pa.Table | None) -> None:
        if merged is None or merged.num_rows == 0:
            return
        start = np.asarray(merged.column(GROUP).to_numpy(), dtype=np.int64) + self.w.offset
        order = np.argsort(start, kind="stable")
        merged = merged.take(pa.array(order))
        start = start[order]
        end = start + self.w.size
        cols: dict[str, object] = {k: merged.column(k) for k in self.keys}
        cols["window_start"] = to_timestamps(start)
        cols["window_end"] = to_timestamps(end)
        cols.update(self.partials.finalize(merged))
        out = pa.table(cols)
        self.emit(Chunk(to_batch(out), end - 1))
