"""Running a job: operators built from the stream graph, sources pumped into one bounded queue.

One asyncio task per source reads batches and puts them on a queue of a few entries (that is the
backpressure: a source waits while the pipeline is busy). The job's loop takes one item at a
time and pushes it through the operators synchronously (the heavy kernels release the GIL), then
advances that source's watermark. A periodic tick (``tick_ms``) re-checks idle partitions, fires
processing-time timers and updates the watermark-lag metric. Bounded jobs end when every source
has ended; the final watermark fires every window before the sinks close.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from ..metrics import get_metrics
from .durations import MAX_TIME, MIN_TIME
from .operator import Operator
from .source_operator import SourceOperator

if TYPE_CHECKING:
    from .graph import Node

log = logging.getLogger(__name__)

QUEUE_SIZE = 4


class JobContext:
    """What operators may ask of the running job: its name, the clocks, metrics."""

    def __init__(self, job: str, threads: int | None) -> None:
        self.job = job
        self.threads = threads
        self._metrics = get_metrics()
        self.late_events = 0
        self.bad_records = 0

    def record_late(self, operator: str, n: int) -> None:
        self.late_events += n
        self._metrics.record_stream_late(self.job, operator, n)

    def record_bad(self, operator: str, n: int) -> None:
        self.bad_records += n
        self._metrics.record_error("stream_bad_record")

    def record_events(self, n: int) -> None:
        self._metrics.record_stream_events(self.job, n)

    def set_watermark_lag(self, seconds: float) -> None:
        self._metrics.set_stream_watermark_lag(self.job, seconds)

    @staticmethod
    def now_ms() -> int:
        return int(time.time() * 1000)


class Job:
    """One execution of a stream graph towards ``sinks``."""

    def __init__(self, name: str, sinks: Sequence["Node"], threads: int | None,
                 tick_ms: int = 50) -> None:
        self.name = name
        self.ctx = JobContext(name, threads)
        self.tick_s = tick_ms / 1000
        self.operators: dict[int, Operator] = {}
        self.order: list[Operator] = []  # upstream before downstream
        self.sinks = [self._build(n) for n in sinks]
        self.sources = [op for op in self.order if isinstance(op, SourceOperator)]

    def _build(self, node: "Node") -> Operator:
        op = self.operators.get(id(node))
        if op is not None:
            return op
        ups = [(self._build(up), side) for up, side in node.inputs]
        op = node.make(self.ctx)
        self.operators[id(node)] = op
        for port, (up, side) in enumerate(ups):
            up.connect(op, port, side)
        self.order.append(op)
        return op

    async def run(self) -> None:
        for op in self.order:
            op.open(self.ctx)
        queue: asyncio.Queue[tuple[int, str, Any, Any]] = asyncio.Queue(QUEUE_SIZE)
        pumps = [asyncio.create_task(self._pump(i, s, queue), name=f"{self.name}:{s.name}")
                 for i, s in enumerate(self.sources)]
        active = len(pumps)
        last_tick = time.monotonic()
        try:
            while active:
                await self._wait_for_consumers()
                try:
                    i, kind, part, payload = await asyncio.wait_for(queue.get(), self.tick_s)
                except TimeoutError:
                    self._tick()
                    last_tick = time.monotonic()
                    continue
                src = self.sources[i]
                if kind == "batch":
                    before = src.events
                    src.push(part, payload)
                    self.ctx.record_events(src.events - before)
                elif kind == "end":
                    src.end()
                    active -= 1
                else:  # "error": the source failed
                    raise payload
                if time.monotonic() - last_tick >= self.tick_s:
                    self._tick()
                    last_tick = time.monotonic()
            for op in self.order:
                op.close()
        finally:
            for p in pumps:
                p.cancel()
            await asyncio.gather(*pumps, return_exceptions=True)
            for s in self.sources:
                try:
                    await s.source.aclose()
                except Exception:  # noqa: BLE001 - closing must not hide the job's outcome
                    log.exception("closing source %s failed", s.name)

    async def _pump(self, i: int, src: SourceOperator, queue: asyncio.Queue) -> None:
        try:
            async for part, payload in src.source.read():
                await queue.put((i, "batch", part, payload))
            await queue.put((i, "end", None, None))
        except asyncio.CancelledError:
            raise
        except BaseException as exc:  # noqa: BLE001 - handed to the job loop
            await queue.put((i, "error", None, exc))

    async def _wait_for_consumers(self) -> None:
        """Backpressure from async collect() consumers: do not run ahead of them."""
        while any(getattr(op, "backlog", lambda: 0)() > QUEUE_SIZE * 4 for op in self.sinks):
            await asyncio.sleep(0.005)

    def _tick(self) -> None:
        for s in self.sources:
            s.advance()
        now = JobContext.now_ms()
        for op in self.order:
            op.on_processing_time(now)
        wms = [s.watermark for s in self.sources if MIN_TIME < s.watermark < MAX_TIME]
        if wms:
            self.ctx.set_watermark_lag(max(0.0, (now - min(wms)) / 1000))
