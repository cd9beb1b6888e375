"""KafkaBatchSink: Arrow batches written to a topic, one message per row, at least once or exactly
once.

At least once (the default): :meth:`KafkaBatchSink.write` produces at once and :meth:`flush`
waits until the broker has every message, raising if any was not delivered; a replay after a
crash writes some rows again.

Exactly once: :meth:`write` only stages the rows (the caller saves :meth:`staged` in its
checkpoint); :meth:`commit` writes them in one Kafka transaction that also records the epoch (the
checkpoint's number) as the committed offset of a consumer group named after the transactional
id, so the rows and the epoch become visible together or not at all. After a crash,
:meth:`recover` reads that epoch back and commits the checkpoint's staged rows only if their
epoch never committed. Opening a sink with a transactional id fences every older producer with the
same id, so a process that lost its place (a zombie) can no longer commit.
"""

from __future__ import annotations

import logging
import time
from typing import Any, Self

import pyarrow as pa

from ..errors import ConfigError
from . import kafka_config as cfg
from .kafka_encode import json_values, key_values, raw_values
from .kafka_errors import KafkaConnectorError

try:
    from confluent_kafka import Consumer, KafkaError, KafkaException, Producer, TopicPartition
except ImportError as exc:  # pragma: no cover - depends on the installation
    raise ImportError(
        "the Kafka connectors need confluent-kafka: pip install 'sabot-engine[kafka]'") from exc

log = logging.getLogger(__name__)

#: Seconds one transactional or metadata request to the broker may take.
REQUEST_TIMEOUT_S = 30.0

_FENCED_CODES = {KafkaError._FENCED, KafkaError.PRODUCER_FENCED, KafkaError.INVALID_PRODUCER_EPOCH,
                 KafkaError.INVALID_PRODUCER_ID_MAPPING}


def epoch_group(transactional_id: str) -> str:
    """The consumer group whose committed offset on partition 0 of the sink's topic is the last
    epoch the sink with this transactional id committed."""
    return f"sabot-sink-epochs.{transactional_id}"


