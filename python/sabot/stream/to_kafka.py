"""``to_kafka``: a sink writing rows as Kafka messages, on :class:`sabot.connectors.KafkaBatchSink`.

At least once (the default): rows are produced as they come, and every checkpoint waits until
the broker acknowledged all of them, so after a restore nothing before the checkpoint is
missing (rows after it may be written twice). Exactly once (``exactly_once=True``, which needs
checkpoints): the rows of each checkpoint epoch are set aside (and saved in the checkpoint) and
written in one Kafka transaction once that checkpoint is durable; the transaction also records
the epoch, so after a crash between the checkpoint and the commit the restored job commits the
saved rows, and never twice. Readers with ``isolation.level=read_committed`` see each row once,
a checkpoint interval after it was produced.
"""

from __future__ import annotations

from typing import Any

import pyarrow as pa

from .chunk import Chunk
from .sinks import Sink


class KafkaSink(Sink):
    state_attrs = ("pending",)

    def __init__(self, name: str, topic: str, options: dict[str, Any]) -> None:
        super().__init__(name)
        self.topic = topic
        self.options = dict(options)
        self.exactly_once = bool(options.get("exactly_once"))
        self.writer: Any = None
        self.staged: list[pa.RecordBatch] = []  # this epoch's rows (exactly once)
        self.pending: dict[int, pa.Table] = {}  # epoch -> rows waiting for its commit

    def open(self, ctx: Any) -> None:
        from ..connectors import KafkaBatchSink

        super().open(ctx)
        options = dict(self.options)
        instance = getattr(ctx, "instance", None)
        if self.exactly_once and options.get("transactional_id") is None:
            # stable across restarts of the same job: its name and this sink's place in it
            # (and on a cluster the instance: each has transactions of its own)
            options["transactional_id"] = f"sabot-{ctx.job}-{self.name}".replace("#", "-")
        if self.exactly_once and instance is not None:
            options["transactional_id"] = f"{options['transactional_id']}-i{instance}"
        self.writer = KafkaBatchSink(self.topic, **options)
        self.writer.open()

    def process(self, chunk: Chunk, port: int) -> None:
        if self.exactly_once:
            self.staged.append(chunk.batch)
        else:
            self.writer.write(chunk.batch)

    def prepare(self, epoch: int) -> None:
        if not self.exactly_once:
            self.writer.flush()
            return
        if self.staged:
            self.pending[epoch] = pa.Table.from_batches(self.staged) if all(
                b.schema == self.staged[0].schema for b in self.staged) else pa.concat_tables(
                [pa.Table.from_batches([b]) for b in self.staged], promote_options="permissive")
            self.staged = []

    def commit(self, epoch: int) -> None:
        if not self.exactly_once:
            return
        for e in sorted(e for e in self.pending if e <= epoch):
            self.writer.write(self.pending.pop(e))
            self.writer.commit(e)

    def recover(self, epoch: int) -> None:
        if self.exactly_once:
            self.writer.recover(epoch, self.pending.pop(epoch, None))
            self.pending = {e: t for e, t in self.pending.items() if e > epoch}

    def close(self) -> None:
        if not self.exactly_once:
            self.writer.flush()

    def release(self) -> None:
        if self.writer is not None:
            self.writer.close()
