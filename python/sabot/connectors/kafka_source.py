"""KafkaBatchSource: the partitions of some topics read in batches, decoded into Arrow.

The source assigns itself every partition of its topics (no group rebalancing) at the offsets it
is told (a checkpoint's positions) or from ``start``; it never auto-commits, so where it stands is
what :meth:`KafkaBatchSource.positions` says and what a checkpoint saves. Each :meth:`poll`
takes up to ``max_batch`` messages and returns one :class:`PartitionBatch` per partition that had
any: the decoded records, the messages that could not be decoded, and the partition's next offset.
"""

from __future__ import annotations

import bisect
import logging
import time
import uuid
from dataclasses import dataclass, field
from typing import Any, Self

import pyarrow as pa
import pyarrow.compute as pc

from ..errors import ConfigError
from . import kafka_config as cfg
from .kafka_decode import BadMessage, decode_json, decode_raw
from .kafka_errors import KafkaConnectorError

try:
    from confluent_kafka import Consumer, KafkaError, KafkaException, TopicPartition
except ImportError as exc:  # pragma: no cover - depends on the installation
    raise ImportError(
        "the Kafka connectors need confluent-kafka: pip install 'sabot-engine[kafka]'") from exc

log = logging.getLogger(__name__)

#: Seconds a metadata, watermark or commit request to the broker may take.
REQUEST_TIMEOUT_S = 30.0

Partition = tuple[str, int]


@dataclass(frozen=True)
class PartitionBatch:
    """What one poll read from one partition: ``batch`` holds the decoded records in offset order
    (None when every message was bad, or none was kept), ``bad`` the messages that could not be
    decoded, ``next_offset`` the offset the partition's next message will have."""

    topic: str
    partition: int
    batch: pa.RecordBatch | None
    bad: list[BadMessage]
    next_offset: int


@dataclass
class _Read:
    values: list[bytes | None] = field(default_factory=list)
    offsets: list[int] = field(default_factory=list)
    timestamps: list[int] = field(default_factory=list)
    keys: list[bytes | None] = field(default_factory=list)


