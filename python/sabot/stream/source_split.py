"""A source shared by the instances of a distributed job: each keeps its own partitions.

Partition ``p`` belongs to instance ``p % instances`` when it is an integer, else to the one its
text's CRC-32 picks, in every process alike. Every instance reads the whole source and drops what
is not its own: right for any source, and for a source that can read only its share (Nexmark's
generator, Kafka's partitions) an override of :meth:`Source.split` does better.

The position is the inner source's and, per partition, how many items of it were handed on.
Restored on as many instances, the inner source seeks to its position; restored on another
number (:mod:`.rescale`), it is read again from its start and each partition's first items,
which an old instance handed on before the checkpoint, are passed over.
"""

from __future__ import annotations

import zlib
from collections.abc import AsyncIterator
from typing import Any

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
        self._yielded: dict[object, int] = {}
        self._skip: dict[object, int] = {}

    @classmethod
    def of(cls, inner: Source, instance: int, instances: int) -> tuple[Source, list[object]]:
        owned: list[object] = [p for p in range(int(inner.partitions or 0))
                               if owner(p, instances) == instance]
        return cls(inner, instance, instances), owned

    def _mine(self, partition: object) -> bool:
        return owner(partition, self.instances) == self.instance

    def _take(self, part: object) -> bool:
        """Count an item of one of this instance's partitions; False while it is one to pass
        over (handed on before a rescaled checkpoint)."""
        n = self._yielded.get(part, 0) + 1
        self._yielded[part] = n
        return n > self._skip.get(part, 0)

    async def read(self) -> AsyncIterator[Item]:
        async for part, payload in self.inner.read():
            if part is SEVERAL:
                mine = [(p, b) for p, b in payload  # type: ignore[union-attr]
                        if self._mine(p) and self._take(p)]
                if mine:
                    yield SEVERAL, mine
            elif self._mine(part) and self._take(part):
                yield part, payload

    def position(self) -> object:
        return {"inner": self.inner.position(), "yielded": dict(self._yielded)}

    def seek(self, position: object) -> None:
        pos = dict(position)  # type: ignore[call-overload]
        self._yielded = dict(pos["yielded"])
        if pos["inner"] is not None:
            self.inner.seek(pos["inner"])
        else:  # (rescaled: from the start, passing over what was handed on)
            self._skip = dict(self._yielded)
            self._yielded = {}

    def rescale_position(self, positions: list[object], own: Any) -> object:
        yielded: dict[object, int] = {}
        for p in positions:
            for part, n in p["yielded"].items():  # type: ignore[index]
                if own.partition(part):
                    yielded[part] = max(yielded.get(part, 0), int(n))
        return {"inner": None, "yielded": yielded}

    async def aclose(self) -> None:
        await self.inner.aclose()

    def __getattr__(self, item: str) -> object:
        # lag() and the like of the source read
        if item == "inner":
            raise AttributeError(item)
        return getattr(self.inner, item)
