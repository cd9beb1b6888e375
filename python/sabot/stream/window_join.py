"""Window join: rows of two streams with equal keys in the same (tumbling or sliding) window,
joined when the watermark passes the window's end. Rows for a window that has already been
joined are late and counted."""

from __future__ import annotations

from typing import Any

import numpy as np
import pyarrow as pa

from .chunk import TIME_COLUMN, Chunk, to_batch
from .event_time import to_timestamps
from .interval_join import pair_up
from .operator import Operator
from .rescale import Ownership, merge_watermarks
from .windows import TimeWindows

WS = "__sabot_window"


class WindowJoin(Operator):
    state_attrs = ("buffers",)

    def __init__(self, name: str, left_on: list[str], right_on: list[str], windows: TimeWindows) -> None:
        super().__init__(name, inputs=2)
        self.on = (left_on, right_on)
        self.w = windows
        self.buffers: list[pa.Table | None] = [None, None]
        #: Per port, the earliest end of a window its buffer holds rows of (None: unknown):
        #: a watermark before it fires nothing there, and the buffer is not scanned.
        self._first_end: list[int | None] = [None, None]

    def restore(self, state: dict[str, Any]) -> None:
        super().restore(state)
        self._first_end = [None, None]

    def _earliest(self, port: int) -> int | None:
        """The earliest window end in the buffer of ``port`` (computed once after a change
        that may have removed it)."""
        buf = self.buffers[port]
        if buf is None or buf.num_rows == 0:
            return None
        if self._first_end[port] is None:
            ws = np.asarray(buf.column(WS).to_numpy(), dtype=np.int64)
            self._first_end[port] = int(ws.min()) + self.w.size + self.w.offset
        return self._first_end[port]

    def rescale(self, parts: list[dict[str, Any]], own: Ownership) -> dict[str, Any]:
        state: dict[str, Any] = {"__watermarks": merge_watermarks(parts, 2, own)}
        buffers: list[pa.Table | None] = []
        for side in (0, 1):
            kept = [own.keep_rows(p["buffers"][side], self.on[side]) for p in parts]
            tables = [t for t in kept if t is not None and t.num_rows]
            buffers.append(pa.concat_tables(tables, promote_options="permissive")
                           if tables else None)
        state["buffers"] = buffers
        return state

    def process(self, chunk: Chunk, port: int) -> None:
        last_end = self.w.last_end(chunk.ts)
        late = last_end - 1 <= self.watermark
        if late.any():
            if self.ctx is not None:
                self.ctx.record_late(self.name, int(late.sum()))
            chunk = chunk.take(~late)
            if chunk.num_rows == 0:
                return
        t = chunk.with_time().drop_columns([TIME_COLUMN])
        panes = self.w.pane_of(chunk.ts)
        idx, starts = self.w.windows_of_panes(panes)
        ends = starts + self.w.size + self.w.offset
        keep = ends - 1 > self.watermark
        t = t.take(pa.array(idx[keep], pa.int64())).append_column(WS, pa.array(starts[keep], pa.int64()))
        buf = self.buffers[port]
        if t.num_rows:
            first = int(ends[keep].min())
            known = self._first_end[port]
            if buf is None or buf.num_rows == 0:
                self._first_end[port] = first
            elif known is not None:
                self._first_end[port] = min(known, first)
        self.buffers[port] = t if buf is None else pa.concat_tables([buf, t], promote_options="permissive")

    def on_watermark(self, watermark: int) -> None:
        parts = []
        for port in (0, 1):
            buf = self.buffers[port]
            first = self._earliest(port)
            if buf is None or first is None or first - 1 > watermark:
                parts.append(None)  # (no window of this side's buffer ends yet)
                continue
            ends = np.asarray(buf.column(WS).to_numpy(), dtype=np.int64) + self.w.size + self.w.offset
            done = ends - 1 <= watermark
            parts.append(buf.filter(pa.array(done)) if done.any() else None)
            if done.any():
                self.buffers[port] = buf.filter(pa.array(~done))
                rest = ends[~done]
                self._first_end[port] = int(rest.min()) if len(rest) else None
        left, right = parts
        if left is None or right is None:
            return
        lk, rk = self.on
        pairs = pair_up(left, right, lk + [WS], rk + [WS])
        if pairs.num_rows == 0:
            return
        start = np.asarray(pairs.column(WS).to_numpy(), dtype=np.int64) + self.w.offset
        end = start + self.w.size
        out = pairs.drop_columns([WS])
        out = out.append_column("window_start", to_timestamps(start))
        out = out.append_column("window_end", to_timestamps(end))
        self.emit(Chunk(to_batch(out), end - 1))
