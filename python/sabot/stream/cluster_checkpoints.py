"""Checkpoints of a distributed job: each instance's part, in a directory all workers reach.

Checkpoint ``n`` of a pipeline is the set of its instances' parts: instance i of N writes its
operators' state (keyed state of its key groups, source positions of its partitions, its sinks'
pending output) to ``<state_dir>/<job>/instance-<i>-of-<N>/chk-<n>`` (the single-node format,
:mod:`.checkpoint_store`), once its barriers are aligned (:mod:`.barriers`), and reports it. The
coordinator commits ``n`` when every instance reported it and says so; only then do the sinks
commit that epoch (exactly-once sinks make its output visible). ``state_dir`` must be one
directory for every worker (a shared mount, or one host): a task restarted on another worker
reads the part its instance wrote before. A restart restores the committed checkpoint and
removes parts of later, uncommitted ones.
"""

from __future__ import annotations

import asyncio
import logging
import os
import shutil
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from ..errors import CheckpointError
from ..metrics import get_metrics
from . import checkpoint_store as store
from .checkpointer import CheckpointStats, capture_states, job_folder, shape
from .operator import Operator
from .rescale import Ownership
from .sinks import Sink

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class ClusterCheckpointConfig:
    state_dir: str
    interval_ms: int | None
    keep: int = 3

    def as_dict(self) -> dict[str, Any]:
        return {"state_dir": self.state_dir, "interval_ms": self.interval_ms, "keep": self.keep}

    @staticmethod
    def from_dict(d: dict[str, Any]) -> ClusterCheckpointConfig:
        return ClusterCheckpointConfig(str(d["state_dir"]), d.get("interval_ms"),
                                       int(d.get("keep", 3)))


def part_dir(state_dir: str, job: str, instance: int, instances: int) -> str:
    return os.path.join(state_dir, job_folder(job), f"instance-{instance}-of-{instances}")


