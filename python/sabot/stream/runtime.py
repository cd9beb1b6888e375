"""Running a job: operators built from the stream graph, sources pumped into one bounded queue.

One asyncio task per source reads batches and puts them on a queue of a few entries (that is the
backpressure: a source waits while the pipeline is busy). The job's loop takes one item at a
time and pushes it through the operators synchronously (the heavy kernels release the GIL), then
advances that source's watermark. A periodic tick (``tick_ms``) re-checks idle partitions, fires
processing-time timers and updates the watermark-lag metric. Bounded jobs end when every source
has ended; the final watermark fires every window before the sinks close.

With checkpoints (:mod:`.checkpointer`) each queue entry carries the source's position after
it, so a checkpoint taken between two items records exactly what the operators have seen.

On a cluster (``channels``: this instance's end of the exchange, :mod:`.exchange_channels`)
every instance builds the whole graph; each source reads its share of the partitions, and the
input of a keyed operator comes through an exchange (:mod:`.exchange`). What other instances
send enters the same queue (never held back, so instances cannot wait on each other); a source
also waits while the exchange's outgoing queues are long. The job ends when its sources and
every sender of every exchange have ended.
"""

from __future__ import annotations

import asyncio
import collections
import logging
import time
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from ..metrics import get_metrics
from .barriers import Alignment, upstream_inputs
from .checkpointer import CheckpointConfig, Checkpointer
from .cluster_checkpoints import ClusterCheckpointer
from .durations import MAX_TIME, MIN_TIME
from .exchange import ExchangeInput, ExchangeSend
from .operator import Operator
from .projection import plan_projections
from .source_operator import SourceOperator

if TYPE_CHECKING:
    from .exchange_channels import ExchangeChannels
    from .graph import Node

log = logging.getLogger(__name__)

QUEUE_SIZE = 4
#: The "source index" of the coordinator's requests in the job's queue.
CONTROL = -2
#: How long a distributed job's instance waits, once done, for the others to take its rows.
DRAIN_TIMEOUT_S = 60.0


class JobContext:
    """What operators may ask of the running job: its name, the clocks, metrics."""

    def __init__(self, job: str, threads: int | None) -> None:
        self.job = job
        self.threads = threads
        self._metrics = get_metrics()
        self.late_events = 0
        self.bad_records = 0
        self.checkpointing = False
        #: On a cluster: this instance's number (None on one node).
        self.instance: int | None = None

    def record_late(self, operator: str, n: int) -> None:
        self.late_events += n
        self._metrics.record_stream_late(self.job, operator, n)

    def record_bad(self, operator: str, n: int) -> None:
        self.bad_records += n
        self._metrics.record_error("stream_bad_record")

    def record_events(self, n: int) -> None:
        self._metrics.record_stream_events(self.job, n)

    def record_rows(self, operator: str, rows_in: int, rows_out: int) -> None:
        self._metrics.record_stream_rows(self.job, operator, rows_in, rows_out)

    def set_kafka_lag(self, topic: str, partition: int, lag: int) -> None:
        self._metrics.set_stream_kafka_lag(self.job, topic, partition, lag)

    def set_watermark_lag(self, seconds: float) -> None:
        self._metrics.set_stream_watermark_lag(self.job, seconds)

    @staticmethod
    def now_ms() -> int:
        return int(time.time() * 1000)


