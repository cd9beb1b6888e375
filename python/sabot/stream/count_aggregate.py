"""Keyed count windows: every ``n`` events of a key (in arrival order) form one window.

Each event's sequence number within its key is computed over the whole batch (numpy: a stable
sort by key id and a running count, plus the key's count from earlier batches); partial states
are kept per (key, window number) and a window is merged and emitted as soon as it holds ``n``
events. As in Flink's count windows, a window still short of ``n`` events when the input ends
is not emitted. Output rows carry ``window_start`` (the earliest event time of the window) and
``window_end`` (the latest plus 1 ms).
"""

from __future__ import annotations

import numpy as np
import pyarrow as pa

from .aggregates import Agg
from .chunk import Chunk, to_batch
from .event_time import to_timestamps
from .key_ids import key_ids, key_tuples
from .operator import Operator
from .partials import GROUP, PANE, TMAX, TMIN, TS, Partials
from .windows import CountWindows


class CountAggregate(Operator):
    state_attrs = ("partials", "seen")

    def __init__(self, name: str, keys: list[str], windows: CountWindows, aggs: dict[str, Agg],
                 emit_mode: str, threads: int | None) -> None:
        super().__init__(name)
        self.keys = keys
        self.n = windows.n
        self.aggs = aggs
        self.mode = emit_mode
        self.partials = Partials(keys, aggs, threads)
        self.value_columns = sorted({a.column for a in aggs.values() if a.column is not None})
        self.seen: dict[tuple, int] = {}  # key -> events so far (one entry per live key)

    def process(self, chunk: Chunk, port: int) -> None:
        batch = pa.Table.from_batches([chunk.batch])
        ids = key_ids(batch, self.keys)
        uniq_first = np.unique(ids, return_index=True)[1]
        keys_of_ids = key_tuples(batch.take(pa.array(uniq_first)), self.keys)
        order = np.argsort(ids, kind="stable")
        sorted_ids = ids[order]
        group_start = np.r_[0, np.flatnonzero(np.diff(sorted_ids)) + 1]
        run = np.arange(len(ids)) - np.repeat(group_start, np.diff(np.r_[group_start, len(ids)]))
        prev = np.array([self.seen.get(k, 0) for k in keys_of_ids], dtype=np.int64)
        seq = np.empty(len(ids), dtype=np.int64)
        seq[order] = prev[sorted_ids] + run
        counts = np.bincount(ids, minlength=len(keys_of_ids))
        cols = {c: batch.column(c) for c in self.keys + self.value_columns}
        cols[PANE] = pa.array(seq // self.n, pa.int64())
        cols[TS] = pa.array(chunk.ts, pa.int64())
        self.partials.add(pa.table(cols))
        complete = []
        for i, key in enumerate(keys_of_ids):
            before, after = int(prev[i]), int(prev[i] + counts[i])
            self.seen[key] = after
            for w in range(before // self.n, after // self.n):
                complete.append(key + (w,))
            if self.mode == "update" and after % self.n:
                complete.append(key + (after // self.n,))
        if complete:
            self._emit_windows(complete, batch)

    def _emit_windows(self, groups: list[tuple], batch: pa.Table) -> None:
        types = [batch.schema.field(k).type for k in self.keys]
        arrays = [pa.array([g[i] for g in groups], t) for i, t in enumerate(types)]
        arrays.append(pa.array([g[-1] for g in groups], pa.int64()))
        wanted = pa.Table.from_arrays(arrays, names=self.keys + [PANE])

        def expand(t: pa.Table) -> pa.Table | None:
            t = t.join(wanted, self.keys + [PANE], join_type="left semi")
            return t.append_column(GROUP, t.column(PANE)) if t.num_rows else None

        merged = self.partials.results(expand)
        if merged is not None and merged.num_rows:
            start = np.asarray(merged.column(TMIN).to_numpy(), dtype=np.int64)
            end = np.asarray(merged.column(TMAX).to_numpy(), dtype=np.int64) + 1
            cols: dict[str, object] = {k: merged.column(k) for k in self.keys}
            cols["window_start"] = to_timestamps(start)
            cols["window_end"] = to_timestamps(end)
            cols.update(self.partials.finalize(merged))
            self.emit(Chunk(to_batch(pa.table(cols)), end - 1))
        full = [g for g in groups if self.seen[g[:-1]] >= (g[-1] + 1) * self.n]
        if full:
            rows = [pa.array([g[i] for g in full], t) for i, t in enumerate(types)]
            rows.append(pa.array([g[-1] for g in full], pa.int64()))
            self.partials.drop(pa.Table.from_arrays(rows, names=self.keys + [PANE]))
