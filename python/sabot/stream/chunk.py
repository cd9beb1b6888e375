"""What flows between operators: a RecordBatch and its rows' event times (int64 ms)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pyarrow as pa

#: The column under which event times travel through Arrow kernels (filter, select, joins).
TIME_COLUMN = "__sabot_event_time"


@dataclass(slots=True)
class Chunk:
    batch: pa.RecordBatch
    ts: np.ndarray  # int64 milliseconds, one per row

    @property
    def num_rows(self) -> int:
        return self.batch.num_rows

    def with_time(self) -> pa.Table:
        """The batch with the event times as one more column (zero copy)."""
        return pa.Table.from_batches([self.batch]).append_column(
            TIME_COLUMN, pa.array(self.ts, pa.int64()))

    @staticmethod
    def from_table_with_time(table: pa.Table) -> Chunk:
        """The inverse of :meth:`with_time`."""
        ts_col = table.column(TIME_COLUMN)
        ts = np.asarray(ts_col.to_numpy(), dtype=np.int64)
        return Chunk(to_batch(table.drop_columns([TIME_COLUMN])), ts)

    def take(self, mask_or_idx: np.ndarray) -> Chunk:
        if mask_or_idx.dtype == bool:
            idx = np.flatnonzero(mask_or_idx)
        else:
            idx = mask_or_idx
        return Chunk(self.batch.take(pa.array(idx, pa.int64())), self.ts[idx])


def to_batch(table: pa.Table) -> pa.RecordBatch:
    """One RecordBatch holding the whole table (copies only when it has several chunks)."""
    batches = table.to_batches()
    if len(batches) == 1:
        return batches[0]
    if not batches:
        return pa.RecordBatch.from_pylist([], schema=table.schema)
    return table.combine_chunks().to_batches()[0] if table.num_rows else \
        pa.RecordBatch.from_pylist([], schema=table.schema)