class KafkaBatchSource:
    """A bounded or unbounded read of the partitions of ``topics``; see the module's description
    and docs/kafka.md."""

    def __init__(
        self,
        topics: str | list[str],
        *,
        bootstrap_servers: str,
        group_id: str | None = None,
        format: str = "json",
        schema: pa.Schema | None = None,
        start: str = "earliest",
        until: str | None = None,
        max_batch: int = 10_000,
        poll_timeout: float = 0.1,
        with_metadata: bool = False,
        config: dict[str, Any] | None = None,
    ) -> None:
        self.topics = cfg.check_topics(topics)
        self.bootstrap_servers = cfg.check_servers(bootstrap_servers)
        self.group_id = cfg.check_optional_name("group_id", group_id)
        self.format = cfg.check_choice("format", format, cfg.SOURCE_FORMATS)
        self.schema = cfg.check_schema(schema, self.format)
        self.start = cfg.check_choice("start", start, cfg.STARTS)
        self.until = cfg.check_choice("until", until, cfg.UNTILS)
        self.max_batch = cfg.check_positive_int("max_batch", max_batch)
        self.poll_timeout = cfg.check_timeout("poll_timeout", poll_timeout)
        self.with_metadata = cfg.check_bool("with_metadata", with_metadata)
        cfg.check_metadata_names(self.schema, self.with_metadata)
        self._extra = cfg.check_extra(config, cfg.source_owned(), "consumer")
        if self.start == "committed" and self.group_id is None:
            raise ConfigError("group_id", None,
                              "a consumer group name with start='committed' (whose positions to use)")
        self._consumer: Any = None
        #: (i, n): read only the partitions whose index (in (topic, partition) order) is i
        #: modulo n: instance i of a pipeline's n on a cluster (explicit assignment).
        self.share: tuple[int, int] | None = None
        self._partitions: list[Partition] = []
        self._positions: dict[Partition, int] = {}
        self._ends: dict[Partition, int] = {}  # until="end": where each partition stops
        self._end_known: set[Partition] = set()  # ends raised to a fetch's high watermark
        self._done: set[Partition] = set()
        self._warned: dict[int, float] = {}

    # -- life cycle -------------------------------------------------------------------------

    def open(self, offsets: dict[Partition, int] | None = None) -> None:
        """Assign every partition of the topics: at ``offsets[(topic, partition)]`` (the next
        offset to read) where given, else where ``start`` says."""
        if self._consumer is not None:
            raise KafkaConnectorError("the source is already open")
        wanted = self._check_offsets(offsets)
        group = self.group_id or f"sabot-source-{uuid.uuid4().hex}"
        settings = cfg.source_settings(self.bootstrap_servers, group, self._extra)
        try:
            consumer = Consumer(settings)
        except KafkaException as exc:
            refusal = cfg.client_refusal(exc, self._extra)
            if refusal is not None:
                raise refusal from None
            raise KafkaConnectorError(f"could not create the Kafka consumer: {exc}") from exc
        try:
            self._assign(consumer, wanted)
        except BaseException:
            consumer.close()
            raise
        self._consumer = consumer

    def close(self) -> None:
        consumer, self._consumer = self._consumer, None
        if consumer is not None:
            consumer.close()

    def __enter__(self) -> Self:
        if self._consumer is None:
            self.open()
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- reading ----------------------------------------------------------------------------

    def poll(self) -> list[PartitionBatch]:
        """The messages that arrived within ``poll_timeout`` seconds (at most ``max_batch``),
        one PartitionBatch per partition that had any, in the order the partitions came."""
        consumer = self._open_consumer()
        if self.finished:
            return []
        messages = consumer.consume(num_messages=self.max_batch, timeout=self.poll_timeout)
        reads: dict[Partition, _Read] = {}
        ends_seen: dict[Partition, int] = {}
        meta = self.with_metadata
        for m in messages:
            err = m.error()
            if err is not None:
                if err.code() == KafkaError._PARTITION_EOF:
                    ends_seen[(m.topic(), m.partition())] = m.offset()
                else:
                    self._on_error(err)
                continue
            where = (m.topic(), m.partition())
            read = reads.get(where)
            if read is None:
                read = reads[where] = _Read()
            read.values.append(m.value())
            read.offsets.append(m.offset())
            if meta:
                read.timestamps.append(m.timestamp()[1])
                read.keys.append(m.key())
        out = []
        for where, read in reads.items():
            batch = self._batch(where, read)
            if batch is not None:
                out.append(batch)
        for where, offset in ends_seen.items():
            self._fix_end(where)
            self._positions[where] = max(self._positions[where], offset)
            self._check_done(where)
        return out

    @property
    def finished(self) -> bool:
        """True once ``until="end"`` and every partition has reached its end offset."""
        if self.until != "end":
            return False
        if not self._partitions:  # (an opened share of no partition has nothing to read)
            return self.share is not None and self._consumer is not None
        return len(self._done) == len(self._partitions)

    def positions(self) -> dict[Partition, int]:
        """The next offset to read of each assigned partition (what a checkpoint saves)."""
        return dict(self._positions)

    def lag(self) -> dict[Partition, int]:
        """Messages behind each partition's high watermark (from the last fetch; asked of the
        broker for a partition not fetched yet)."""
        consumer = self._open_consumer()
        out = {}
        for where in self._partitions:
            tp = TopicPartition(*where)
            _, high = consumer.get_watermark_offsets(tp, cached=True)
            if high is None or high < 0:
                _, high = self._watermarks(consumer, tp)
            out[where] = max(0, high - self._positions[where])
        return out

    def commit_positions(self) -> None:
        """Commit the positions to the consumer group (what ``start="committed"`` reads);
        synchronous. Checkpoints do not need this: it is for other readers of the group."""
        consumer = self._open_consumer()
        if self.group_id is None:
            raise ConfigError("group_id", None, "a consumer group name to commit the positions to")
        offsets = [TopicPartition(t, p, o) for (t, p), o in self._positions.items()]
        try:
            result = consumer.commit(offsets=offsets, asynchronous=False)
        except KafkaException as exc:
            raise KafkaConnectorError(
                f"committing the positions of group {self.group_id!r} failed: {exc}",
                code=_code(exc)) from exc
        failed = [tp for tp in result or [] if tp.error is not None]
        if failed:
            raise KafkaConnectorError(
                f"committing the positions of group {self.group_id!r} failed for "
                + ", ".join(f"{tp.topic}[{tp.partition}]: {tp.error}" for tp in failed))

    # -- parts ------------------------------------------------------------------------------

    def _open_consumer(self) -> Any:
        if self._consumer is None:
            raise KafkaConnectorError("the source is not open: call open() first")
        return self._consumer

    def _check_offsets(self, offsets: Any) -> dict[Partition, int]:
        if offsets is None:
            return {}
        if not isinstance(offsets, dict):
            raise ConfigError("offsets", offsets, "None or a dict of (topic, partition) -> next offset")
        out = {}
        for where, offset in offsets.items():
            if (not isinstance(where, tuple) or len(where) != 2 or where[0] not in self.topics
                    or isinstance(where[1], bool) or not isinstance(where[1], int)):
                raise ConfigError("offsets", where,
                                  f"keys (topic, partition) with a topic of {self.topics}")
            if isinstance(offset, bool) or not isinstance(offset, int) or offset < 0:
                raise ConfigError(f"offsets[{where!r}]", offset, "an offset (an integer >= 0)")
            out[where] = offset
        return out

    def _assign(self, consumer: Any, wanted: dict[Partition, int]) -> None:
        partitions = []
        for topic in self.topics:
            try:
                meta = consumer.list_topics(topic, timeout=REQUEST_TIMEOUT_S)
            except KafkaException as exc:
                raise KafkaConnectorError(
                    f"could not read the metadata of topic {topic!r} from {self.bootstrap_servers}:"
                    f" {exc}", code=_code(exc)) from exc
            info = meta.topics.get(topic)
            if info is None or info.error is not None or not info.partitions:
                why = info.error if info is not None and info.error is not None else "no partitions"
                raise KafkaConnectorError(
                    f"topic {topic!r} cannot be read from {self.bootstrap_servers}: {why}",
                    code=getattr(why, "name", lambda: None)())
            partitions += [(topic, p) for p in sorted(info.partitions)]
        if self.share is not None:
            i, n = self.share
            mine = {w for k, w in enumerate(sorted(partitions)) if k % n == i}
            partitions = [w for w in partitions if w in mine]
        unknown = sorted(set(wanted) - set(partitions))
        if unknown:
            raise ConfigError("offsets", unknown, f"partitions of the topics: {partitions}")
        committed: dict[Partition, int] = {}
        if self.start == "committed":
            try:
                got = consumer.committed([TopicPartition(*w) for w in partitions],
                                         timeout=REQUEST_TIMEOUT_S)
            except KafkaException as exc:
                raise KafkaConnectorError(
                    f"could not read the committed positions of group {self.group_id!r}: {exc}",
                    code=_code(exc)) from exc
            committed = {(tp.topic, tp.partition): tp.offset for tp in got if tp.offset >= 0}
        assignment = []
        for where in partitions:
            low, high = self._watermarks(consumer, TopicPartition(*where))
            if where in wanted:
                position = wanted[where]
            elif self.start == "latest":
                position = high
            elif self.start == "committed" and where in committed:
                position = committed[where]
            else:
                position = low
            self._positions[where] = position
            self._ends[where] = high
            assignment.append(TopicPartition(where[0], where[1], position))
        self._partitions = partitions
        if assignment:
            consumer.assign(assignment)

    def _watermarks(self, consumer: Any, tp: Any) -> tuple[int, int]:
        try:
            low, high = consumer.get_watermark_offsets(tp, timeout=REQUEST_TIMEOUT_S)
        except KafkaException as exc:
            raise KafkaConnectorError(
                f"could not read the offsets of {tp.topic}[{tp.partition}]: {exc}",
                code=_code(exc)) from exc
        return low, high

    def _fix_end(self, where: Partition) -> None:
        """until="end": the end seen at open(), raised to the high watermark of the partition's
        first fetch (brokers such as Tansu answer the offset query below the true end)."""
        if self.until != "end" or where in self._end_known:
            return
        _, high = self._consumer.get_watermark_offsets(TopicPartition(*where), cached=True)
        if high is not None and high > self._ends[where]:
            self._ends[where] = high
        self._end_known.add(where)

    def _check_done(self, where: Partition) -> None:
        if (self.until == "end" and where in self._end_known and where not in self._done
                and self._positions[where] >= self._ends[where]):
            self._done.add(where)
            self._consumer.pause([TopicPartition(*where)])

    def _batch(self, where: Partition, read: _Read) -> PartitionBatch | None:
        topic, partition = where
        if where in self._done:
            return None
        if self.until == "end":
            self._fix_end(where)
            end = self._ends[where]
            if read.offsets[-1] >= end:
                cut = bisect.bisect_left(read.offsets, end)
                for column in (read.values, read.offsets, read.timestamps, read.keys):
                    del column[cut:]
        if not read.offsets:
            self._positions[where] = max(self._positions[where], self._ends[where])
            self._check_done(where)
            return None
        self._positions[where] = read.offsets[-1] + 1
        if self.format == "raw":
            table, rows, bad = decode_raw(read.values), None, []
        else:
            decoded = decode_json(read.values, self.schema)
            table, rows, bad = decoded.table, decoded.rows, decoded.bad
        if table is not None and self.with_metadata:
            table = _with_metadata(table, topic, partition, read, rows)
        bad_messages = [BadMessage(topic, partition, read.offsets[i], read.values[i], reason)
                        for i, reason in bad]
        self._check_done(where)
        return PartitionBatch(topic, partition, _record_batch(table), bad_messages,
                              self._positions[where])

    def _on_error(self, err: Any) -> None:
        if err.fatal() or err.code() in (
            KafkaError.UNKNOWN_TOPIC_OR_PART, KafkaError.TOPIC_AUTHORIZATION_FAILED,
            KafkaError.GROUP_AUTHORIZATION_FAILED, KafkaError._UNKNOWN_PARTITION,
        ):
            raise KafkaConnectorError(f"reading {', '.join(self.topics)} failed: {err.str()}",
                                      code=err.name())
        now = time.monotonic()
        if now - self._warned.get(err.code(), -1e9) >= 30.0:
            self._warned[err.code()] = now
            log.warning("Kafka source (%s): %s (the client retries)", ", ".join(self.topics),
                        err.str())


