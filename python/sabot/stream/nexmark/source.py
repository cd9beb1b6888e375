"""``env.nexmark(...)``: the three Nexmark streams as sources of a StreamEnv."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from typing import TYPE_CHECKING, Any

from ...errors import ConfigError
from ..source import Item, Source
from ..watermarks import bounded_out_of_orderness
from .generator import CHUNK, PROPORTION, GeneratorConfig, generate

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
        #: On a cluster, this instance generates the chunks c with c % stride == offset.
        self.offset, self.stride = 0, 1

    def split(self, instance: int, instances: int) -> tuple[Source, list[object]]:
        """Instance i of n generates every n-th chunk of ids, from the i-th: its events are in
        time order, and the instances' chunks together are the whole stream."""
        src = NexmarkSource(self.cfg, self.kind, self.events, self.rate, self.batch_size)
        src.offset, src.stride = instance, instances
        src._pos = (instance, 0)
        has_chunk = self.events is None or instance * CHUNK < self.events
        return src, [0] if has_chunk else []

    def position(self) -> object:
        return self._pos

    def seek(self, position: object) -> None:
        chunk, rows = position  # type: ignore[misc]
        self._pos = (int(chunk), int(rows))

    def _batches(self, first_chunk: int):  # type: ignore[no-untyped-def]
        """(chunk number, batch) of this instance's chunks from ``first_chunk`` on."""
        if self.stride == 1:
            yield from enumerate(generate(self.cfg, self.kind, first_chunk * CHUNK, self.events),
                                 first_chunk)
            return
        chunk = first_chunk
        while self.events is None or chunk * CHUNK < self.events:
            last = (chunk + 1) * CHUNK if self.events is None else min((chunk + 1) * CHUNK,
                                                                       self.events)
            yield chunk, next(iter(generate(self.cfg, self.kind, chunk * CHUNK, last)))
            chunk += self.stride

    async def read(self) -> AsyncIterator[Item]:
        start = time.monotonic()
        first_chunk, skip = self._pos
        for i, (chunk, batch) in enumerate(self._batches(first_chunk)):
            for off in range(skip if i == 0 else 0, batch.num_rows, self.batch_size):
                end = off + self.batch_size
                self._pos = (chunk, end) if end < batch.num_rows else (chunk + self.stride, 0)
                yield 0, batch.slice(off, self.batch_size)
            if self.rate is not None:
                # pace to `rate` events per second of wall clock (all kinds counted)
                done = (self._ids_done(batch))
                ahead = done / self.rate - (time.monotonic() - start)
                if ahead > 0:
                    await asyncio.sleep(ahead)
            else:
                await asyncio.sleep(0)

    def _ids_done(self, batch: Any) -> int:
        self._chunks = getattr(self, "_chunks", 0) + 1
        return self._chunks * CHUNK * self.stride


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
