"""A source shared by the instances of a distributed job: each keeps its own partitions.

Partition ``p`` belongs to instance ``p % instances`` when it is an integer, else to the one its
text's CRC-32 picks, in every process alike. Every instance reads the whole source and drops what
is not its own: right for any source, and for a source that can read only its share (Nexmark's
generator, Kafka's partitions) an override of :meth:`Source.split` does better.
"""

from __future__ import annotations

import zlib
from collections.abc import AsyncIterator

from .source import SEVERAL, Item, Source


def owner(partition: object, instances: int) -> int:
    if isinstance(partition, int) and not isinstance(partition, bool):
        return partition % instances
    return zlib.crc32(repr(partition).encode("utf-8")) % instances


class PartitionFilter(Source):
    def __init__(self, inner: Source, instance: int, instances: int) -> None:
        self.inner = inner
        self.instance = instance
        self.instances = instances
        self.name = inner.name
        self.bounded = inner.bounded
        self.partitions = inner.partitions
        #: Partitions appear as they are read (they are not declared up front).
        self.dynamic = not inner.partitions

    @classmethod
    def of(cls, inner: Source, instance: int, instances: int) -> tuple[Source, list[object]]:
        owned: list[object] = [p for p in range(int(inner.partitions or 0))
                               if owner(p, instances) == instance]
        return cls(inner, instance, instances), owned

    def _mine(self, partition: object) -> bool:
        return owner(partition, self.instances) == self.instance

    async def read(self) -> AsyncIterator[Item]:
        async for part, payload in self.inner.read():
            if part is SEVERAL:
                mine = [(p, b) for p, b in payload if self._mine(p)]  # type: ignore[union-attr]
                if mine:
                    yield SEVERAL, mine
            elif self._mine(part):
                yield part, payload

    def position(self) -> object:
        return self.inner.position()

    def seek(self, position: object) -> None:
        self.inner.seek(position)

    async def aclose(self) -> None:
        await self.inner.aclose()

    def __getattr__(self, item: str) -> object:
        # lag() and the like of the source read
        if item == "inner":
            raise AttributeError(item)
        return getattr(self.inner, item)
