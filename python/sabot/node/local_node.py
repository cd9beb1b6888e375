"""The single-node composition root: the HTTP API wired to the local engine.

:class:`LocalBackend` is the single-node :class:`~sabot.http.backend.NodeBackend`, an
in-memory job table over the local engine; :class:`LocalHttpNode` serves it with
:class:`~sabot.http.server.HttpApi` (what the launcher starts with ``serve_http=True``).

A job's input is cut into chunks that run one after another through ``process`` (the engine's
``LocalEngine.process``, which parallelises each chunk), so progress, throughput and queue depth
move while a job runs and a cancel takes effect at the next chunk boundary at the latest.
Jobs run at most ``max_concurrent_jobs`` at a time, highest priority first, then oldest.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import math
import socket
import time
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

from ..config import Config
from ..engine.local_engine import LocalEngine
from ..errors import JobIdConflictError, JobNotFoundError
from ..http.results import dumps, to_json_list
from ..http.server import HttpApi
from ..metrics import CpuSampler, Metrics, get_metrics
from ..processors import get_processor
from ..states import JobState, NodeState, check_job_transition
from ..system import system_resources

log = logging.getLogger(__name__)

ProcessFn = Callable[[Any, Any], Awaitable[Any]]
StatsFn = Callable[[], dict[str, Any]]

#: Smallest chunk, in items: below this the per-call overhead of the engine dominates.
MIN_CHUNK_ITEMS = 4096
#: A job is cut into about this many chunks (for progress), never smaller than MIN_CHUNK_ITEMS.
TARGET_CHUNKS = 50


@dataclass
class _Job:
    job_id: str
    processor: str
    priority: int
    data: Any
    total: int
    created_at: float
    seq: int
    status: JobState = JobState.PENDING
    done: int = 0
    result: list[Any] | None = None
    error: str | None = None
    started_at: float | None = None
    finished_at: float | None = None
    chunks_left: int = 0
    task: asyncio.Task[None] | None = field(default=None, repr=False)
    #: What the submit held, for a resubmit under the client's job id (None: no id given).
    digest: str | None = None

    def summary(self) -> dict[str, Any]:
        fraction = 1.0 if self.total == 0 and self.status == JobState.COMPLETED else (
            self.done / self.total if self.total else 0.0)
        return {
            "job_id": self.job_id,
            "status": self.status,
            "processor": self.processor,
            "priority": self.priority,
            "items": self.total,
            "progress": {"done": self.done, "total": self.total, "fraction": round(fraction, 6)},
            "error": self.error,
            "created_at": self.created_at,
            "started_at": self.started_at,
            "finished_at": self.finished_at,
        }


class LocalBackend:
    """Jobs of a single-node Sabot, run on the local engine."""

    role = "single-node"

    def __init__(
        self,
        config: Config,
        process: ProcessFn,
        stats: StatsFn | None = None,
        *,
        node_id: str | None = None,
        metrics: Metrics | None = None,
        max_concurrent_jobs: int = 2,
        max_jobs_kept: int = 10_000,
        engine_records_metrics: bool | None = None,
    ) -> None:
        if max_concurrent_jobs < 1:
            raise ValueError(f"max_concurrent_jobs must be >= 1, got {max_concurrent_jobs}")
        self.config = config
        self.node_id = node_id or config.node_name or config.advertise_host or socket.gethostname()
        self._process = process
        self._stats = stats
        self.metrics = metrics or get_metrics(config.cluster_name, self.node_id)
        self.max_concurrent_jobs = max_concurrent_jobs
        self.max_jobs_kept = max_jobs_kept
        self._jobs: dict[str, _Job] = {}
        self._seq = 0
        self._running = 0
        self._started_at = time.time()
        self._closed = False
        self._cpu = CpuSampler(config.effective_max_workers)
        # An engine that counts items and morsels itself says so (``records_metrics`` on the
        # object whose method ``process`` is: a LocalEngine); any other process function is
        # counted here, so the counters are right either way and never counted twice.
        if engine_records_metrics is None:
            engine_records_metrics = bool(getattr(getattr(process, "__self__", None),
                                                  "records_metrics", False))
        self._count_here = not engine_records_metrics
        self._address = f"{config.advertise_host or config.host}:{config.port}"
        self.metrics.set_load_source(self.load)

    def on_http_started(self, host: str, port: int) -> None:
        self._address = f"{self.config.advertise_host or host}:{port}"

    # -- NodeBackend: node ----------------------------------------------------------------
    def is_ready(self) -> bool:
        return not self._closed

    def health(self) -> dict[str, Any]:
        counts = self._counts()
        return {
            "status": "ok" if not self._closed else "stopping",
            "jobs_running": counts.get(JobState.RUNNING, 0),
            "jobs_pending": counts.get(JobState.PENDING, 0),
        }

    def cluster_info(self) -> dict[str, Any] | None:
        return None  # a single node is no coordinator: workers cannot join it

    def nodes(self) -> list[dict[str, Any]]:
        load = self.load()
        return [{
            "node_id": self.node_id,
            "role": self.role,
            "status": NodeState.ALIVE if not self._closed else NodeState.STOPPING,
            "address": self._address,
            "cores": self.config.effective_max_workers,
            "utilization_percent": load["utilization_percent"],
            "queue_depth": load["queue_depth"],
            "last_seen": time.time(),
        }]

    def stats(self) -> dict[str, Any]:
        engine: dict[str, Any] = {}
        if self._stats is not None:
            try:
                engine = dict(self._stats())
            except Exception as exc:  # stats must stay available while the engine struggles
                log.exception("engine stats failed")
                engine = {"error": f"{type(exc).__name__}: {exc}"}
        counts = self._counts()
        load = self.load()
        out: dict[str, Any] = dict(engine)
        out.update({
            "mode": self.role,
            "node_id": self.node_id,
            "cluster_name": self.config.cluster_name,
            "uptime_s": time.time() - self._started_at,
            "nodes": {"total": 1, "alive": 0 if self._closed else 1},
            "jobs": {"total": len(self._jobs), **{s.value: counts.get(s, 0) for s in JobState}},
            "throughput_items_per_second": self.metrics.throughput_now(),
            "items_processed": int(self.metrics.items_completed),
            "queue_depth": load["queue_depth"],
            "utilization_percent": load["utilization_percent"],
            "system_resources": engine.get("system_resources") or system_resources(),
        })
        return out

    def load(self) -> dict[str, Any]:
        """Live load for the metrics gauges and the status page."""
        return {
            "queue_depth": sum(j.chunks_left for j in self._jobs.values()
                               if j.status.active),
            "utilization_percent": self._cpu.percent(),
            "jobs": self._counts(),
            "nodes": {"alive": 0 if self._closed else 1},
        }

    # -- NodeBackend: jobs ----------------------------------------------------------------
    async def submit_job(self, data: Any, processor: str, *, priority: int = 0,
                         job_id: str | None = None) -> dict[str, Any]:
        get_processor(processor)  # UnknownProcessorError (listing the known ones) before queuing
        if self._closed:
            raise RuntimeError("this node is shutting down and takes no new jobs")
        self._expire()
        digest = None
        if job_id is not None:
            digest = await asyncio.to_thread(_submit_digest, processor, int(priority), data)
            known = self._jobs.get(job_id)
            if known is not None:
                if known.digest != digest:
                    raise JobIdConflictError(job_id)
                return {"job_id": known.job_id, "status": known.status, "existing": True}
        total = len(data)
        self._seq += 1
        job = _Job(
            job_id=job_id or uuid.uuid4().hex, processor=processor, priority=int(priority),
            data=data, total=total, created_at=time.time(), seq=self._seq, digest=digest,
        )
        job.chunks_left = self._chunk_count(total)
        self._jobs[job.job_id] = job
        self.metrics.record_job(JobState.PENDING)
        self._schedule()
        return {"job_id": job.job_id, "status": job.status}

    async def get_job(
        self, job_id: str, *, offset: int = 0, limit: int | None = None
    ) -> dict[str, Any]:
        job = self._get(job_id)
        out = job.summary()
        if job.result is None:
            out.update(result=None, result_offset=0, result_total=None, next_offset=None)
            return out
        n = len(job.result)
        start = min(max(0, offset), n)
        end = n if limit is None else min(n, start + max(0, limit))
        out.update(
            result=job.result[start:end], result_offset=start, result_total=n,
            next_offset=end if end < n else None,
        )
        return out

    async def cancel_job(self, job_id: str) -> dict[str, Any]:
        job = self._get(job_id)
        if not job.status.finished:
            was_running = job.status == JobState.RUNNING
            self._finish(job, JobState.CANCELLED, error="cancelled by request")
            if was_running and job.task is not None:
                job.task.cancel()
        return job.summary()

    def list_jobs(self, limit: int = 100) -> list[dict[str, Any]]:
        self._expire()
        jobs = sorted(self._jobs.values(), key=lambda j: j.seq, reverse=True)
        return [j.summary() for j in jobs[:max(0, limit)]]

    async def close(self) -> None:
        """Cancel what still runs; no new jobs are accepted."""
        self._closed = True
        tasks = []
        for job in list(self._jobs.values()):
            if not job.status.finished:
                self._finish(job, JobState.CANCELLED, error="node stopped")
            if job.task is not None and not job.task.done():
                job.task.cancel()
                tasks.append(job.task)
        if tasks:
            await asyncio.gather(*tasks, return_exceptions=True)
        self.metrics.clear_load_source(self.load)

    # -- internals ------------------------------------------------------------------------
    def _get(self, job_id: str) -> _Job:
        self._expire()
        job = self._jobs.get(job_id)
        if job is None:
            raise JobNotFoundError(
                f"no job {job_id!r} on this node (unknown, or finished more than "
                f"SABOT_RESULT_TTL_S={self.config.result_ttl_s:g} s ago)")
        return job

    def _counts(self) -> dict[str, int]:
        counts = {s.value: 0 for s in JobState}
        for job in self._jobs.values():
            counts[job.status] += 1
        return counts

    def _chunk_count(self, total: int) -> int:
        return max(1, math.ceil(total / self._chunk_size(total))) if total else 0

    @staticmethod
    def _chunk_size(total: int) -> int:
        return max(MIN_CHUNK_ITEMS, math.ceil(total / TARGET_CHUNKS))

    def _expire(self) -> None:
        now = time.time()
        ttl = self.config.result_ttl_s
        finished = [j for j in self._jobs.values() if j.status.finished]
        for job in finished:
            if job.finished_at is not None and now - job.finished_at > ttl:
                del self._jobs[job.job_id]
        excess = len(self._jobs) - self.max_jobs_kept
        if excess > 0:  # the oldest finished jobs go first; running ones are never dropped
            for job in sorted(finished, key=lambda j: j.seq)[:excess]:
                self._jobs.pop(job.job_id, None)

    def _schedule(self) -> None:
        while self._running < self.max_concurrent_jobs and not self._closed:
            pending = [j for j in self._jobs.values() if j.status == JobState.PENDING]
            if not pending:
                return
            job = min(pending, key=lambda j: (-j.priority, j.seq))
            self._move(job, JobState.RUNNING)
            job.started_at = time.time()
            self._running += 1
            job.task = asyncio.get_running_loop().create_task(self._run(job))

    async def _run(self, job: _Job) -> None:
        try:
            results: list[Any] = []
            size = self._chunk_size(job.total)
            for start in range(0, job.total, size):
                if job.status != JobState.RUNNING:
                    return
                chunk = job.data[start:start + size]
                t0 = time.monotonic()
                out = await self._process(chunk, job.processor)
                part = to_json_list(out)
                if len(part) != len(chunk):
                    raise RuntimeError(
                        f"the engine returned {len(part)} results for {len(chunk)} items")
                results.extend(part)
                job.done += len(chunk)
                job.chunks_left -= 1
                if self._count_here:
                    self.metrics.record_items(len(chunk))
                    self.metrics.record_morsel(time.monotonic() - t0)
            if job.status != JobState.RUNNING:
                return
            # Checked once here so GET /job never meets a result it cannot send.
            await asyncio.to_thread(dumps, results)
            job.result = results
            self._finish(job, JobState.COMPLETED)
        except asyncio.CancelledError:
            if job.status == JobState.RUNNING:
                self._finish(job, JobState.CANCELLED, error="cancelled")
        except Exception as exc:
            if job.status == JobState.RUNNING:
                if self._count_here:
                    self.metrics.record_items(max(0, job.total - job.done), "failed")
                self.metrics.record_error(type(exc).__name__)
                self._finish(job, JobState.FAILED, error=_error_text(exc))
        finally:
            job.task = None
            job.data = None  # the input is not needed any more; free it
            self._running -= 1
            self._schedule()

    def _move(self, job: _Job, status: JobState) -> None:
        """The one place a job's state changes."""
        check_job_transition(job.status, status)
        job.status = status
        self.metrics.record_job(status)

    def _finish(self, job: _Job, status: JobState, *, error: str | None = None) -> None:
        self._move(job, status)
        job.error = error
        job.finished_at = time.time()
        job.chunks_left = 0
        if job.task is None:
            job.data = None


