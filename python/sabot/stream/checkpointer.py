"""Taking, committing and restoring a job's checkpoints.

The job runs its operators on one thread and pushes one source item at a time through all of
them, so between two items nothing is in flight between operators: a checkpoint taken there
is aligned across every input at once (what barriers achieve in a dataflow whose operators run
apart). Taking one has two parts. On the job's thread: the sinks :meth:`~.sinks.Sink.prepare`,
then every operator's state is captured (its Python part pickled; its Arrow tables, which are
immutable, only referenced). Writing those files and fsyncing them runs on a worker thread while
the job goes on; when the checkpoint directory is committed, the sinks commit that epoch. One
checkpoint is in flight at a time. A restore checks that the checkpoint was written by a
pipeline of the same shape, gives every operator its state and lets the sinks recover.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import os
import time
from dataclasses import dataclass, field
from typing import Any

from ..errors import CheckpointError
from ..metrics import get_metrics
from . import checkpoint_store as store
from . import failpoint
from .operator import Operator
from .sinks import Sink

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class CheckpointConfig:
    """``interval_ms`` between checkpoints (None: only savepoints and the final one),
    ``state_dir`` they go to (a folder per job name inside it), the newest ``keep`` are kept."""

    state_dir: str
    interval_ms: int | None
    keep: int = 3


@dataclass
class CheckpointStats:
    count: int = 0
    restores: int = 0
    last_epoch: int | None = None
    last_duration_s: float | None = None
    last_bytes: int | None = None
    last_time: float | None = None  # unix time the last one was committed
    restored_from: str | None = None
    history: list[dict[str, Any]] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        return {"count": self.count, "restores": self.restores, "last_epoch": self.last_epoch,
                "last_duration_s": self.last_duration_s, "last_bytes": self.last_bytes,
                "last_time": self.last_time, "restored_from": self.restored_from}


def job_folder(job: str) -> str:
    """A job name as a folder name (other characters as ``_``)."""
    safe = "".join(c if c.isalnum() or c in "-_." else "_" for c in job).strip(".")
    return safe or "job"


def shape(order: list[Operator]) -> tuple[str, list[str]]:
    """A fingerprint of the pipeline's shape: each operator's kind and name and where its
    inputs come from, in build order."""
    index = {id(op): i for i, op in enumerate(order)}
    ups: dict[int, list[str]] = {i: [] for i in range(len(order))}
    for op in order:
        for down, port in op.outputs:
            ups[index[id(down)]].append(f"{index[id(op)]}->{port}")
        for side, targets in op.side_outputs.items():
            for down, port in targets:
                ups[index[id(down)]].append(f"{index[id(op)]}.{side}->{port}")
    desc = [f"{type(op).__name__}:{op.name}<{','.join(sorted(ups[i]))}>"
            for i, op in enumerate(order)]
    return hashlib.sha256("\n".join(desc).encode()).hexdigest()[:16], desc


def capture_states(job: str, epoch: int, order: list[Operator]) -> dict[str, store.Captured]:
    """Every operator's state for checkpoint ``epoch``, taken on the job's thread."""
    states = {}
    for op in order:
        try:
            states[op.name] = store.capture(op.snapshot())
        except Exception as exc:  # noqa: BLE001 - said with the operator's name
            raise CheckpointError(
                f"checkpoint {epoch} of job {job!r}: the state of operator {op.name!r} "
                f"cannot be saved ({type(exc).__name__}: {exc}); keyed-state values must "
                "be picklable") from exc
    return states


class Checkpointer:
    def __init__(self, job: str, order: list[Operator], config: CheckpointConfig) -> None:
        self.job = job
        self.order = order
        self.config = config
        self.sinks = [op for op in order if isinstance(op, Sink)]
        self.fingerprint, self.description = shape(order)
        # each job's checkpoints in a folder of its own: jobs of one StreamEnv never mix
        self.dir = os.path.join(config.state_dir, job_folder(job))
        self.epoch = 0
        self.stats = CheckpointStats()
        self._metrics = get_metrics()
        self._next_due = time.monotonic() + (config.interval_ms or 0) / 1000
        self._inflight: asyncio.Future[int] | None = None
        self._inflight_info: tuple[int, float, list[asyncio.Future[str]], list[str]] | None = None
        self._requests: list[tuple[str, asyncio.Future[str]]] = []

    # -- restoring ------------------------------------------------------------------------------
    def restore(self, path: str | None = None) -> int | None:
        """Restore from the savepoint ``path`` (a checkpoint's directory, or a directory of
        them: the newest), or else from the newest complete checkpoint in ``state_dir``; returns its epoch (None: nothing to restore)."""
        where = path or self.dir
        if path is not None and not os.path.isdir(path):
            raise CheckpointError(f"restore_from={path!r}: no such savepoint directory")
        if path is not None and os.path.exists(os.path.join(path, store.MANIFEST)):
            loaded: store.Loaded | None = store.load(path)  # one savepoint's own directory
        else:
            loaded = store.latest(where)
        if loaded is None:
            if path is not None or store.complete(where):
                raise CheckpointError(f"{where}: holds no complete checkpoint that reads back "
                                      "(see the warnings above for the files at fault)")
            return None
        if loaded.meta.get("shape") != self.fingerprint:
            theirs = loaded.meta.get("shape_description", [])
            diff = [f"checkpoint: {a} / pipeline: {b}" for a, b in zip(theirs, self.description)
                    if a != b][:3]
            if len(theirs) != len(self.description):
                diff.append(f"{len(theirs)} operators in the checkpoint, {len(self.description)} "
                            "in this pipeline")
            raise CheckpointError(
                f"{loaded.path} was written by a pipeline of another shape ({'; '.join(diff)}); "
                "run the pipeline that wrote it, or start this one with an empty state_dir")
        names = [op.name for op in self.order]
        for op in self.order:
            op.restore(loaded.states[op.name])
        for sink in self.sinks:
            sink.recover(loaded.epoch)
        self.epoch = loaded.epoch
        self.stats.restores += 1
        self.stats.restored_from = loaded.path
        self._metrics.record_stream_restore(self.job)
        log.info("job %s restored from %s (epoch %d, %d operators)", self.job, loaded.path,
                 loaded.epoch, len(names))
        return loaded.epoch

    # -- taking ---------------------------------------------------------------------------------
    def request_savepoint(self, path: str) -> asyncio.Future[str]:
        fut: asyncio.Future[str] = asyncio.get_running_loop().create_future()
        self._requests.append((path, fut))
        return fut

    def due(self) -> bool:
        if self._requests:
            return True
        return self.config.interval_ms is not None and time.monotonic() >= self._next_due

    def poll(self) -> None:
        """Between two items: finish a written checkpoint, start one that is due."""
        if self._inflight is not None and self._inflight.done():
            self._finish()
        if self._inflight is None and self.due():
            self._start()

    def _start(self, final: bool = False) -> None:
        t0 = time.monotonic()
        self.epoch += 1
        epoch = self.epoch
        for sink in self.sinks:
            sink.prepare(epoch)
        states = capture_states(self.job, epoch, self.order)
        meta = {"job": self.job, "shape": self.fingerprint, "shape_description": self.description,
                "final": final}
        paths = [self.dir] + [p for p, _ in self._requests]
        waiters = [f for _, f in self._requests]
        self._requests = []

        def write_all() -> int:
            size = 0
            for p in paths:
                size = store.write(p, epoch, meta, states,
                                   lambda: failpoint.reached("files"))
            return size

        self._inflight = asyncio.ensure_future(asyncio.to_thread(write_all))
        self._inflight_info = (epoch, t0, waiters, paths[1:])

    def _finish(self) -> None:
        assert self._inflight is not None and self._inflight_info is not None
        epoch, t0, waiters, savepoints = self._inflight_info
        fut, self._inflight, self._inflight_info = self._inflight, None, None
        try:
            size = fut.result()
        except BaseException as exc:
            for w in waiters:
                if not w.done():
                    w.set_exception(exc)
            raise CheckpointError(f"checkpoint {epoch} of job {self.job!r} could not be written "
                                  f"under {self.dir}: {exc}") from exc
        failpoint.reached("manifest")
        for i, sink in enumerate(self.sinks):
            sink.commit(epoch)
            if i == 0:
                failpoint.reached("sinks")
        store.prune(self.dir, self.config.keep)
        took = time.monotonic() - t0
        s = self.stats
        s.count += 1
        s.last_epoch, s.last_duration_s, s.last_bytes, s.last_time = epoch, took, size, time.time()
        self._metrics.record_stream_checkpoint(self.job, took, size)
        for w, p in zip(waiters, savepoints):
            if not w.done():
                w.set_result(os.path.join(p, f"{store.PREFIX}{epoch:08d}"))
        if self.config.interval_ms is not None:
            self._next_due = time.monotonic() + self.config.interval_ms / 1000

    async def drain(self) -> None:
        """Wait for the checkpoint in flight and commit it."""
        if self._inflight is not None:
            await asyncio.wait([self._inflight])
            self._finish()

    async def final(self) -> None:
        """After the job's end: a last checkpoint (every source ended) and its commit."""
        await self.drain()
        self._start(final=True)
        await self.drain()

    async def abandon(self) -> None:
        """The job failed: let a write in flight end, commit nothing (a restart recovers)."""
        if self._inflight is not None:
            await asyncio.wait([self._inflight])
            self._inflight = None
        for _, f in self._requests:
            if not f.done():
                f.set_exception(CheckpointError(f"job {self.job!r} ended before the savepoint"))
