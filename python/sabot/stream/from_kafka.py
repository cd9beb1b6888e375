"""``env.from_kafka``: Kafka topics as a stream, on :class:`sabot.connectors.KafkaBatchSource`.

Each poll (at most ``max_batch`` messages, on a worker thread: the job's loop never waits on
the broker) is decoded into one Arrow batch per partition and handed on as one item; every
partition is a source partition with its own watermark (a silent one stops holding the
watermark back after ``idle_timeout``). The positions after each poll are the source's
checkpoint position, so a restored job reads on from the offsets in its checkpoint, never from
the consumer group's commits (auto-commit is off). Messages that cannot be
decoded are bad records (``bad_records="dead_letter"`` sends them to ``.dead_letters()`` with
the topic, partition, offset and reason).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from typing import Any

import pyarrow as pa

from .bad_records import BadRecord
from .source import SEVERAL, Item, Source

LAG_EVERY_S = 1.0


class KafkaSource(Source):
    partitions = 0  # known once the topics' metadata is read
    dynamic = False

    def __init__(self, topics: str | list[str], options: dict[str, Any]) -> None:
        from ..connectors import KafkaBatchSource

        self._args = (topics, dict(options))
        self.reader = KafkaBatchSource(topics, **options)  # checks every option now
        self.bounded = self.reader.until == "end"
        self.name = f"from_kafka({','.join(self.reader.topics)})"
        self._start: dict[tuple[str, int], int] | None = None
        self._pos: dict[tuple[str, int], int] = {}
        self._lag: dict[tuple[str, int], int] = {}
        self._lag_at = 0.0

    def split(self, instance: int, instances: int) -> tuple[Source, list[object]]:
        """On a cluster: instance i of n is assigned the partitions whose index in (topic,
        partition) order is i modulo n (no consumer-group rebalancing: a restart or a
        rescale deals them again the same way). Its partitions appear once it has read the
        topics' metadata; with none (more instances than partitions) it is idle."""
        src = KafkaSource(*self._args)
        src.reader.share = (instance, instances)
        src.dynamic = True
        return src, []

    def rescale_position(self, positions: list[object], own: Any) -> object:
        merged: dict[Any, int] = {}
        for p in positions:
            merged.update(p)  # type: ignore[arg-type]
        return {w: merged[w] for k, w in enumerate(sorted(merged))
                if k % own.instances == own.instance}

    def position(self) -> object:
        return dict(self._pos)

    def seek(self, position: object) -> None:
        self._start = {tuple(k): int(v) for k, v in dict(position).items()}  # type: ignore[misc]

    def lag(self) -> dict[tuple[str, int], int]:
        """Messages each partition is behind its high watermark (refreshed about every second)."""
        return dict(self._lag)

    def _poll(self) -> list[Any]:
        got = self.reader.poll()
        now = time.monotonic()
        if now - self._lag_at >= LAG_EVERY_S or self.reader.finished:
            self._lag_at = now
            self._lag = self.reader.lag()
        return got

    async def read(self) -> AsyncIterator[Item]:
        reader = self.reader
        await asyncio.to_thread(reader.open, self._start)
        self._pos = reader.positions()
        if not self._pos:  # (a cluster's instance with no partition of its own)
            self.idle_share = True
        # every partition holds the watermark back from the start (until it is idle)
        empty = pa.RecordBatch.from_pylist([], schema=reader.schema) if reader.schema is not None \
            else pa.RecordBatch.from_pylist([])
        yield SEVERAL, [(p, empty) for p in self._pos]
        while True:
            polled = await asyncio.to_thread(self._poll)
            parts: list[tuple[object, Any]] = []
            for pb in polled:
                where = (pb.topic, pb.partition)
                if pb.bad:
                    parts.append((where, [BadRecord(
                        b.value, f"{b.reason} (topic {b.topic}, partition {b.partition}, "
                                 f"offset {b.offset})") for b in pb.bad]))
                if pb.batch is not None:
                    parts.append((where, pb.batch))
            if parts:
                self._pos = reader.positions()
                yield SEVERAL, parts
            elif reader.finished:
                self._pos = reader.positions()
                return

    async def aclose(self) -> None:
        await asyncio.to_thread(self.reader.close)
