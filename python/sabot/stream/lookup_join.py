"""Lookup join: each batch joined with a table, static or kept from a changelog stream.

With a static table the join is a hash join per batch (pyarrow's), rows in input order. With a
changelog stream (second input) the table is the latest row per key seen so far on it
(processing time: a batch is joined with the table as it is when the batch arrives).
"""

from __future__ import annotations

import numpy as np
import pyarrow as pa

from .chunk import Chunk
from .interval_join import pair_up
from .operator import Operator

HOWS = ("left", "inner")
ROW = "__sabot_row"


class LookupJoin(Operator):
    state_attrs = ("table",)

    def __init__(self, name: str, left_on: list[str], right_on: list[str], how: str,
                 table: pa.Table | None) -> None:
        super().__init__(name, inputs=1 if table is not None else 2)
        self.on = (left_on, right_on)
        self.how = how
        self.table = table
        self.changelog = table is None

    def process(self, chunk: Chunk, port: int) -> None:
        if port == 1:
            self._upsert(pa.Table.from_batches([chunk.batch]))
            return
        t = chunk.with_time()
        t = t.append_column(ROW, pa.array(np.arange(t.num_rows), pa.int64()))
        if self.table is None or self.table.num_rows == 0:
            if self.how == "inner":
                return
            joined = t
        else:
            lk, rk = self.on
            joined = pair_up(t, self.table, lk, rk) if self.how == "inner" else self._left(t)
        joined = joined.sort_by(ROW).drop_columns([ROW])
        self.emit(Chunk.from_table_with_time(joined))

    def _left(self, t: pa.Table) -> pa.Table:
        lk, rk = self.on
        assert self.table is not None
        rename = {c: f"{c}_right" for c in self.table.column_names
                  if c in t.column_names and not (c in rk and lk[rk.index(c)] == c)}
        right = self.table.rename_columns([rename.get(c, c) for c in self.table.column_names])
        return t.join(right, lk, [rename.get(c, c) for c in rk], join_type="left outer",
                      coalesce_keys=True)

    def _upsert(self, rows: pa.Table) -> None:
        _, rk = self.on
        merged = rows if self.table is None else pa.concat_tables([self.table, rows],
                                                                  promote_options="permissive")
        merged = merged.append_column(ROW, pa.array(np.arange(merged.num_rows), pa.int64()))
        last = merged.group_by(rk, use_threads=False).aggregate([(ROW, "max")])
        keep = np.sort(np.asarray(last.column(f"{ROW}_max").to_numpy()))
        self.table = merged.take(pa.array(keep)).drop_columns([ROW])
