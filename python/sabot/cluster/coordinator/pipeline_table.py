"""Streaming pipelines on the cluster: their tasks' placement, rendezvous, checkpoints,
restarts and end.

A pipeline runs as ``instances`` tasks, instance i on the i-th alive worker (round robin when
there are more instances than workers). Each task, once it listens for its exchange, reports its
endpoint (``TaskReady``); when all have, every task gets the whole list (``TaskPeers``) and the
pipeline runs. It finishes when every task reported its end and results (``TaskDone``).

With checkpoints, every ``interval`` the coordinator asks every task for checkpoint n (a
``TaskControl``); each reports its part written (a ``TaskEvent``); when all did, n is committed
and the tasks are told (their exactly-once sinks commit it). One checkpoint is asked for at a
time, and none once a task has finished. When a worker running a task is lost (or a task's
process dies without a word), the pipeline's run ends: its other tasks are stopped and the
pipeline starts again, one ``attempt`` later, on the workers alive then (waiting for one if none
is), every task restoring the last committed checkpoint; words of an older attempt are ignored.
A task whose own code fails fails the pipeline; so does a lost worker without checkpoints, or
more than ``max_restarts`` restarts.

Pipelines live in memory (a coordinator restart forgets them; their checkpoints stay in the
state dir). A finished one's results are kept for SABOT_RESULT_TTL_S. The one place a
pipeline's state changes is :meth:`PipelineTable._move`.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from ...config import Config
from ...states import PipelineState, check_pipeline_transition
from ..protocol import ErrorCode
from ..protocol import messages as m
from .node_registry import Node, NodeRegistry
from .outbox import Target

log = logging.getLogger(__name__)

_TERMINAL_KEPT = 256  # ended pipelines kept at most (the oldest go first)


@dataclass
class Task:
    instance: int
    worker: str  # node id
    endpoint: str = ""
    done: bool = False
    stats: dict = field(default_factory=dict)
    events_per_s: float = 0.0  # between its last two reports


@dataclass
class Pipeline:
    pipeline_id: str
    name: str
    instances: int
    key_groups: int
    digest: int
    graph: bytes
    checkpoint: dict | None
    max_restarts: int
    tasks: list[Task] = field(default_factory=list)
    state: PipelineState = PipelineState.STARTING
    error: str | None = None
    created_at: float = field(default_factory=time.time)
    ended_at: float | None = None
    results: list[list[Any]] = field(default_factory=list)  # [sink, instance, bytes]
    attempt: int = 0
    restarts: int = 0
    committed: int = 0  # the last committed checkpoint (0: none)
    committed_instances: int = 0  # how many instances wrote it
    #: A client asked to stop with a savepoint: the next committed checkpoint is it.
    stopping: bool = False
    savepoint: dict | None = None
    inflight: int | None = None  # the checkpoint asked for and not yet complete
    asked: int = 0  # the highest checkpoint asked for (numbers are never used twice)
    reported: dict[int, dict] = field(default_factory=dict)  # instance -> its part's figures
    asked_at: float = 0.0
    next_due: float = 0.0
    last_checkpoint: dict | None = None

    @property
    def interval_s(self) -> float | None:
        ms = (self.checkpoint or {}).get("interval_ms")
        return None if ms is None else ms / 1000

    def figures(self) -> dict[str, Any]:
        """The tasks' last reports, summed over the instances: events, watermark (the
        minimum), records in and out per operator, backpressure, lag per Kafka partition."""
        stats = [t.stats for t in self.tasks if t.stats]
        ops: dict[str, list[int]] = {}
        lag: dict[str, int] = {}
        marks = []
        for s in stats:
            for op in s.get("operators") or []:
                acc = ops.setdefault(op["name"], [0, 0])
                acc[0] += int(op.get("records_in") or 0)
                acc[1] += int(op.get("records_out") or 0)
            for src in s.get("sources") or []:
                for part, n in (src.get("lag") or {}).items():
                    lag[part] = lag.get(part, 0) + int(n)
            if s.get("watermark") is not None:
                marks.append(int(s["watermark"]))
        return {
            "events": sum(int(s.get("events") or 0) for s in stats),
            "events_per_s": round(sum(t.events_per_s for t in self.tasks if not t.done), 1),
            "watermark": min(marks) if len(marks) == len(self.tasks) and marks else None,
            "operators": [{"name": k, "records_in": v[0], "records_out": v[1]}
                          for k, v in ops.items()],
            "backpressure_s": round(sum(float((s.get("exchange") or {}).get("backpressure_s")
                                              or 0) for s in stats), 3),
            "exchange_bytes": sum(int((s.get("exchange") or {}).get("bytes_sent") or 0)
                                  for s in stats),
            "kafka_lag": lag}

    def info(self) -> dict[str, Any]:
        return {"pipeline_id": self.pipeline_id, "name": self.name, "state": self.state.value,
                "instances": self.instances, "key_groups": self.key_groups,
                "error": self.error, "created_at": self.created_at, "ended_at": self.ended_at,
                "attempt": self.attempt, "restarts": self.restarts,
                "savepoint": self.savepoint, "stopping": self.stopping,
                "checkpoints": None if self.checkpoint is None else {
                    "state_dir": self.checkpoint.get("state_dir"),
                    "interval_ms": self.checkpoint.get("interval_ms"),
                    "committed": self.committed, "last": self.last_checkpoint},
                **self.figures(),
                "tasks": [{"instance": t.instance, "worker": t.worker,
                           "state": "done" if t.done else "ready" if t.endpoint else "starting",
                           "stats": t.stats} for t in self.tasks]}


class PipelineTable:
    def __init__(self, config: Config, registry: NodeRegistry,
                 send: Callable[[Target, m.Message], None]) -> None:
        self.config = config
        self._registry = registry
        self._send = send
        self.pipelines: dict[str, Pipeline] = {}

    def _move(self, p: Pipeline, new: PipelineState, error: str | None = None) -> None:
        check_pipeline_transition(p.state, new)
        p.state = new
        if error is not None:
            p.error = error
        if new.terminal:
            p.ended_at = time.time()
            if new is not PipelineState.FINISHED:
                p.results = []
        log.info("pipeline %s (%s): %s%s", p.pipeline_id, p.name, new.value,
                 f" ({error})" if error else "")

    def _peer(self, node_id: str) -> bytes | None:
        node = self._registry.nodes.get(node_id)
        return None if node is None else node.peer

    def _to_tasks(self, p: Pipeline, make: Callable[[Task], m.Message]) -> None:
        for t in p.tasks:
            peer = self._peer(t.worker)
            if peer is not None:
                self._send(peer, make(t))

    # -- clients ------------------------------------------------------------------------------
    def on_submit(self, peer: Target, msg: m.SubmitPipeline, version: int) -> None:
        rid = msg.request_id
        digest = hash((msg.name, bytes(msg.graph), msg.instances, msg.key_groups,
                       repr(msg.checkpoint)))
        known = self.pipelines.get(msg.pipeline_id)
        if known is not None:
            if known.digest != digest:
                self._send(peer, m.ErrorReply(rid, ErrorCode.BAD_REQUEST,
                                              f"pipeline id {msg.pipeline_id} is taken by "
                                              "another pipeline"))
            else:
                self._send(peer, m.PipelineAck(rid, known.pipeline_id, known.instances))
            return
        if not 1 <= msg.key_groups <= 32768 or msg.instances < 0 or msg.max_restarts < 0:
            self._send(peer, m.ErrorReply(rid, ErrorCode.BAD_REQUEST,
                                          f"key_groups must be 1..32768 (got {msg.key_groups}), "
                                          f"instances >= 0 (got {msg.instances}) and "
                                          f"max_restarts >= 0 (got {msg.max_restarts})"))
            return
        workers = self._registry.alive()
        if not workers:
            self._send(peer, m.ErrorReply(rid, ErrorCode.NO_WORKERS,
                                          "no worker is alive to run the pipeline's tasks: "
                                          "start one with `sabot-node worker`"))
            return
        n = msg.instances or len(workers)
        p = Pipeline(msg.pipeline_id, msg.name, n, msg.key_groups, digest, bytes(msg.graph),
                     dict(msg.checkpoint) if msg.checkpoint else None, msg.max_restarts)
        self.pipelines[p.pipeline_id] = p
        self._place(p)
        self._send(peer, m.PipelineAck(rid, p.pipeline_id, n))
        self._trim()

    def on_get(self, peer: Target, msg: m.GetPipeline, version: int) -> None:
        p = self.pipelines.get(msg.pipeline_id)
        if p is None:
            self._send(peer, m.ErrorReply(msg.request_id, ErrorCode.PIPELINE_NOT_FOUND,
                                          f"no pipeline {msg.pipeline_id!r}"))
            return
        self._send(peer, m.PipelineStatus(msg.request_id, p.info(),
                                          p.results if p.state is PipelineState.FINISHED else []))

    # -- placing and restarting -----------------------------------------------------------------
    def _place(self, p: Pipeline) -> bool:
        """Start the current attempt's tasks on the alive workers; False when none is alive."""
        workers = sorted(self._registry.alive(), key=lambda n: n.node_id)
        if not workers:
            p.tasks = []
            return False
        p.tasks = [Task(i, workers[i % len(workers)].node_id) for i in range(p.instances)]
        restore, wrote = p.committed, p.committed_instances or p.instances
        self._to_tasks(p, lambda t: m.RunTask(p.pipeline_id, p.name, t.instance, p.instances,
                                              p.key_groups, p.graph, p.attempt, p.checkpoint,
                                              restore, wrote))
        return True

    def _restart(self, p: Pipeline, why: str) -> None:
        if p.checkpoint is None:
            self._fail(p, f"{why} (without checkpoints the pipeline cannot start again: give "
                          "the StreamEnv a state_dir every worker can reach)")
            return
        if p.restarts >= p.max_restarts:
            self._fail(p, f"{why}, after {p.restarts} restart(s) (at most {p.max_restarts})")
            return
        p.restarts += 1
        old = p.tasks
        p.attempt += 1
        attempt = p.attempt
        for worker in {t.worker for t in old}:
            peer = self._peer(worker)
            if peer is not None:
                self._send(peer, m.CancelTask(p.pipeline_id, why, attempt))
        p.inflight, p.reported, p.results = None, {}, []
        if p.state is not PipelineState.RESTARTING:
            self._move(p, PipelineState.RESTARTING, why)
        log.warning("pipeline %s (%s): %s; restarting (attempt %d) from checkpoint %d",
                    p.pipeline_id, p.name, why, attempt, p.committed)
        if not self._place(p):
            log.warning("pipeline %s: no worker is alive; waiting for one", p.pipeline_id)

    # -- stopping and resuming (a client's requests) ------------------------------------------
    def _get(self, pipeline_id: str) -> Pipeline:
        p = self.pipelines.get(pipeline_id)
        if p is None:
            raise KeyError(f"no pipeline {pipeline_id!r}")
        return p

    def stop(self, pipeline_id: str, savepoint: bool) -> dict[str, Any]:
        """Stop a pipeline: with ``savepoint``, once a checkpoint taken now is committed (it
        can be resumed from it); without, at once (cancelled)."""
        p = self._get(pipeline_id)
        if p.state.terminal or p.state is PipelineState.STOPPED:
            raise ValueError(f"pipeline {pipeline_id} is {p.state.value}: only a running one "
                             "can be stopped")
        if not savepoint:
            self._cancel(p, "stopped by a client without a savepoint")
            return p.info()
        if p.checkpoint is None:
            raise ValueError(f"pipeline {pipeline_id} takes no checkpoints: it can stop only "
                             "without a savepoint (give its StreamEnv a state_dir)")
        if p.state is not PipelineState.RUNNING:
            raise ValueError(f"pipeline {pipeline_id} is {p.state.value}: a savepoint is "
                             "taken of a running pipeline (ask again when it runs)")
        p.stopping = True
        p.next_due = 0.0  # (the tick asks for the checkpoint at once)
        return p.info()

    def _stopped(self, p: Pipeline) -> None:
        p.stopping = False
        p.savepoint = {"epoch": p.committed, "instances": p.committed_instances,
                       "state_dir": (p.checkpoint or {}).get("state_dir")}
        p.attempt += 1
        for worker in {t.worker for t in p.tasks}:
            peer = self._peer(worker)
            if peer is not None:
                self._send(peer, m.CancelTask(p.pipeline_id, "stopped with a savepoint",
                                              p.attempt))
        p.tasks, p.inflight, p.results = [], None, []
        self._move(p, PipelineState.STOPPED)

    def resume(self, pipeline_id: str, instances: int | None) -> dict[str, Any]:
        """Start a stopped pipeline again from its savepoint, on ``instances`` instances (None:
        as many as before)."""
        p = self._get(pipeline_id)
        if p.state is not PipelineState.STOPPED:
            raise ValueError(f"pipeline {pipeline_id} is {p.state.value}: only a stopped one "
                             "can be resumed")
        if instances is not None:
            if isinstance(instances, bool) or not isinstance(instances, int) or instances < 1:
                raise ValueError(f"instances must be a positive integer, got {instances!r}")
            p.instances = instances
        p.restarts = 0
        self._move(p, PipelineState.RESTARTING, None)
        p.error = None
        if not self._place(p):
            log.warning("pipeline %s: no worker is alive; waiting for one", p.pipeline_id)
        return p.info()

    def cancel(self, pipeline_id: str) -> dict[str, Any]:
        p = self._get(pipeline_id)
        if not p.state.terminal:
            self._cancel(p, "cancelled by a client")
        return p.info()

    def _cancel(self, p: Pipeline, why: str) -> None:
        self._to_tasks(p, lambda t: m.CancelTask(p.pipeline_id, why))
        self._move(p, PipelineState.CANCELLED, why)

    def _fail(self, p: Pipeline, why: str) -> None:
        self._move(p, PipelineState.FAILED, why)
        self._to_tasks(p, lambda t: m.CancelTask(p.pipeline_id, why))

    def lost(self, node: Node, why: str) -> None:
        """``node`` died or left: the pipelines with a task on it start again (or fail)."""
        for p in list(self.pipelines.values()):
            if p.state.terminal:
                continue
            if any(t.worker == node.node_id and not t.done for t in p.tasks):
                self._restart(p, f"{why} while it ran a task of the pipeline")

    def tick(self, now: float) -> None:
        """Timers: checkpoints that are due, pipelines waiting for a worker."""
        for p in self.pipelines.values():
            if p.state is PipelineState.RESTARTING and not p.tasks:
                self._place(p)
            elif p.state is PipelineState.RUNNING \
                    and (p.interval_s is not None or p.stopping) \
                    and p.inflight is None and now >= p.next_due \
                    and not any(t.done for t in p.tasks):
                p.asked = p.inflight = max(p.committed, p.asked) + 1
                p.reported, p.asked_at = {}, now
                epoch, attempt = p.inflight, p.attempt
                self._to_tasks(p, lambda t, p=p, epoch=epoch, attempt=attempt: m.TaskControl(
                    p.pipeline_id, t.instance, attempt, {"checkpoint": epoch}))

    # -- workers ------------------------------------------------------------------------------
    def _task(self, peer: Target, pipeline_id: str, instance: int, attempt: int
              ) -> tuple[Pipeline, Task] | None:
        p = self.pipelines.get(pipeline_id)
        node = self._registry.node_of(peer)
        if p is None or node is None or attempt != p.attempt or not 0 <= instance < len(p.tasks):
            return None
        t = p.tasks[instance]
        if t.worker != node.node_id or p.state.terminal:
            return None
        return p, t

    def on_ready(self, peer: Target, msg: m.TaskReady, version: int) -> None:
        found = self._task(peer, msg.pipeline_id, msg.instance, msg.attempt)
        if found is None:
            return
        p, t = found
        t.endpoint = msg.endpoint
        if p.state in (PipelineState.STARTING, PipelineState.RESTARTING) and \
                all(x.endpoint for x in p.tasks):
            endpoints = [x.endpoint for x in p.tasks]
            self._move(p, PipelineState.RUNNING)
            p.next_due = time.monotonic() + (p.interval_s or 0)
            attempt = p.attempt
            self._to_tasks(p, lambda x: m.TaskPeers(p.pipeline_id, x.instance, endpoints,
                                                    attempt))

    def on_event(self, peer: Target, msg: m.TaskEvent, version: int) -> None:
        found = self._task(peer, msg.pipeline_id, msg.instance, msg.attempt)
        if found is None:
            return
        p, t = found
        ev = msg.event
        if "stats" in ev:
            new, old = dict(ev["stats"]), t.stats
            dt = float(new.get("time") or 0) - float(old.get("time") or 0)
            if old and dt > 0:
                t.events_per_s = max(0.0, (int(new.get("events") or 0)
                                           - int(old.get("events") or 0)) / dt)
            t.stats = new
            return
        if "checkpoint_failed" in ev:
            if p.inflight == ev["checkpoint_failed"]:
                log.warning("pipeline %s: checkpoint %s failed on instance %d: %s",
                            p.pipeline_id, p.inflight, t.instance, ev.get("error"))
                p.inflight = None
                p.next_due = time.monotonic() + (p.interval_s or 0)
            return
        epoch = ev.get("checkpointed")
        if epoch is None or epoch != p.inflight:
            return
        p.reported[t.instance] = {"bytes": int(ev.get("bytes", 0)),
                                  "duration_s": float(ev.get("duration_s", 0.0))}
        if len(p.reported) == p.instances:
            p.committed, p.committed_instances, p.inflight = epoch, p.instances, None
            now = time.monotonic()
            p.last_checkpoint = {
                "epoch": epoch, "time": time.time(),
                "bytes": sum(r["bytes"] for r in p.reported.values()),
                "duration_s": round(now - p.asked_at, 4)}
            p.next_due = now + (p.interval_s or 0)
            attempt = p.attempt
            self._to_tasks(p, lambda x: m.TaskControl(p.pipeline_id, x.instance, attempt,
                                                      {"commit": epoch}))
            if p.stopping:
                self._stopped(p)

    def on_done(self, peer: Target, msg: m.TaskDone, version: int) -> None:
        found = self._task(peer, msg.pipeline_id, msg.instance, msg.attempt)
        if found is None:
            return
        p, t = found
        if msg.error is not None:
            why = f"instance {t.instance} on worker {t.worker} failed: {msg.error}"
            if msg.lost:
                self._restart(p, why)
            else:
                self._fail(p, why)
            return
        t.done = True
        t.stats = dict(msg.stats)
        p.inflight = None  # (a finished task takes no more checkpoints)
        p.results.extend([str(sink), t.instance, bytes(data)]
                         for sink, data in msg.results.items())
        if all(x.done for x in p.tasks):
            self._move(p, PipelineState.FINISHED)

    def _trim(self) -> None:
        now = time.time()
        ttl = self.config.result_ttl_s
        for p in [p for p in self.pipelines.values() if p.state.terminal]:
            if p.ended_at is not None and now - p.ended_at > ttl:
                del self.pipelines[p.pipeline_id]
        ended = sorted((p for p in self.pipelines.values() if p.state.terminal),
                       key=lambda p: p.ended_at or 0)
        for p in ended[:max(0, len(ended) - _TERMINAL_KEPT)]:
            del self.pipelines[p.pipeline_id]

    def list(self) -> list[dict[str, Any]]:
        return [p.info() for p in self.pipelines.values()]

    def metrics(self) -> list[dict[str, Any]]:
        """Per pipeline not ended, for the Prometheus gauges (Metrics.refresh)."""
        out = []
        now = time.time()
        try:  # (read from the HTTP thread: the core thread may change the table meanwhile)
            pipelines = list(self.pipelines.values())
        except RuntimeError:
            return []
        for p in pipelines:
            if p.state.terminal:
                continue
            f = p.figures()
            last = p.last_checkpoint or {}
            out.append({
                "pipeline": p.name, "pipeline_id": p.pipeline_id, "state": p.state.value,
                "operators": f["operators"], "events": f["events"],
                "watermark_lag_s": None if f["watermark"] is None or f["watermark"] <= 0
                else max(0.0, now - f["watermark"] / 1000),
                "backpressure_s": f["backpressure_s"], "kafka_lag": f["kafka_lag"],
                "checkpoint_duration_s": last.get("duration_s"),
                "checkpoint_bytes": last.get("bytes"), "restarts": p.restarts})
        return out
