"""The source contract: an async iterator of (partition, RecordBatch | [BadRecord, ...]), and
for checkpoints a position (after the last item yielded) to go on from."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import pyarrow as pa

from .bad_records import BadRecord

Item = tuple[object, "pa.RecordBatch | list[BadRecord]"]

#: As the partition of an item: the payload is a list of (partition, RecordBatch) read at the
#: same moment (one batch split by partition); the watermark advances once, after all of them.
SEVERAL = object()


class Source:
    """Subclasses set ``name``, ``bounded`` and ``partitions`` (declared up front; more may
    appear) and implement :meth:`read`."""

    name = "source"
    bounded = True
    partitions = 1
    #: On a cluster: this instance's share of the source turned out empty (it is idle).
    idle_share = False

    def read(self) -> AsyncIterator[Item]:
        raise NotImplementedError

    def position(self) -> object:
        """Where :meth:`read` stands right after the item it yielded last (picklable), for a
        checkpoint; None when the source cannot be replayed (then a restore goes on from what
        arrives next)."""
        return None

    def seek(self, position: object) -> None:
        """Before :meth:`read`: go on after ``position`` (one :meth:`position` gave)."""

    async def aclose(self) -> None:
        """Release what :meth:`read` holds (sockets, file handles); called once at the end."""

    def rescale_position(self, positions: list[object], own: Any) -> object:
        """The position of the split source (one :meth:`split` made) for the instance ``own``
        names, from the positions the instances of a run on another number of instances had
        (see :mod:`.rescale`). A source without positions (it cannot be replayed) has none."""
        from ..errors import CheckpointError

        if all(p is None for p in positions):
            return None
        raise CheckpointError(f"source {self.name!r} cannot deal its position to another "
                              "number of instances: resume the pipeline on as many instances "
                              "as it ran on")

    def split(self, instance: int, instances: int) -> tuple[Source, list[object]]:
        """On a cluster: the source as instance ``instance`` of ``instances`` reads it, and the
        partitions it owns up front. By default every instance reads everything and keeps
        the partitions that are its own (:mod:`.source_split`); a source that can read only
        its share overrides this."""
        from .source_split import PartitionFilter

        return PartitionFilter.of(self, instance, instances)