class Job:
    """One execution of a stream graph towards ``sinks``."""

    def __init__(self, name: str, sinks: Sequence[Node], threads: int | None,
                 tick_ms: int = 50, checkpoint: CheckpointConfig | None = None,
                 restore_from: str | None = None, channels: ExchangeChannels | None = None
                 ) -> None:
        self.name = name
        self.ctx = JobContext(name, threads)
        self.tick_s = tick_ms / 1000
        self.operators: dict[int, Operator] = {}
        self.order: list[Operator] = []  # upstream before downstream
        self.channels = channels
        if channels is not None:
            self.ctx.instance = channels.instance
        self.exchanges: list[ExchangeInput] = []  # by exchange number
        self.sinks = [self._build(n) for n in sinks]
        self.sources = [op for op in self.order if isinstance(op, SourceOperator)]
        plan_projections(self.sources)
        self.ctx.checkpointing = checkpoint is not None
        self.checkpointer: Checkpointer | ClusterCheckpointer | None = \
            None if checkpoint is None else Checkpointer(name, self.order, checkpoint)
        self.restore_from = restore_from
        self.running = False
        self._exported: dict[str, tuple[int, int]] = {}
        self._queue: asyncio.Queue[Any] = asyncio.Queue()

    def _build(self, node: Node) -> Operator:
        op = self.operators.get(id(node))
        if op is not None:
            return op
        ups = [(self._build(up), side) for up, side in node.inputs]
        op = node.make(self.ctx)
        ch = self.channels
        if ch is not None and isinstance(op, SourceOperator):
            op.assign(ch.instance, ch.instances)
        self.operators[id(node)] = op
        for port, (up, side) in enumerate(ups):
            keys = None if ch is None else node.partition_of(port)
            if keys is None:
                up.connect(op, port, side)
                continue
            assert ch is not None
            xid = len(self.exchanges)
            send = ExchangeSend(f"{op.name}:in{port}.send", xid, keys, ch)
            recv = ExchangeInput(f"{op.name}:in{port}.exchange", xid, ch.instances)
            up.connect(send, 0, side)
            recv.connect(op, port)
            ch.register(xid)
            self.exchanges.append(recv)
            self.order += [send, recv]
        self.order.append(op)
        return op

    async def run(self) -> None:
        for op in self.order:
            op.open(self.ctx)
        ckpt = self.checkpointer
        if ckpt is not None:
            ckpt.restore(self.restore_from)
        self.running = True
        try:
            await self._loop(ckpt)
        except BaseException:
            if ckpt is not None:
                await ckpt.abandon()
            raise
        finally:
            self.running = False
            self._export_rows()
            for op in self.sinks:
                try:
                    op.release()  # type: ignore[attr-defined]
                except Exception:
                    log.exception("closing sink %s failed", op.name)

    async def _loop(self, ckpt: Checkpointer | ClusterCheckpointer | None) -> None:
        # Unbounded: what other instances send is never held back; a source takes one of
        # QUEUE_SIZE slots per item it queues (that is its backpressure).
        queue: asyncio.Queue[tuple[int, str, Any, Any, Any]] = self._queue
        slots = asyncio.Semaphore(QUEUE_SIZE)
        ch = self.channels
        exchanging = ch is not None and bool(self.exchanges)
        align: Alignment | None = None
        if ch is not None:
            ch.start(lambda xid, sender, kind, payload: queue.put_nowait(
                (-1, kind, (xid, sender), payload, None)))
            align = Alignment(upstream_inputs(self.order, self.sources, self.exchanges),
                              self.exchanges, ch.instances, ch.send_barrier)
        replay: collections.deque[tuple[int, str, Any, Any, Any]] = collections.deque()
        pumps = [asyncio.create_task(self._pump(i, s, queue, slots), name=f"{self.name}:{s.name}")
                 for i, s in enumerate(self.sources)]
        active = len(pumps) + (1 if exchanging else 0)
        last_tick = time.monotonic()
        try:
            while active:
                await self._wait_for_consumers()
                if replay:
                    item = replay.popleft()
                else:
                    try:
                        item = await asyncio.wait_for(queue.get(), self.tick_s)
                    except TimeoutError:
                        self._tick()
                        last_tick = time.monotonic()
                        if ckpt is not None:
                            ckpt.poll()
                        continue
                i, kind, part, payload, pos = item
                if align is not None:
                    if i == CONTROL:
                        self._controlled(kind, payload, align, ckpt)
                    elif align.hold(item):
                        continue
                    elif i < 0 and kind == "barrier":
                        align.barrier(part[0], part[1], payload)
                    elif i < 0:
                        if self._exchanged(kind, part, payload):
                            active -= 1
                        if kind == "watermark" and self.exchanges[part[0]].ended(part[1]):
                            align.sender_ended(part[0], part[1])
                    if align.complete:
                        epoch, held = align.release()
                        if isinstance(ckpt, ClusterCheckpointer):
                            ckpt.take(epoch)
                        replay.extend(held)
                    if i < 0:
                        continue
                slots.release()
                src = self.sources[i]
                if kind == "batch":
                    before = src.events
                    src.push(part, payload)
                    src.position = pos
                    self.ctx.record_events(src.events - before)
                elif kind == "end":
                    src.end()
                    active -= 1
                else:  # "error": the source failed
                    raise payload
                if time.monotonic() - last_tick >= self.tick_s:
                    self._tick()
                    last_tick = time.monotonic()
                if ckpt is not None:
                    ckpt.poll()
            for op in self.order:
                op.close()
            if ckpt is not None:
                await ckpt.final()
            if ch is not None and not await ch.drain(DRAIN_TIMEOUT_S):
                raise RuntimeError(f"job {self.name}: the other instances did not take this "
                                   f"one's last rows within {DRAIN_TIMEOUT_S:g} s")
        finally:
            for p in pumps:
                p.cancel()
            await asyncio.gather(*pumps, return_exceptions=True)
            for s in self.sources:
                try:
                    await s.source.aclose()
                except Exception:
                    log.exception("closing source %s failed", s.name)

    def control(self, kind: str, value: Any) -> None:
        """From the coordinator, on the job's loop: ``checkpoint`` (take checkpoint
        ``value``) or ``commit`` (checkpoint ``value`` is committed)."""
        self._queue.put_nowait((CONTROL, kind, None, value, None))

    @staticmethod
    def _controlled(kind: str, value: Any, align: Alignment, ckpt: Any) -> None:
        if not isinstance(ckpt, ClusterCheckpointer):
            return
        if kind == "checkpoint":
            align.inject(int(value))
        elif kind == "commit":
            ckpt.commit(int(value))

    def _exchanged(self, kind: str, where: tuple[int, int], payload: Any) -> bool:
        """One item another instance (or this one) sent through exchange ``where[0]``; True
        when it was the last that every exchange waited for."""
        xid, sender = where
        recv = self.exchanges[xid]
        if kind == "batch":
            recv.process(payload, sender)
            assert self.channels is not None
            self.channels.consumed(xid, sender)
        elif kind == "watermark":
            if recv.finished:
                return False
            recv.receive_watermark(payload, sender)
            return recv.finished and all(r.finished for r in self.exchanges)
        else:
            recv.receive_idle(payload, sender)
        return False

    async def _pump(self, i: int, src: SourceOperator, queue: asyncio.Queue,
                    slots: asyncio.Semaphore) -> None:
        try:
            source = src.source
            ch = self.channels
            async for part, payload in source.read():
                if ch is not None:
                    await ch.wait_writable()
                await slots.acquire()
                queue.put_nowait((i, "batch", part, payload, source.position()))
            await slots.acquire()
            queue.put_nowait((i, "end", None, None, None))
        except asyncio.CancelledError:
            raise
        except BaseException as exc:  # noqa: BLE001 - handed to the job loop
            queue.put_nowait((i, "error", None, exc, None))

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
        self._export_rows()
        for s in self.sources:
            for (topic, partition), lag in _lag(s).items():
                self.ctx.set_kafka_lag(topic, partition, lag)

    def _export_rows(self) -> None:
        """Rows in and out per operator, as Prometheus counters (the increase since the last)."""
        for op in self.order:
            last_in, last_out = self._exported.get(op.name, (0, 0))
            if op.rows_in != last_in or op.rows_out != last_out:
                self.ctx.record_rows(op.name, op.rows_in - last_in, op.rows_out - last_out)
                self._exported[op.name] = (op.rows_in, op.rows_out)

    def stats(self) -> dict[str, Any]:
        """What ``env.get_stats()`` shows of this job."""
        wms = [s.watermark for s in self.sources]
        return {
            "job": self.name, "running": self.running,
            "events": sum(s.events for s in self.sources),
            "late_events": self.ctx.late_events, "bad_records": self.ctx.bad_records,
            "watermark": min(wms) if wms else None,
            "sources": [{"name": s.name, "events": s.events, "watermark": s.watermark,
                         "lag": {f"{t}/{p}": n for (t, p), n in _lag(s).items()}}
                        for s in self.sources],
            "operators": [{"name": op.name, "kind": type(op).__name__, "records_in": op.rows_in,
                           "records_out": op.rows_out} for op in self.order],
            "checkpoints": None if self.checkpointer is None else self.checkpointer.stats.as_dict(),
        }


def _lag(src: SourceOperator) -> dict[tuple[str, int], int]:
    """A Kafka source's lag per (topic, partition); empty for other sources."""
    lag = getattr(src.source, "lag", None)
    return lag() if callable(lag) else {}
