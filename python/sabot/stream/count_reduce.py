"""``window(st.count(n)).reduce(fn)``: a user fold of every ``n`` events of a key.

A key's events are counted in arrival order; each batch's rows of a key are cut where a window
of ``n`` completes, and each piece is folded (with the key's row reduced so far) by one call of
``fn``. A window is emitted when its ``n``-th event arrives, with ``window_start`` and
``window_end`` spanning its events' times; an incomplete last window is not emitted (as for
``agg``, and in Flink). ``emit("update")`` also emits the current row of each incomplete window
a batch changed.
"""

from __future__ import annotations

from collections.abc import Callable, Hashable
from typing import Any

import numpy as np
import pyarrow as pa

from .chunk import Chunk, to_batch
from .event_time import to_timestamps
from .operator import Operator
from .reduce_call import call_reduce, group_by_key, with_row


class CountReduce(Operator):
    state_attrs = ("seen", "partial", "schema")

    def __init__(self, name: str, keys: list[str], n: int, fn: Callable[[pa.RecordBatch], Any],
                 emit_mode: str) -> None:
        super().__init__(name)
        self.keys = keys
        self.n = n
        self.fn = fn
        self.mode = emit_mode
        self.seen: dict[Hashable, int] = {}  # key -> events so far
        self.partial: dict[Hashable, list[Any]] = {}  # key -> [row, first ms, last ms]
        self.schema: pa.Schema | None = None

    def process(self, chunk: Chunk, port: int) -> None:
        rows = pa.Table.from_batches([chunk.batch])
        if self.schema is None:
            self.schema = rows.schema
        rows = rows.append_column("__ts", pa.array(chunk.ts, pa.int64()))
        out: list[list[Any]] = []
        for key, part, _ in group_by_key(rows, self.keys):
            seen = self.seen.get(key, 0)
            at = 0
            while at < part.num_rows:
                take = min(self.n - seen % self.n, part.num_rows - at)
                piece = part.slice(at, take)
                ts = np.asarray(piece.column("__ts").to_numpy(), dtype=np.int64)
                prev = self.partial.pop(key, None)
                body = piece.drop_columns(["__ts"])
                row = call_reduce(self.name, self.fn, self.keys, key,
                                  f"count window {seen // self.n}",
                                  with_row(None if prev is None else prev[0], body))
                lo = int(ts.min()) if prev is None else min(prev[1], int(ts.min()))
                hi = int(ts.max()) if prev is None else max(prev[2], int(ts.max()))
                seen += take
                at += take
                if seen % self.n == 0:
                    out.append([row, lo, hi])
                else:
                    self.partial[key] = [row, lo, hi]
                    if self.mode == "update":
                        out.append([row, lo, hi])
            self.seen[key] = seen
        self._emit(out)

    def _emit(self, out: list[list[Any]]) -> None:
        if not out or self.schema is None:
            return
        table = pa.Table.from_pylist([o[0] for o in out], schema=self.schema)
        start = np.array([o[1] for o in out], dtype=np.int64)
        end = np.array([o[2] for o in out], dtype=np.int64) + 1
        table = table.append_column("window_start", to_timestamps(start))
        table = table.append_column("window_end", to_timestamps(end))
        self.emit(Chunk(to_batch(table), end - 1))