class ClusterCheckpointer:
    """One instance's side of its job's checkpoints."""

    def __init__(self, job: str, order: list[Operator], config: ClusterCheckpointConfig,
                 instance: int, instances: int, report: Callable[[dict[str, Any]], None],
                 key_groups: int = 128, restore_instances: int | None = None) -> None:
        self.job = job
        self.order = order
        self.config = config
        self.sinks = [op for op in order if isinstance(op, Sink)]
        self.fingerprint, self.description = shape(order)
        self.dir = part_dir(config.state_dir, job, instance, instances)
        self.instance = instance
        self.instances = instances
        self.key_groups = key_groups
        #: How many instances wrote the checkpoint to restore (another number: rescaled).
        self.restore_instances = restore_instances or instances
        self._report = report
        self.stats = CheckpointStats()
        self._metrics = get_metrics()
        self._writes: set[asyncio.Future[Any]] = set()
        self.epoch = 0

    # -- restoring ------------------------------------------------------------------------------
    def restore(self, epoch: int | None) -> int | None:
        """Restore the committed checkpoint ``epoch`` (None or 0: start empty); parts of later
        checkpoints (never committed) are removed."""
        os.makedirs(self.dir, exist_ok=True)
        for e, path in store.complete(self.dir):
            if not epoch or e > epoch:
                shutil.rmtree(path, ignore_errors=True)
        if not epoch:
            return None
        if self.restore_instances != self.instances:
            return self._restore_rescaled(epoch)
        states = self._part(epoch, self.instance, self.instances)
        for op in self.order:
            op.restore(states[op.name])
        for sink in self.sinks:
            sink.recover(epoch)
        self.epoch = epoch
        self.stats.restores += 1
        self.stats.restored_from = path
        self._metrics.record_stream_restore(self.job)
        log.info("job %s instance %d restored checkpoint %d from %s", self.job, self.instance,
                 epoch, path)
        return epoch

    def _part(self, epoch: int, instance: int, instances: int) -> dict[str, Any]:
        """The operators' states in instance ``instance`` of ``instances``'s part of
        checkpoint ``epoch``."""
        path = os.path.join(part_dir(self.config.state_dir, self.job, instance, instances),
                            f"{store.PREFIX}{epoch:08d}")
        if not os.path.isdir(path):
            raise CheckpointError(f"checkpoint {epoch} of job {self.job!r} has no part of "
                                  f"instance {instance} of {instances} under {path}: is "
                                  "state_dir one directory for every worker?")
        loaded = store.load(path)
        if loaded.meta.get("shape") != self.fingerprint:
            raise CheckpointError(f"{path} was written by a pipeline of another shape; run the "
                                  "pipeline that wrote it, or give it another state_dir")
        return loaded.states

    def _restore_rescaled(self, epoch: int) -> int:
        """Checkpoint ``epoch`` was written by ``restore_instances`` instances: every operator
        gets a state cut from all their parts (:mod:`.rescale`)."""
        old = self.restore_instances
        parts = [self._part(epoch, j, old) for j in range(old)]
        own = Ownership(self.instance, self.instances, self.key_groups)
        for op in self.order:
            op.restore(op.rescale([p[op.name] for p in parts], own))
        for sink in self.sinks:
            sink.recover(epoch)
        self.epoch = epoch
        self.stats.restores += 1
        self.stats.restored_from = f"checkpoint {epoch} of {old} instances"
        self._metrics.record_stream_restore(self.job)
        log.info("job %s instance %d of %d restored checkpoint %d of %d instances", self.job,
                 self.instance, self.instances, epoch, old)
        return epoch

    # -- taking ---------------------------------------------------------------------------------
    def take(self, epoch: int) -> None:
        """The barriers of ``epoch`` are aligned: capture every operator's state (on the job's
        thread) and write it (on another); report it once written."""
        t0 = time.monotonic()
        self.epoch = epoch
        for sink in self.sinks:
            sink.prepare(epoch)
        states = capture_states(self.job, epoch, self.order)
        meta = {"job": self.job, "shape": self.fingerprint, "shape_description": self.description,
                "instance": self.instance}
        fut = asyncio.ensure_future(asyncio.to_thread(store.write, self.dir, epoch, meta, states))
        self._writes.add(fut)

        def written(f: asyncio.Future[Any]) -> None:
            self._writes.discard(f)
            if f.cancelled():
                return
            exc = f.exception()
            if exc is not None:
                self._report({"checkpoint_failed": epoch, "error": f"{type(exc).__name__}: {exc}"})
                return
            took = time.monotonic() - t0
            s = self.stats
            s.last_epoch, s.last_duration_s, s.last_bytes = epoch, took, int(f.result())
            self._report({"checkpointed": epoch, "bytes": int(f.result()),
                          "duration_s": round(took, 4)})

        fut.add_done_callback(written)

    def commit(self, epoch: int) -> None:
        """The coordinator committed ``epoch``: the sinks commit it; old parts go."""
        for sink in self.sinks:
            sink.commit(epoch)
        s = self.stats
        s.count += 1
        s.last_time = time.time()
        if s.last_epoch == epoch and s.last_duration_s is not None:
            self._metrics.record_stream_checkpoint(self.job, s.last_duration_s, s.last_bytes or 0)
        keep_from = epoch - self.config.keep + 1
        for e, path in store.complete(self.dir):
            if e < keep_from:
                shutil.rmtree(path, ignore_errors=True)

    # -- the job's end --------------------------------------------------------------------------
    def poll(self) -> None:
        """(Checkpoints are asked for by the coordinator, not by the clock.)"""

    async def final(self) -> None:
        """Every input ended: the sinks commit what came after the last checkpoint."""
        await self.drain()
        epoch = self.epoch + 1
        for sink in self.sinks:
            sink.prepare(epoch)
            sink.commit(epoch)

    async def drain(self) -> None:
        if self._writes:
            await asyncio.wait(list(self._writes))

    async def abandon(self) -> None:
        await self.drain()