def _code(exc: BaseException) -> str | None:
    err: Any = exc.args[0] if exc.args else None
    return err.name() if callable(getattr(err, "name", None)) else None


def _with_metadata(
    table: pa.Table, topic: str, partition: int, read: _Read, rows: list[int] | None
) -> pa.Table:
    offsets = pa.array(read.offsets, pa.int64())
    times = pa.array(read.timestamps, pa.int64())
    keys = pa.array(read.keys, pa.binary())
    if rows is not None:
        index = pa.array(rows, pa.int64())
        offsets, times, keys = offsets.take(index), times.take(index), keys.take(index)
    times = pc.if_else(pc.less(times, 0), pa.scalar(None, pa.int64()), times)
    n = table.num_rows
    for name in cfg.METADATA_COLUMNS:
        if name in table.column_names:
            table = table.drop_columns([name])
    table = table.append_column("_topic", pa.repeat(pa.scalar(topic, pa.string()), n))
    table = table.append_column("_partition", pa.repeat(pa.scalar(partition, pa.int32()), n))
    table = table.append_column("_offset", offsets)
    table = table.append_column("_timestamp", times.cast(pa.timestamp("ms", "UTC")))
    return table.append_column("_key", keys)


def _record_batch(table: pa.Table | None) -> pa.RecordBatch | None:
    if table is None or table.num_rows == 0:
        return None
    table = table.combine_chunks()
    if table.num_columns == 0:
        return pa.RecordBatch.from_struct_array(pa.array([{}] * table.num_rows, pa.struct([])))
    return table.to_batches()[0]