def _submit_digest(processor: str, priority: int, data: Any) -> str:
    """What a submit held (processor, priority, data: a JSON list or an Arrow array read from a
    file), for comparing a resubmit under the same job id."""
    h = hashlib.blake2b(digest_size=16)
    h.update(f"{processor}\0{priority}\0{type(data).__name__}\0".encode())
    chunks = getattr(data, "chunks", None)
    if chunks is not None or hasattr(data, "buffers"):
        for arr in (chunks if chunks is not None else [data]):
            h.update(f"{arr.type}:{len(arr)}:{arr.offset}\0".encode())
            for buf in arr.buffers():
                if buf is not None:
                    h.update(buf)
    else:
        h.update(dumps(data).encode())
    return h.hexdigest()


def _error_text(exc: BaseException) -> str:
    return f"{type(exc).__name__}: {exc}"


class LocalHttpNode:
    """A single node's HTTP API: a :class:`LocalBackend` job table over ``engine``, served on
    SABOT_HOST:SABOT_PORT. ``stats``: what GET /stats adds (the launcher's own stats)."""

    def __init__(self, config: Config, engine: LocalEngine, *, stats: StatsFn | None = None,
                 node_id: str | None = None) -> None:
        self.config = config
        self.backend = LocalBackend(config, process=engine.process,
                                    stats=stats if stats is not None else engine.get_stats,
                                    node_id=node_id, engine_records_metrics=engine.records_metrics)
        self.api = HttpApi(config, self.backend)
        self.port: int | None = None

    async def start(self) -> int:
        """Serve; returns the bound port. OSError saying which address was taken."""
        config = self.config
        try:
            self.port = await self.api.start(config.host, config.port)
        except OSError as exc:
            await self.backend.close()
            raise OSError(
                exc.errno,
                f"cannot serve the HTTP API on {config.host}:{config.port}: "
                f"{exc.strerror or exc} (set SABOT_PORT to a free port, or 0 for any)") from exc
        return self.port

    async def stop(self) -> None:
        """No new requests, then the running jobs are cancelled."""
        await self.api.stop()
        await self.backend.close()


__all__ = ["LocalBackend", "LocalHttpNode"]
