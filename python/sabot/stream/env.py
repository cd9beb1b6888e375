"""StreamEnv: where streams begin (sources) and jobs run."""

from __future__ import annotations

import asyncio
import itertools
import os
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import pyarrow as pa

from ..errors import ConfigError
from ..run_blocking import run_blocking
from .bad_records import POLICIES
from .checkpointer import CheckpointConfig
from .collection_source import DEFAULT_BATCH_SIZE, CollectionSource
from .durations import DurationLike, to_ms
from .event_time import check_unit
from .graph import Node
from .key_groups import DEFAULT_KEY_GROUPS, check_key_groups
from .runtime import Job
from .source import Source
from .stream import DataStream
from .watermarks import WatermarkStrategy


@dataclass(frozen=True)
class JobResult:
    """What a finished job reports."""

    name: str
    events: int
    late_events: int
    bad_records: int


class StreamEnv:
    """Builds and runs streaming jobs on this node.

    ``parallelism`` is the number of threads the native kernels (filters, projections, window
    aggregation) use per batch (default: the native pool, sized from the usable cores).

    With ``state_dir``, jobs take checkpoints there (every ``checkpoint_interval``, and one
    when a bounded job ends; the newest ``checkpoints_kept`` are kept) and a job started on a
    ``state_dir`` that holds one goes on from the newest complete checkpoint. Sinks that take
    part (``to_files``, ``to_kafka(exactly_once=True)``) are then exactly-once.

    With ``cluster="HOST:PORT"`` (the coordinator's HTTP address; ``cluster=True``:
    COORDINATOR_HOST and COORDINATOR_PORT) jobs run on the cluster's workers instead: one task
    per instance (``instances``, default one per alive worker), each reading its share of the
    sources' partitions, with the rows of every key sent to the one instance that owns it
    (``key_groups`` fixed groups of keys, cut into one range per instance). ``collect()`` gathers
    every instance's rows. With ``state_dir`` (a directory every worker reaches: a shared mount,
    or one host) each instance writes its part of every checkpoint there, the coordinator commits
    a checkpoint once all parts are written, and a pipeline whose worker is lost starts again
    from the last committed one on the workers alive (at most ``max_restarts`` times).
    """

    def __init__(self, parallelism: int | None = None, *, checkpoint_interval: DurationLike | None = None,
                 state_dir: str | None = None, checkpoints_kept: int = 3,
                 tick: DurationLike = "50ms", cluster: str | bool | None = None,
                 instances: int | None = None, key_groups: int = DEFAULT_KEY_GROUPS,
                 max_restarts: int = 3) -> None:
        if checkpoint_interval is not None and state_dir is None:
            raise ConfigError("checkpoint_interval", checkpoint_interval,
                              "a duration together with state_dir= (the directory checkpoints "
                              "are written to)")
        if state_dir is not None and (not isinstance(state_dir, (str, os.PathLike)) or not str(state_dir)):
            raise ConfigError("state_dir", state_dir, "a directory path")
        if isinstance(checkpoints_kept, bool) or not isinstance(checkpoints_kept, int) or checkpoints_kept < 1:
            raise ConfigError("checkpoints_kept", checkpoints_kept, "a positive integer")
        self.checkpoint: CheckpointConfig | None = None
        if state_dir is not None:
            interval = None if checkpoint_interval is None else to_ms(checkpoint_interval,
                                                                        "checkpoint_interval")
            self.checkpoint = CheckpointConfig(os.fspath(state_dir), interval, checkpoints_kept)
        self._current: Job | None = None
        if parallelism is not None and (isinstance(parallelism, bool) or not isinstance(parallelism, int)
                                        or parallelism < 1):
            raise ConfigError("parallelism", parallelism, "a positive integer or None")
        self.parallelism = parallelism
        self.threads = parallelism
        self.tick_ms = to_ms(tick, "tick")
        self._sinks: list[Node] = []
        self._names = itertools.count(1)
        self.last_result: JobResult | None = None
        self.cluster: tuple[str, int] | None = None
        if cluster is not None and cluster is not False:
            self.cluster = _cluster_address(cluster)
        if instances is not None and (isinstance(instances, bool) or not isinstance(instances, int)
                                      or instances < 1):
            raise ConfigError("instances", instances, "a positive integer or None (one per "
                              "alive worker)")
        if instances is not None and self.cluster is None:
            raise ConfigError("instances", instances, "instances= together with cluster=")
        self.instances = instances
        self.key_groups = check_key_groups(key_groups)
        if isinstance(max_restarts, bool) or not isinstance(max_restarts, int) or max_restarts < 0:
            raise ConfigError("max_restarts", max_restarts, "a non-negative integer")
        self.max_restarts = max_restarts
        #: The last job on the cluster: its pipeline's state as the coordinator reported it.
        self.cluster_info: dict[str, Any] = {}

    def __getstate__(self) -> dict[str, Any]:
        # A job's graph pickled for the cluster takes the env along (operators read its
        # settings); not its jobs, pending sinks or name counter.
        state = dict(self.__dict__)
        state.update(_current=None, _sinks=[], _names=None, last_result=None)
        return state

    def next_name(self, kind: str) -> str:
        return f"{kind}#{next(self._names)}"

    # -- sources --------------------------------------------------------------------------------
    def add_source(self, source: Source, *, timestamp: str | None, timestamp_unit: str,
                   watermark: WatermarkStrategy | None, bad_records: str) -> DataStream:
        """A stream from any :class:`~sabot.stream.source.Source` (the built-in sources use it)."""
        from .source_operator import SourceOperator

        check_unit(timestamp_unit)
        if bad_records not in POLICIES:
            raise ConfigError("bad_records", bad_records, " or ".join(POLICIES))
        if watermark is not None and not isinstance(watermark, WatermarkStrategy):
            raise ConfigError("watermark", watermark, "st.bounded_out_of_orderness(delay, idle_timeout=...)")
        if timestamp is not None and not isinstance(timestamp, str):
            raise ConfigError("timestamp", timestamp, "a column name")
        label = self.next_name(source.name)
        node = Node(label, lambda ctx: SourceOperator(label, source, timestamp, timestamp_unit,
                                                      watermark, bad_records), bounded=source.bounded)
        node.is_source = True  # type: ignore[attr-defined]
        return DataStream(self, node, timestamp, timestamp_unit)

    def from_collection(self, data: Any, *, timestamp: str | None = None, timestamp_unit: str = "ms",
                        watermark: WatermarkStrategy | None = None, schema: pa.Schema | None = None,
                        batch_size: int = DEFAULT_BATCH_SIZE, partitions: int = 1,
                        partition_by: str | None = None, bad_records: str = "fail") -> DataStream:
        """A bounded stream over ``data``: a list of dicts, a pyarrow Table or RecordBatch(es),
        or an iterable / async iterable of those. ``partitions`` deals batches round-robin to
        that many source partitions, ``partition_by`` names a column whose values are the
        partitions (each with its own watermark)."""
        src = CollectionSource(data, schema=schema, batch_size=batch_size, partitions=partitions,
                               partition_by=partition_by, name="from_collection")
        return self.add_source(src, timestamp=timestamp, timestamp_unit=timestamp_unit,
                               watermark=watermark, bad_records=bad_records)

    def from_files(self, pattern: str, *, format: str = "jsonl", follow: bool = False,
                   timestamp: str | None = None, timestamp_unit: str = "ms",
                   watermark: WatermarkStrategy | None = None, schema: pa.Schema | None = None,
                   poll: DurationLike = "100ms", batch_size: int = DEFAULT_BATCH_SIZE,
                   bad_records: str = "fail") -> DataStream:
        """Files matching the glob ``pattern`` (jsonl, csv or parquet), each file a partition;
        with ``follow=True`` new files are picked up as they appear (unbounded)."""
        from .file_source import FileSource

        src = FileSource(pattern, format, follow, schema, to_ms(poll, "poll"), batch_size)
        return self.add_source(src, timestamp=timestamp, timestamp_unit=timestamp_unit,
                               watermark=watermark, bad_records=bad_records)

    def from_socket(self, host: str, port: int, *, format: str = "jsonl",
                    timestamp: str | None = None, timestamp_unit: str = "ms",
                    watermark: WatermarkStrategy | None = None, schema: pa.Schema | None = None,
                    batch_size: int = 4096, linger: DurationLike = "50ms",
                    bad_records: str = "fail") -> DataStream:
        """Listen on host:port for TCP clients sending newline-delimited JSON records
        (unbounded)."""
        from .socket_source import SocketSource

        src = SocketSource(host, port, format, schema, batch_size, to_ms(linger, "linger"))
        return self.add_source(src, timestamp=timestamp, timestamp_unit=timestamp_unit,
                               watermark=watermark, bad_records=bad_records)

    def from_kafka(self, topics: str | list[str], *, bootstrap_servers: str,
                   group_id: str | None = None, format: str = "json",
                   schema: pa.Schema | None = None, start: str = "earliest",
                   until: str | None = None, timestamp: str | None = None,
                   timestamp_unit: str = "ms", watermark: WatermarkStrategy | None = None,
                   max_batch: int = 10_000, with_metadata: bool = False,
                   config: dict[str, Any] | None = None, bad_records: str = "fail") -> DataStream:
        """Kafka topics as a stream (see :mod:`.from_kafka`): ``format`` "json" (one object per
        message) or "raw" (the value bytes); ``start`` "earliest", "latest" or "committed" (the
        group's positions) where a checkpoint gives none; ``until="end"`` stops at the end
        offsets seen at the start (bounded). ``with_metadata`` adds ``_topic``, ``_partition``,
        ``_offset`` and ``_timestamp`` (the message time, ms: ``timestamp="_timestamp"``)."""
        from .from_kafka import KafkaSource

        src = KafkaSource(topics, {"bootstrap_servers": bootstrap_servers, "group_id": group_id,
                                   "format": format, "schema": schema, "start": start,
                                   "until": until, "max_batch": max_batch,
                                   "with_metadata": with_metadata, "config": config})
        return self.add_source(src, timestamp=timestamp, timestamp_unit=timestamp_unit,
                               watermark=watermark, bad_records=bad_records)

    def nexmark(self, events: int | None = 1_000_000, *, seed: int = 0, rate: int | None = None,
                batch_size: int = 65_536, partitions: int = 1) -> Any:
        """The Nexmark benchmark's event stream: ``.persons``, ``.auctions``, ``.bids``."""
        from .nexmark.source import NexmarkStreams

        return NexmarkStreams(self, events, seed, rate, batch_size, partitions)

    # -- running --------------------------------------------------------------------------------
    def add_sink(self, node: Node) -> None:
        self._sinks.append(node)

    def _job(self, name: str, extra: list[Node], restore_from: str | None = None) -> Job:
        sinks = self._sinks + extra
        if not sinks:
            raise ConfigError("execute()", "no sinks", "a pipeline ending in a sink: collect(), "
                              "to_callable(), print(), discard(), to_files() or to_kafka()")
        if restore_from is not None and self.checkpoint is None:
            raise ConfigError("restore_from", restore_from,
                              "a savepoint path together with StreamEnv(state_dir=...)")
        self._sinks = []
        if self.cluster is not None:
            if restore_from is not None:
                raise ConfigError("restore_from", restore_from, "no savepoint with cluster= "
                                  "(checkpoints of a job on the cluster are not built yet)")
            return _ClusterJob(name, sinks)  # type: ignore[return-value]
        return Job(name, sinks, self.threads, self.tick_ms, self.checkpoint, restore_from)

    def cluster_checkpoint(self) -> dict[str, Any] | None:
        """The checkpoint settings a pipeline on the cluster gets (None: no checkpoints)."""
        ck = self.checkpoint
        return None if ck is None else {
            "state_dir": os.path.abspath(ck.state_dir), "interval_ms": ck.interval_ms,
            "keep": ck.keep}

    def cluster_graph(self, name: str, collect: DataStream | None = None
                      ) -> tuple[bytes, str | None]:
        """The job of this env's sinks (and a collecting sink after ``collect``), cloudpickled
        for the cluster's tasks; and that sink's label."""
        import cloudpickle

        from .sinks import CollectSink

        extra: list[Node] = []
        label = None
        if collect is not None:
            label = self.next_name("collect")
            extra.append(Node(label, lambda ctx, _l=label: CollectSink(_l), [(collect.node, None)]))
        sinks = self._sinks + extra
        if not sinks:
            raise ConfigError("pipeline", name, "a pipeline that returns a stream or ends in "
                              "a sink")
        self._sinks = []
        return cloudpickle.dumps((name, sinks, self.threads, self.tick_ms), protocol=5), label

    async def _run_on_cluster(self, job: _ClusterJob) -> JobResult:
        from .cluster_run import ClusterRun

        assert self.cluster is not None
        checkpoint = self.cluster_checkpoint()
        run = ClusterRun(self.cluster, instances=self.instances or 0,
                         key_groups=self.key_groups, checkpoint=checkpoint,
                         max_restarts=self.max_restarts)
        try:
            job.tables = await run.run(job.name, job.sinks, self.threads, self.tick_ms)
        finally:
            self.cluster_info = run.info
        tasks = run.info.get("tasks", [])
        stats = [t.get("stats", {}) for t in tasks]
        res = JobResult(job.name, sum(int(s.get("events", 0)) for s in stats),
                        sum(int(s.get("late_events", 0)) for s in stats),
                        sum(int(s.get("bad_records", 0)) for s in stats))
        self.last_result = res
        return res

    async def execute_async(self, name: str = "job", *, restore_from: str | None = None) -> JobResult:
        """Run every pipeline that ends in a sink; returns when all sources ended. With
        ``restore_from`` (a savepoint directory) the job starts from that savepoint."""
        return await self._run(self._job(name, [], restore_from))

    async def _run(self, job: Job | _ClusterJob) -> JobResult:
        if isinstance(job, _ClusterJob):
            return await self._run_on_cluster(job)
        self._current = job
        await job.run()
        res = JobResult(job.name, sum(s.events for s in job.sources), job.ctx.late_events,
                        job.ctx.bad_records)
        self.last_result = res
        return res

    def execute(self, name: str = "job", *, restore_from: str | None = None) -> JobResult:
        """``execute_async`` for callers without an event loop (blocks until the job ends)."""
        return run_blocking(lambda: self.execute_async(name, restore_from=restore_from),
                            "sabot-stream-job")

    async def savepoint_async(self, path: str) -> str:
        """Take a checkpoint of the running job into the directory ``path`` (besides the
        regular ones) and commit its sinks; returns the savepoint's directory, which
        ``execute(restore_from=...)`` takes. Call it from the job's event loop."""
        job = self._current
        if job is None or not job.running or job.checkpointer is None:
            raise ConfigError("savepoint()", "no running job with checkpoints",
                              "a job started by execute_async() on a StreamEnv(state_dir=...)")
        return await job.checkpointer.request_savepoint(os.fspath(path))

    def get_stats(self) -> dict[str, Any]:
        """The current (or last) job: events, watermark, records in and out per operator,
        checkpoints (count, last duration, size and time, restores)."""
        return {} if self._current is None else self._current.stats()

    def run_collect(self, node: Node) -> pa.Table:
        return run_blocking(lambda: self.run_collect_async(node), "sabot-stream-job")

    async def run_collect_async(self, node: Node) -> pa.Table:
        from .sinks import CollectSink

        label = self.next_name("collect")
        holder: dict[str, CollectSink] = {}

        def make(ctx: Any) -> CollectSink:
            holder["sink"] = CollectSink(label)
            return holder["sink"]

        job = self._job("collect", [Node(label, make, [(node, None)])])
        await self._run(job)
        if isinstance(job, _ClusterJob):
            return job.tables.get(label, pa.table({}))
        return holder["sink"].table()

    def iterate(self, node: Node) -> AsyncIterator[pa.RecordBatch]:
        return _Iterate(self, node)