class KafkaBatchSink:
    """Rows of Arrow batches as messages of ``topic``; see the module's description and
    docs/kafka.md."""

    def __init__(
        self,
        topic: str,
        *,
        bootstrap_servers: str,
        key: str | None = None,
        format: str = "json",
        exactly_once: bool = False,
        transactional_id: str | None = None,
        config: dict[str, Any] | None = None,
    ) -> None:
        self.topic = cfg.check_topic(topic)
        self.bootstrap_servers = cfg.check_servers(bootstrap_servers)
        self.key = cfg.check_optional_name("key", key)
        self.format = cfg.check_choice("format", format, cfg.SINK_FORMATS)
        self.exactly_once = cfg.check_bool("exactly_once", exactly_once)
        self.transactional_id = cfg.check_optional_name("transactional_id", transactional_id)
        if self.exactly_once and self.transactional_id is None:
            raise ConfigError(
                "transactional_id", None,
                "a name with exactly_once=True: the same on every restart of this sink (so a "
                "restart can recover and fence the old producer) and used by no other sink")
        if not self.exactly_once and self.transactional_id is not None:
            raise ConfigError("transactional_id", transactional_id,
                              "None with exactly_once=False (a transactional id is for exactly once)")
        self._extra = cfg.check_extra(config, cfg.sink_owned(self.exactly_once), "producer")
        self._producer: Any = None
        self._marker: Any = None  # exactly once: the epoch group's consumer
        self._staged: list[pa.Table] = []
        self._in_transaction = False
        self._fenced = False
        self._last_epoch: int | None = None
        self._failed = 0
        self._first_failure: Any = None

    # -- life cycle -------------------------------------------------------------------------

    def open(self) -> None:
        """Connect; with exactly once, also fence older producers of the transactional id (and
        abort what they left open)."""
        if self._producer is not None:
            raise KafkaConnectorError("the sink is already open")
        settings = cfg.sink_settings(self.bootstrap_servers, self._extra, self.transactional_id)
        try:
            producer = Producer(settings)
        except KafkaException as exc:
            refusal = cfg.client_refusal(exc, self._extra)
            if refusal is not None:
                raise refusal from None
            raise KafkaConnectorError(f"could not create the Kafka producer: {exc}") from exc
        if self.exactly_once:
            assert self.transactional_id is not None
            try:
                producer.init_transactions(REQUEST_TIMEOUT_S)
                marker = Consumer({
                    "bootstrap.servers": self.bootstrap_servers,
                    "group.id": epoch_group(self.transactional_id),
                    "enable.auto.commit": False,
                    "isolation.level": "read_committed",
                })
            except KafkaException as exc:
                raise KafkaConnectorError(
                    f"could not start the transactions of {self.transactional_id!r} on "
                    f"{self.bootstrap_servers}: {exc}", code=_code(exc)) from exc
            self._marker = marker
        self._producer = producer

    def close(self) -> None:
        """At least once: flush (raising if a message was not delivered). Exactly once: rows
        staged since the last commit are dropped (they are in the caller's checkpoint)."""
        producer = self._producer
        if producer is None:
            return
        try:
            if not self.exactly_once:
                self.flush()
            elif self._in_transaction and not self._fenced:
                producer.abort_transaction(REQUEST_TIMEOUT_S)
        finally:
            self._producer = None
            self._staged = []
            self._in_transaction = False
            marker, self._marker = self._marker, None
            if marker is not None:
                marker.close()

    def __enter__(self) -> Self:
        if self._producer is None:
            self.open()
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- writing ----------------------------------------------------------------------------

    def write(self, batch: pa.RecordBatch | pa.Table) -> None:
        """At least once: produce the rows now. Exactly once: stage them for :meth:`commit`."""
        producer = self._open_producer()
        if not isinstance(batch, (pa.RecordBatch, pa.Table)):
            raise ConfigError("batch", type(batch).__name__, "a pyarrow RecordBatch or Table")
        if self.key is not None and self.key not in batch.schema.names:
            raise ConfigError("key", self.key,
                              "a column of the batch: " + ", ".join(batch.schema.names))
        if self.format == "raw" and "value" not in batch.schema.names:
            raise ConfigError("batch", batch.schema.names,
                              "a column named 'value' (binary or string) with format='raw'")
        if batch.num_rows == 0:
            return
        if self.exactly_once:
            table = batch if isinstance(batch, pa.Table) else pa.Table.from_batches([batch])
            self._staged.append(table)
            return
        self._raise_failures()
        values, keys = self._encode(batch)
        self._produce(producer, values, keys)
        producer.poll(0)

    def flush(self) -> None:
        """At least once: wait until every written row is delivered; raise a
        KafkaConnectorError naming how many were not and why. Exactly once: nothing to do (rows
        leave only in :meth:`commit`)."""
        producer = self._open_producer()
        if self.exactly_once:
            return
        while producer.flush(1.0) > 0:
            pass
        self._raise_failures()

    def staged(self) -> pa.Table | None:
        """Exactly once: the rows staged since the last commit (for the checkpoint), or None."""
        if not self._staged:
            return None
        if len(self._staged) == 1:
            return self._staged[0]
        return pa.concat_tables(self._staged, promote_options="default")

    def commit(self, epoch: int) -> None:
        """Exactly once: one transaction that writes the staged rows and records ``epoch`` as
        committed; the staging is cleared once it has committed (kept if it failed, so that
        commit can be called again). At least once: :meth:`flush`."""
        if isinstance(epoch, bool) or not isinstance(epoch, int) or epoch < 0:
            raise ConfigError("epoch", epoch, "an integer >= 0 (the checkpoint's number)")
        producer = self._open_producer()
        if not self.exactly_once:
            self.flush()
            return
        self._check_not_fenced()
        if self._last_epoch is not None and epoch <= self._last_epoch:
            raise KafkaConnectorError(
                f"epoch {epoch} is not after epoch {self._last_epoch}, the last this sink "
                "committed: epochs must grow")
        table = self.staged()
        values, keys = self._encode(table) if table is not None else ([], None)
        try:
            producer.begin_transaction()
            self._in_transaction = True
            self._produce(producer, values, keys)
            producer.send_offsets_to_transaction(
                [TopicPartition(self.topic, 0, epoch)], self._marker.consumer_group_metadata(),
                REQUEST_TIMEOUT_S)
            self._commit_transaction(producer)
        except KafkaException as exc:
            self._failed_transaction(producer, exc, epoch)
        except BaseException:
            if self._in_transaction:
                self._in_transaction = False
                producer.abort_transaction(REQUEST_TIMEOUT_S)
            raise
        self._in_transaction = False
        self._staged = []
        self._last_epoch = epoch

    def last_committed_epoch(self) -> int | None:
        """Exactly once: the last epoch committed under the transactional id (by this process
        or an earlier one), or None if none ever was. At least once: None."""
        if not self.exactly_once:
            return None
        self._open_producer()
        try:
            got = self._marker.committed([TopicPartition(self.topic, 0)], timeout=REQUEST_TIMEOUT_S)
        except KafkaException as exc:
            raise KafkaConnectorError(
                f"could not read the committed epoch of {self.transactional_id!r}: {exc}",
                code=_code(exc)) from exc
        tp = got[0]
        if tp.error is not None:
            raise KafkaConnectorError(
                f"could not read the committed epoch of {self.transactional_id!r}: {tp.error}")
        return tp.offset if tp.offset >= 0 else None

    def recover(self, epoch: int, staged: pa.Table | None) -> None:
        """After a restart, before any write: commit ``staged`` as ``epoch`` unless that epoch
        (or a later one) already committed — the crash came between the checkpoint and the
        Kafka commit. Calling it again does nothing more. At least once: nothing to do."""
        if isinstance(epoch, bool) or not isinstance(epoch, int) or epoch < 0:
            raise ConfigError("epoch", epoch, "an integer >= 0 (the checkpoint's number)")
        if staged is not None and not isinstance(staged, (pa.Table, pa.RecordBatch)):
            raise ConfigError("staged", type(staged).__name__, "a pyarrow Table or None")
        self._open_producer()
        if not self.exactly_once:
            return
        if self._staged:
            raise KafkaConnectorError("recover() must come before the first write() of the sink")
        last = self.last_committed_epoch()
        if last is not None and last >= epoch:
            self._last_epoch = last if self._last_epoch is None else max(last, self._last_epoch)
            return
        self._last_epoch = last
        if staged is not None and staged.num_rows:
            self._staged = [staged if isinstance(staged, pa.Table)
                            else pa.Table.from_batches([staged])]
        self.commit(epoch)

    def abort(self) -> None:
        """Exactly once: drop the staged rows (and abort a transaction left open). At least once:
        drop the messages not yet sent (those already sent stay written)."""
        producer = self._open_producer()
        if self.exactly_once:
            self._staged = []
            if self._in_transaction and not self._fenced:
                producer.abort_transaction(REQUEST_TIMEOUT_S)
            self._in_transaction = False
            return
        producer.purge(in_queue=True, in_flight=False, blocking=True)
        while producer.flush(1.0) > 0:
            pass
        self._failed, self._first_failure = 0, None

    # -- parts ------------------------------------------------------------------------------

    def _open_producer(self) -> Any:
        if self._producer is None:
            raise KafkaConnectorError("the sink is not open: call open() first")
        return self._producer

    def _encode(self, batch: pa.RecordBatch | pa.Table) -> tuple[list[bytes | None], list | None]:
        if self.format == "raw":
            values = raw_values(batch)
        else:
            values = json_values(batch).cast(pa.large_binary()).to_pylist()
        keys = key_values(batch, self.key) if self.key is not None else None
        return values, keys

    def _delivered(self, err: Any, msg: Any) -> None:
        if err is not None:
            self._failed += 1
            if self._first_failure is None:
                self._first_failure = err

    def _produce(self, producer: Any, values: list[bytes | None], keys: list | None) -> None:
        produce, topic, report = producer.produce, self.topic, self._delivered
        for i, value in enumerate(values):
            key = None if keys is None else keys[i]
            while True:
                try:
                    produce(topic, value, key, on_delivery=report)
                    break
                except BufferError:  # the client's queue is full: let it send
                    producer.poll(0.05)

    def _raise_failures(self) -> None:
        if not self._failed:
            return
        count, err = self._failed, self._first_failure
        self._failed, self._first_failure = 0, None
        raise KafkaConnectorError(
            f"{count} message(s) to topic {self.topic!r} were not delivered (the first: "
            f"{err.str()})", code=err.name())

    def _commit_transaction(self, producer: Any) -> None:
        for attempt in range(3):
            try:
                producer.commit_transaction(REQUEST_TIMEOUT_S)
                return
            except KafkaException as exc:
                err = exc.args[0]
                if attempt == 2 or not err.retriable():
                    raise
                log.warning("Kafka sink %s: commit of the transaction failed, retrying: %s",
                            self.transactional_id, err.str())
                time.sleep(0.1)

    def _check_not_fenced(self) -> None:
        if self._fenced:
            raise KafkaConnectorError(
                f"this sink's producer ({self.transactional_id!r}) was fenced by a newer one with "
                "the same transactional id; it can no longer write", fenced=True)

    def _failed_transaction(self, producer: Any, exc: KafkaException, epoch: int) -> None:
        err = exc.args[0]
        if err.fatal() or err.code() in _FENCED_CODES:
            self._fenced = True
            self._in_transaction = False
            raise KafkaConnectorError(
                f"the transaction of epoch {epoch} did not commit: this sink's producer "
                f"({self.transactional_id!r}) was fenced by a newer one with the same "
                f"transactional id ({err.str()})", code=err.name(), fenced=True) from exc
        try:
            producer.abort_transaction(REQUEST_TIMEOUT_S)
        except KafkaException as abort_exc:
            log.warning("Kafka sink %s: aborting the failed transaction failed too: %s",
                        self.transactional_id, abort_exc)
        self._in_transaction = False
        raise KafkaConnectorError(
            f"the transaction of epoch {epoch} to topic {self.topic!r} did not commit and was "
            f"aborted; the staged rows are kept, commit again ({err.str()})",
            code=err.name()) from exc


def _code(exc: BaseException) -> str | None:
    err: Any = exc.args[0] if exc.args else None
    return err.name() if callable(getattr(err, "name", None)) else None
