"""Keyed session windows: a key's events closer than ``gap`` form one session.

Partial states are kept per (key, event millisecond) (:mod:`.partials`); when the watermark
moves, the state's times are split into sessions per key (vectorized: sort, then a break where
the key changes or the gap to the previous event reaches ``gap``), and every session whose end
(last event + gap) the watermark has passed is merged and emitted. A late event within the
allowed lateness that extends or joins a fired session makes it fire again (its new extent);
an event whose own session would have expired is late.
"""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from .aggregates import Agg
from .chunk import Chunk, to_batch
from .durations import MAX_TIME, MIN_TIME
from .event_time import to_timestamps
from .key_ids import change_points, key_tuples
from .operator import Operator
from .partials import COUNT, GROUP, PANE, TMAX, TMIN, TS, Partials
from .windows import SessionWindows


class SessionAggregate(Operator):
    state_attrs = ("partials", "emitted")

    def __init__(self, name: str, keys: list[str], windows: SessionWindows, aggs: dict[str, Agg],
                 allowed_lateness: int, emit_mode: str, threads: int | None) -> None:
        super().__init__(name)
        self.keys = keys
        self.gap = windows.gap
        self.aggs = aggs
        self.lateness = allowed_lateness
        self.mode = emit_mode
        self.partials = Partials(keys, aggs, threads)
        self.value_columns = sorted({a.column for a in aggs.values() if a.column is not None})
        self.emitted: dict[tuple, tuple[int, int, int]] = {}  # (key, start) -> (end, events, wm)

    def process(self, chunk: Chunk, port: int) -> None:
        wm = self.watermark
        if wm > MIN_TIME:
            chunk = self.route_late(chunk, chunk.ts + self.gap - 1 + self.lateness <= wm)
        if chunk.num_rows == 0:
            return
        cols = {c: chunk.batch.column(c) for c in self.keys + self.value_columns}
        cols[PANE] = pa.array(chunk.ts, pa.int64())
        cols[TS] = pa.array(chunk.ts, pa.int64())
        self.partials.add(pa.table(cols))
        if self.mode == "update":
            self._fire(MAX_TIME, touched_only=chunk)
        elif wm > MIN_TIME and int(chunk.ts.min()) + self.gap - 1 <= wm:
            self._fire(wm)  # a late update within the allowed lateness

    def on_watermark(self, watermark: int) -> None:
        if self.mode == "final":
            self._fire(watermark)
        self._purge(watermark)

    def _sessions(self) -> pa.Table | None:
        """(keys, PANE, GROUP=session start, __send) for every state row."""
        t = self.partials.native_table()
        if t is None:
            return None
        t = t.select(self.keys + [PANE, COUNT])
        t = t.group_by(self.keys + [PANE], use_threads=False).aggregate([(COUNT, "sum")])
        t = t.rename_columns(self.keys + [PANE, COUNT])

        t = t.take(pc.sort_indices(t, [(k, "ascending") for k in self.keys] + [(PANE, "ascending")]))
        ts = np.asarray(t.column(PANE).to_numpy(), dtype=np.int64)
        brk = change_points(t, self.keys)
        if len(ts) > 1:
            brk[1:] |= (ts[1:] - ts[:-1]) >= self.gap
        sid = np.cumsum(brk) - 1
        starts_of = ts[np.flatnonzero(brk)]
        ends = np.maximum.reduceat(ts, np.flatnonzero(brk)) + self.gap if len(ts) else ts
        counts = np.add.reduceat(np.asarray(t.column(COUNT).to_numpy(), dtype=np.int64),
                                 np.flatnonzero(brk)) if len(ts) else ts
        t = t.append_column(GROUP, pa.array(starts_of[sid], pa.int64()))
        t = t.append_column("__send", pa.array(ends[sid], pa.int64()))
        t = t.append_column("__sevents", pa.array(counts[sid], pa.int64()))
        return t

    def _fire(self, watermark: int, touched_only: Chunk | None = None) -> None:
        s = self._sessions()
        if s is None:
            return
        ends = np.asarray(s.column("__send").to_numpy())
        done = ends - 1 <= watermark if touched_only is None else np.ones(len(ends), bool)
        if touched_only is not None:
            touched = set(touched_only.ts.tolist())
            # sessions holding a touched millisecond (vectorized over the state rows)
            panes = np.asarray(s.column(PANE).to_numpy())
            hit = np.isin(panes, np.fromiter(touched, np.int64))
            starts = np.asarray(s.column(GROUP).to_numpy())
            done &= np.isin(starts, starts[hit])
        if not done.any():
            return
        s = s.filter(pa.array(done))
        heads = s.group_by(self.keys + [GROUP, "__send", "__sevents"], use_threads=False).aggregate([])
        fresh = []
        for key, start, end, n in zip(key_tuples(heads, self.keys), heads.column(GROUP).to_pylist(),
                                      heads.column("__send").to_pylist(),
                                      heads.column("__sevents").to_pylist()):
            sig = self.emitted.get((key, start))
            if sig is None or sig[:2] != (end, n):
                fresh.append(True)
                self.emitted[(key, start)] = (end, n, watermark)
            else:
                fresh.append(False)
        heads = heads.filter(pa.array(fresh))
        if heads.num_rows == 0:
            return
        mapping = s.join(heads.select(self.keys + [GROUP]), self.keys + [GROUP], join_type="left semi")
        mapping = mapping.select(self.keys + [PANE, GROUP, "__send"])

        def expand(t: pa.Table) -> pa.Table | None:
            out = t.join(mapping.select(self.keys + [PANE, GROUP]), self.keys + [PANE], join_type="inner")
            return out if out.num_rows else None

        merged = self.partials.results(expand)
        if merged is None or merged.num_rows == 0:
            return
        start = np.asarray(merged.column(TMIN).to_numpy(), dtype=np.int64)
        end = np.asarray(merged.column(TMAX).to_numpy(), dtype=np.int64) + self.gap
        order = np.argsort(end, kind="stable")
        merged = merged.take(pa.array(order))
        start, end = start[order], end[order]
        cols: dict[str, object] = {k: merged.column(k) for k in self.keys}
        cols["window_start"] = to_timestamps(start)
        cols["window_end"] = to_timestamps(end)
        cols.update(self.partials.finalize(merged))
        self.emit(Chunk(to_batch(pa.table(cols)), end - 1))

    def _purge(self, watermark: int) -> None:
        s = self._sessions()
        if s is None:
            return
        ends = np.asarray(s.column("__send").to_numpy())
        dead = ends - 1 + self.lateness <= watermark
        if dead.any():
            self.partials.drop(s.filter(pa.array(dead)).select(self.keys + [PANE]))
        limit = watermark - self.lateness
        self.emitted = {k: v for k, v in self.emitted.items() if v[0] - 1 > limit}
