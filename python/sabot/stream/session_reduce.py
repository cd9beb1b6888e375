"""``window(st.session(gap)).reduce(fn)``: a user fold per key and session.

Per batch, each key's new rows are sorted by event time and cut where two events are ``gap``
or more apart; each piece is folded with one call of ``fn`` and merged into the key's sessions
(two sessions closer than ``gap`` become one, their rows folded together: ``fn`` must be
associative). A session fires when the watermark passes its end (last event + gap); a late
event within ``allowed_lateness`` that extends or joins a fired session makes it fire again
with its new extent, as for ``agg``. Python runs once per (key, session piece) and batch.
"""

from __future__ import annotations

from collections.abc import Callable, Hashable
from typing import Any

import numpy as np
import pyarrow as pa

from .chunk import Chunk, to_batch
from .durations import MIN_TIME
from .event_time import to_timestamps
from .operator import Operator
from .reduce_call import call_reduce, group_by_key

Session = list  # [first event ms, last event ms, reduced row]


class SessionReduce(Operator):
    state_attrs = ("sessions", "fired", "schema")

    def __init__(self, name: str, keys: list[str], gap: int, fn: Callable[[pa.RecordBatch], Any],
                 allowed_lateness: int, emit_mode: str) -> None:
        super().__init__(name)
        self.keys = keys
        self.gap = gap
        self.fn = fn
        self.lateness = allowed_lateness
        self.mode = emit_mode
        self.sessions: dict[Hashable, list[Session]] = {}
        self.fired: set[tuple[Hashable, int, int]] = set()  # (key, first, last) emitted
        self.schema: pa.Schema | None = None

    def _fold(self, key: Hashable, lo: int, rows: pa.Table) -> dict[str, Any]:
        return call_reduce(self.name, self.fn, self.keys, key, f"session starting {lo} ms", rows)

    def process(self, chunk: Chunk, port: int) -> None:
        wm = self.watermark
        if wm > MIN_TIME:
            chunk = self.route_late(chunk, chunk.ts + self.gap - 1 + self.lateness <= wm)
        if chunk.num_rows == 0:
            return
        rows = pa.Table.from_batches([chunk.batch])
        if self.schema is None:
            self.schema = rows.schema
        touched: list[tuple[Hashable, Session]] = []
        for key, part, ts in group_by_key(rows, self.keys, chunk.ts):
            cut = np.r_[0, np.flatnonzero(np.diff(ts) >= self.gap) + 1, len(ts)]
            mine = self.sessions.setdefault(key, [])
            for a, b in zip(cut[:-1], cut[1:]):
                lo, hi = int(ts[a]), int(ts[b - 1])
                piece = part.slice(int(a), int(b - a))
                touched.append((key, self._merge(key, mine, [lo, hi, self._fold(key, lo, piece)])))
        done = [(k, s) for k, s in touched if s in self.sessions.get(k, [])]
        if self.mode == "update":
            self._emit(done)
        else:  # late updates of sessions that fired already
            self._emit([(k, s) for k, s in done if s[1] + self.gap - 1 <= wm])

    def _merge(self, key: Hashable, mine: list[Session], new: Session) -> Session:
        """Put ``new`` among the key's sessions, joining those closer than the gap."""
        near = [s for s in mine if new[0] - s[1] < self.gap and s[0] - new[1] < self.gap]
        for s in near:
            mine.remove(s)
        if near:
            parts = sorted(near + [new], key=lambda s: s[0])
            lo, hi = parts[0][0], max(s[1] for s in parts)
            folded = pa.Table.from_pylist([s[2] for s in parts], schema=self.schema)
            new = [lo, hi, self._fold(key, lo, folded)]
        mine.append(new)
        mine.sort(key=lambda s: s[0])
        return new

    def on_watermark(self, watermark: int) -> None:
        if self.mode == "final":
            self._emit([(k, s) for k, ss in self.sessions.items() for s in ss
                        if s[1] + self.gap - 1 <= watermark])
        for k in list(self.sessions):
            live = [s for s in self.sessions[k] if s[1] + self.gap - 1 + self.lateness > watermark]
            if live:
                self.sessions[k] = live
            else:
                del self.sessions[k]
        limit = watermark - self.lateness
        self.fired = {f for f in self.fired if f[2] + self.gap - 1 > limit}

    def _emit(self, which: list[tuple[Hashable, Session]]) -> None:
        out = []
        for key, s in which:
            sig = (key, s[0], s[1])
            if self.mode == "final":
                if sig in self.fired:
                    continue
                self.fired.add(sig)
            out.append(s)
        if not out or self.schema is None:
            return
        out.sort(key=lambda s: s[1])
        table = pa.Table.from_pylist([s[2] for s in out], schema=self.schema)
        start = np.array([s[0] for s in out], dtype=np.int64)
        end = np.array([s[1] for s in out], dtype=np.int64) + self.gap
        table = table.append_column("window_start", to_timestamps(start))
        table = table.append_column("window_end", to_timestamps(end))
        self.emit(Chunk(to_batch(table), end - 1))