class _Iterate:
    """``collect()`` of an unbounded stream: the job runs while the consumer iterates and stops
    when it stops."""

    def __init__(self, env: StreamEnv, node: Node) -> None:
        self.env = env
        self.node = node
        self.queue: asyncio.Queue[Any] = asyncio.Queue()
        self.task: asyncio.Task[Any] | None = None

    def __aiter__(self) -> _Iterate:
        return self

    async def __anext__(self) -> pa.RecordBatch:
        from .sinks import CollectSink

        if self.task is None:
            if self.env.cluster is not None:
                raise ConfigError("collect()", "an unbounded stream on the cluster",
                                  "a bounded stream (its rows come back when the job ends), "
                                  "or a sink that writes (to_files, to_kafka)")
            label = self.env.next_name("collect")
            job = self.env._job("collect", [Node(label, lambda ctx: CollectSink(label, self.queue),
                                                 [(self.node, None)])])
            self.task = asyncio.ensure_future(self._runjob(job))
        item = await self.queue.get()
        if item is _END:
            raise StopAsyncIteration
        if isinstance(item, BaseException):
            raise item
        return item

    async def _runjob(self, job: Job) -> None:
        try:
            await self.env._run(job)
            self.queue.put_nowait(_END)
        except asyncio.CancelledError:
            raise
        except BaseException as exc:  # noqa: BLE001 - handed to the consumer
            self.queue.put_nowait(exc)

    async def __aenter__(self) -> _Iterate:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        """Stop the job (breaking out of ``async for`` alone leaves it to the garbage collector)."""
        if self.task is not None and not self.task.done():
            self.task.cancel()
            try:
                await self.task
            except asyncio.CancelledError:
                pass

    def __del__(self) -> None:
        if self.task is not None and not self.task.done():
            self.task.cancel()


_END = object()


class _ClusterJob:
    """A job to run on the cluster: its name and sinks (and, once done, the collected rows)."""

    def __init__(self, name: str, sinks: list[Node]) -> None:
        self.name = name
        self.sinks = sinks
        self.tables: dict[str, pa.Table] = {}


def _cluster_address(cluster: str | bool) -> tuple[str, int]:
    from ..config import load_config
    from .cluster_run import parse_address

    if cluster is True:
        cfg = load_config()
        return cfg.coordinator_host, cfg.coordinator_port
    return parse_address(cluster)  # type: ignore[arg-type]
