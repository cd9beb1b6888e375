"""Interval join: pairs of rows with equal keys whose event times lie within a bound.

``a.interval_join(b, on=..., lower=L, upper=U)`` pairs a row x of ``a`` with a row y of ``b``
when ``x.time + L <= y.time <= x.time + U``. Each side's rows are buffered (Arrow tables); a new
batch of one side is hash-joined (pyarrow's join) with the other side's buffer, then the time
condition is applied as a vectorized filter, so every pair is found exactly once. Rows that no
future row can match (judged by the watermark) are dropped. Without bounds it is a regular join
that keeps both sides. Output: the left columns, then the right ones (a right column whose name
is taken gets the suffix ``_right``); its time is the later of the two.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pyarrow as pa

from ..errors import ConfigError
from .chunk import TIME_COLUMN, Chunk, to_batch
from .durations import MAX_TIME
from .operator import Operator

LEFT_T = "__sabot_left_time"
RIGHT_T = "__sabot_right_time"


def join_keys(on: Any) -> tuple[list[str], list[str]]:
    """``on``: a column name, a list of names (same on both sides), or a (left, right) pair
    of names / lists."""
    if isinstance(on, str):
        return [on], [on]
    if isinstance(on, tuple) and len(on) == 2:
        left, right = on
        lk = [left] if isinstance(left, str) else list(left)
        rk = [right] if isinstance(right, str) else list(right)
        if len(lk) == len(rk) and lk and all(isinstance(c, str) for c in lk + rk):
            return lk, rk
    if isinstance(on, list) and on and all(isinstance(c, str) for c in on):
        return list(on), list(on)
    raise ConfigError("on", on, "a column name, a list of names, or a (left, right) pair of "
                      "names or lists (e.g. on=('id', 'seller'))")


def pair_up(left: pa.Table, right: pa.Table, left_on: list[str], right_on: list[str]) -> pa.Table:
    """Inner hash join of two tables, left columns first; clashing right names get ``_right``;
    a right key equal by name to its left key is not repeated."""
    rename = {}
    taken = set(left.column_names)
    for c in right.column_names:
        if c in right_on and left_on[right_on.index(c)] == c:
            continue
        if c in taken:
            rename[c] = f"{c}_right"
    right2 = right.rename_columns([rename.get(c, c) for c in right.column_names])
    rk = [rename.get(c, c) for c in right_on]
    return left.join(right2, left_on, rk, join_type="inner", coalesce_keys=True)


class IntervalJoin(Operator):
    state_attrs = ("buffers",)

    def __init__(self, name: str, left_on: list[str], right_on: list[str], lower: int | None,
                 upper: int | None) -> None:
        super().__init__(name, inputs=2)
        self.on = (left_on, right_on)
        self.lower = lower
        self.upper = upper
        self.buffers: list[pa.Table | None] = [None, None]

    def _side(self, chunk: Chunk, port: int) -> pa.Table:
        t = chunk.with_time()
        return t.rename_columns([LEFT_T if port == 0 and c == TIME_COLUMN else
                                 RIGHT_T if c == TIME_COLUMN else c for c in t.column_names])

    def process(self, chunk: Chunk, port: int) -> None:
        mine = self._side(chunk, port)
        other = self.buffers[1 - port]
        if other is not None and other.num_rows:
            left, right = (mine, other) if port == 0 else (other, mine)
            self._emit_pairs(pair_up(left, right, *self.on))
        buf = self.buffers[port]
        self.buffers[port] = mine if buf is None else pa.concat_tables([buf, mine],
                                                                       promote_options="permissive")

    def _emit_pairs(self, pairs: pa.Table) -> None:
        if pairs.num_rows == 0:
            return
        lt = np.asarray(pairs.column(LEFT_T).to_numpy(), dtype=np.int64)
        rt = np.asarray(pairs.column(RIGHT_T).to_numpy(), dtype=np.int64)
        keep = np.ones(len(lt), bool)
        if self.lower is not None:
            keep &= rt >= lt + self.lower
        if self.upper is not None:
            keep &= rt <= lt + self.upper
        if not keep.any():
            return
        pairs = pairs.filter(pa.array(keep))
        ts = np.maximum(lt[keep], rt[keep])
        out = pairs.drop_columns([LEFT_T, RIGHT_T])
        self.emit(Chunk(to_batch(out), ts))

    def on_watermark(self, watermark: int) -> None:
        if watermark >= MAX_TIME:
            self.buffers = [None, None]
            return
        # a left row x can still meet future right rows y (y.time > watermark) while
        # x.time + upper >= watermark; a right row y can meet future left rows x while
        # y.time - lower >= watermark.
        for port, col, bound in ((0, LEFT_T, self.upper), (1, RIGHT_T, None if self.lower is None
                                                             else -self.lower)):
            buf = self.buffers[port]
            if buf is None or bound is None or buf.num_rows == 0:
                continue
            t = np.asarray(buf.column(col).to_numpy(), dtype=np.int64)
            alive = t + bound >= watermark
            if not alive.all():
                self.buffers[port] = buf.filter(pa.array(alive))

    def buffered_rows(self) -> int:
        return sum(b.num_rows for b in self.buffers if b is not None)
