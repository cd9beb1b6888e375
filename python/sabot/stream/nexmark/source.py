"""``env.nexmark(...)``: the three Nexmark streams as sources of a StreamEnv."""

from __future__ import annotations

import asyncio
import heapq
import time
from collections.abc import AsyncIterator
from typing import TYPE_CHECKING, Any

from ...errors import ConfigError
from ..source import Item, Source
from ..watermarks import bounded_out_of_orderness
from .generator import CHUNK, PROPORTION, GeneratorConfig, generate

#: The splits of a Nexmark stream on a cluster (the most instances that each read a share).
SPLITS = 64

if TYPE_CHECKING:
    from ..env import StreamEnv
    from ..stream import DataStream


class NexmarkSource(Source):
    def __init__(self, cfg: GeneratorConfig, kind: str, events: int | None, rate: int | None,
                 batch_size: int) -> None:
        self.cfg = cfg
        self.kind = kind
        self.events = events
        self.rate = rate
        self.batch_size = batch_size
        self.bounded = events is not None
        self.partitions = 1
        self.name = f"nexmark.{kind}s"
        self._pos = (0, 0)  # (generator chunk, rows of it handed out)
        #: On a cluster: the generator's chunks are dealt to ``splits`` splits (chunk c to
        #: split c % splits); this instance reads the splits in ``owned``, each with its own
        #: position (its next chunk and row). It reads their chunks in the generator's order,
        #: whose times only grow: one watermark (partition 0) holds for all of them.
        self.splits = 0
        self.live_splits = 0
        self.owned: list[int] = []
        self._split_pos: dict[int, tuple[int, int]] = {}

    def split(self, instance: int, instances: int) -> tuple[Source, list[object]]:
        """Instance i of n reads the splits s with s % n == i (SPLITS of them in all, so that
        a checkpoint's positions can be dealt again to another number of instances)."""
        src = NexmarkSource(self.cfg, self.kind, self.events, self.rate, self.batch_size)
        src.splits = SPLITS
        last = None if self.events is None else -(-self.events // CHUNK)
        src.owned = [s for s in range(SPLITS) if s % instances == instance
                     and (last is None or s < last)]
        src.live_splits = SPLITS if last is None else min(SPLITS, last)  # (those with chunks)
        src._split_pos = {s: (s, 0) for s in src.owned}
        return src, [0] if src.owned else []

    def rescale_position(self, positions: list[object], own: Any) -> object:
        merged: dict[int, tuple[int, int]] = {}
        for p in positions:
            merged.update(p)  # type: ignore[arg-type]
        return {s: v for s, v in merged.items() if own.partition(s)}

    def position(self) -> object:
        return dict(self._split_pos) if self.splits else self._pos

    def seek(self, position: object) -> None:
        if self.splits:
            self._split_pos = {int(s): (int(c), int(r)) for s, (c, r) in
                               position.items() if int(s) in self.owned}  # type: ignore[union-attr]
            return
        chunk, rows = position  # type: ignore[misc]
        self._pos = (int(chunk), int(rows))

    async def read(self) -> AsyncIterator[Item]:
        if self.splits:
            async for item in self._read_splits():
                yield item
            return
        start = time.monotonic()
        first_chunk, skip = self._pos
        for i, batch in enumerate(generate(self.cfg, self.kind, first_chunk * CHUNK, self.events)):
            chunk = first_chunk + i
            for off in range(skip if i == 0 else 0, batch.num_rows, self.batch_size):
                end = off + self.batch_size
                self._pos = (chunk, end) if end < batch.num_rows else (chunk + 1, 0)
                yield 0, batch.slice(off, self.batch_size)
            await self._pace(start, batch)

    async def _pace(self, start: float, batch: Any) -> None:
        if self.rate is not None:
            # pace to `rate` events per second of wall clock (all kinds counted)
            ahead = self._ids_done(batch) / self.rate - (time.monotonic() - start)
            if ahead > 0:
                await asyncio.sleep(ahead)
        else:
            await asyncio.sleep(0)

    async def _read_splits(self) -> AsyncIterator[Item]:
        """This instance's splits, chunk by chunk in the generator's order."""
        start = time.monotonic()
        heap = [(c, s) for s, (c, _r) in self._split_pos.items() if self._has(c)]
        heapq.heapify(heap)
        while heap:
            chunk, s = heapq.heappop(heap)
            rows = self._split_pos[s][1]
            last = (chunk + 1) * CHUNK if self.events is None else min((chunk + 1) * CHUNK,
                                                                       self.events)
            batch = next(iter(generate(self.cfg, self.kind, chunk * CHUNK, last)))
            for off in range(rows, batch.num_rows, self.batch_size):
                end = off + self.batch_size
                self._split_pos[s] = (chunk, end) if end < batch.num_rows else \
                    (chunk + self.splits, 0)
                yield 0, batch.slice(off, self.batch_size)
            self._split_pos[s] = (chunk + self.splits, 0)
            if self._has(chunk + self.splits):
                heapq.heappush(heap, (chunk + self.splits, s))
            await self._pace(start, batch)

    def _has(self, chunk: int) -> bool:
        return self.events is None or chunk * CHUNK < self.events

    def _ids_done(self, batch: Any) -> int:
        self._chunks = getattr(self, "_chunks", 0) + 1
        # (on a cluster: this instance's share of the rate, its part of the splits)
        share = len(self.owned) / self.live_splits if self.splits else 1.0
        return int(self._chunks * CHUNK / share) if share else 0


class NexmarkStreams:
    """``.persons``, ``.auctions`` and ``.bids`` of one generated Nexmark event stream
    (``events`` ids in all, split 1:3:46; endless with ``events=None``)."""

    def __init__(self, env: StreamEnv, events: int | None, seed: int, rate: int | None,
                 batch_size: int, partitions: int) -> None:
        if events is not None and (isinstance(events, bool) or not isinstance(events, int) or events < 0):
            raise ConfigError("nexmark(events)", events, "a non-negative integer or None (endless)")
        if rate is not None and (isinstance(rate, bool) or not isinstance(rate, int) or rate < 1):
            raise ConfigError("nexmark(rate)", rate, "a positive number of events per second or None")
        if not isinstance(seed, int):
            raise ConfigError("nexmark(seed)", seed, "an integer")
        self.env = env
        self.events = events
        self.config = GeneratorConfig(seed=seed)
        self.rate = rate
        self.batch_size = batch_size
        self._streams: dict[str, DataStream] = {}

    def _stream(self, kind: str) -> DataStream:
        s = self._streams.get(kind)
        if s is None:
            src = NexmarkSource(self.config, kind, self.events, self.rate, self.batch_size)
            s = self.env.add_source(src, timestamp="date_time", timestamp_unit="ms",
                                    watermark=bounded_out_of_orderness(0), bad_records="fail")
            self._streams[kind] = s
        return s

    @property
    def persons(self) -> DataStream:
        return self._stream("person")

    @property
    def auctions(self) -> DataStream:
        return self._stream("auction")

    @property
    def bids(self) -> DataStream:
        return self._stream("bid")

    @property
    def max_auction_length_ms(self) -> int:
        return self.config.max_auction_length_ms


__all__ = ["PROPORTION", "NexmarkSource", "NexmarkStreams"]
