"""A checkpoint taken on N instances restored on M: each operator's state, re-cut.

Restoring a pipeline's checkpoint on another number of instances (a savepoint resumed on more or
fewer workers), instance i of M gets, for every operator, a state made from the parts of all N
old instances (:meth:`Operator.rescale`): the keyed state of the keys it now owns (their key
groups are its range of M), the sources' positions and watermarks of the partitions it now
reads, and (instance 0) what the old instances' collecting sinks gathered. Watermarks start at
the minimum over the old parts: every new instance goes on from where the slowest stood, and
what a keyed operator already fired is the same on every old instance (its input's watermark
came through the exchange from all of them alike).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import pyarrow as pa

from ..errors import CheckpointError
from .key_groups import owners, owners_of_keys
from .source_split import owner as partition_owner


@dataclass(frozen=True)
class Ownership:
    """What instance ``instance`` of ``instances`` owns."""

    instance: int
    instances: int
    key_groups: int

    def rows(self, table: pa.Table | pa.RecordBatch, keys: list[str]) -> np.ndarray:
        """A mask of the rows whose key this instance owns."""
        if isinstance(table, pa.Table):
            table = table.combine_chunks().to_batches()[0] if table.num_rows else \
                pa.RecordBatch.from_pylist([], schema=table.schema)
        return owners(table, keys, self.key_groups, self.instances) == self.instance

    def keep_rows(self, table: pa.Table | None, keys: list[str]) -> pa.Table | None:
        if table is None or table.num_rows == 0:
            return table
        return table.filter(pa.array(self.rows(table, keys)))

    def keys(self, keys: list[object], width: int) -> np.ndarray:
        return owners_of_keys(keys, width, self.key_groups, self.instances) == self.instance

    def partition(self, partition: object) -> bool:
        return partition_owner(partition, self.instances) == self.instance


def merge_watermarks(parts: list[dict[str, Any]], inputs: int, own: Ownership
                     ) -> tuple[list[int], list[bool], int, int, int]:
    """The base operator state (input watermarks, idleness, watermark, rows in and out) of the
    new instance: the minimum over the parts; the row counts to instance 0."""
    marks = [p["__watermarks"] for p in parts]
    low = min(min(m[0]) if m[0] else m[2] for m in marks)
    same = all(len(m[0]) == inputs for m in marks)
    in_wm = [min(m[0][i] for m in marks) for i in range(inputs)] if same else [low] * inputs
    rows_in = sum(m[3] for m in marks) if own.instance == 0 else 0
    rows_out = sum(m[4] for m in marks) if own.instance == 0 else 0
    return in_wm, [False] * inputs, min(m[2] for m in marks), rows_in, rows_out


def not_rescalable(op: Any) -> CheckpointError:
    return CheckpointError(
        f"operator {op.name!r} ({type(op).__name__}) keeps state that cannot be cut between "
        "another number of instances yet: resume the pipeline on as many instances as it ran on")
