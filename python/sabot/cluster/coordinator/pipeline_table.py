"""Streaming pipelines on the cluster: their tasks' placement, rendezvous and end.

A pipeline runs as ``instances`` tasks, instance i on the i-th alive worker (round robin when
there are more instances than workers). Each task, once it listens for its exchange, reports its
endpoint (``TaskReady``); when all have, every task gets the whole list (``TaskPeers``) and the
pipeline runs. It finishes when every task reported its end and results (``TaskDone``); one
task's failure, or the loss of a worker that runs one, fails the pipeline and stops its other
tasks. Pipelines live in memory (a coordinator restart forgets them); a finished one's results
are kept for SABOT_RESULT_TTL_S. The one place a pipeline's state changes is :meth:`_move`.
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

_TERMINAL_KEPT = 256  # finished pipelines kept at most (the oldest go first)


@dataclass
class Task:
    instance: int
    worker: str  # node id
    endpoint: str = ""
    done: bool = False
    stats: dict = field(default_factory=dict)


@dataclass
class Pipeline:
    pipeline_id: str
    name: str
    instances: int
    key_groups: int
    digest: int
    tasks: list[Task]
    state: PipelineState = PipelineState.STARTING
    error: str | None = None
    created_at: float = field(default_factory=time.time)
    ended_at: float | None = None
    results: list[list[Any]] = field(default_factory=list)  # [sink, instance, bytes]

    def info(self) -> dict[str, Any]:
        return {"pipeline_id": self.pipeline_id, "name": self.name, "state": self.state.value,
                "instances": self.instances, "key_groups": self.key_groups,
                "error": self.error, "created_at": self.created_at, "ended_at": self.ended_at,
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

    def _to_workers(self, p: Pipeline, make: Callable[[Task], m.Message]) -> None:
        for t in p.tasks:
            peer = self._peer(t.worker)
            if peer is not None:
                self._send(peer, make(t))

    # -- clients ------------------------------------------------------------------------------
    def on_submit(self, peer: Target, msg: m.SubmitPipeline, version: int) -> None:
        rid = msg.request_id
        digest = hash((msg.name, bytes(msg.graph), msg.instances, msg.key_groups))
        known = self.pipelines.get(msg.pipeline_id)
        if known is not None:
            if known.digest != digest:
                self._send(peer, m.ErrorReply(rid, ErrorCode.BAD_REQUEST,
                                              f"pipeline id {msg.pipeline_id} is taken by "
                                              "another pipeline"))
            else:
                self._send(peer, m.PipelineAck(rid, known.pipeline_id, known.instances))
            return
        if not 1 <= msg.key_groups <= 32768 or msg.instances < 0:
            self._send(peer, m.ErrorReply(rid, ErrorCode.BAD_REQUEST,
                                          f"key_groups must be 1..32768 (got {msg.key_groups}) "
                                          f"and instances >= 0 (got {msg.instances})"))
            return
        workers = sorted(self._registry.alive(), key=lambda n: n.node_id)
        if not workers:
            self._send(peer, m.ErrorReply(rid, ErrorCode.NO_WORKERS,
                                          "no worker is alive to run the pipeline's tasks: "
                                          "start one with `sabot-node worker`"))
            return
        n = msg.instances or len(workers)
        tasks = [Task(i, workers[i % len(workers)].node_id) for i in range(n)]
        p = Pipeline(msg.pipeline_id, msg.name, n, msg.key_groups, digest, tasks)
        self.pipelines[p.pipeline_id] = p
        graph = bytes(msg.graph)
        self._to_workers(p, lambda t: m.RunTask(p.pipeline_id, p.name, t.instance, n,
                                                p.key_groups, graph))
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

    # -- workers ------------------------------------------------------------------------------
    def _task(self, peer: Target, pipeline_id: str, instance: int
              ) -> tuple[Pipeline, Task] | None:
        p = self.pipelines.get(pipeline_id)
        node = self._registry.node_of(peer)
        if p is None or node is None or not 0 <= instance < p.instances:
            return None
        t = p.tasks[instance]
        if t.worker != node.node_id or p.state.terminal:
            return None
        return p, t

    def on_ready(self, peer: Target, msg: m.TaskReady, version: int) -> None:
        found = self._task(peer, msg.pipeline_id, msg.instance)
        if found is None:
            return
        p, t = found
        t.endpoint = msg.endpoint
        if p.state is PipelineState.STARTING and all(x.endpoint for x in p.tasks):
            endpoints = [x.endpoint for x in p.tasks]
            self._move(p, PipelineState.RUNNING)
            self._to_workers(p, lambda x: m.TaskPeers(p.pipeline_id, x.instance, endpoints))

    def on_done(self, peer: Target, msg: m.TaskDone, version: int) -> None:
        found = self._task(peer, msg.pipeline_id, msg.instance)
        if found is None:
            return
        p, t = found
        if msg.error is not None:
            self._fail(p, f"instance {t.instance} on worker {t.worker} failed: {msg.error}")
            return
        t.done = True
        t.stats = dict(msg.stats)
        p.results.extend([str(sink), t.instance, bytes(data)]
                         for sink, data in msg.results.items())
        if all(x.done for x in p.tasks):
            self._move(p, PipelineState.FINISHED)

    def _fail(self, p: Pipeline, why: str) -> None:
        self._move(p, PipelineState.FAILED, why)
        self._to_workers(p, lambda t: m.CancelTask(p.pipeline_id, why))

    def lost(self, node: Node, why: str) -> None:
        """``node`` died or left: the pipelines with a task on it fail."""
        for p in list(self.pipelines.values()):
            if p.state.terminal:
                continue
            if any(t.worker == node.node_id and not t.done for t in p.tasks):
                self._fail(p, f"{why} while it ran a task of the pipeline (restarting "
                              "from a checkpoint on the cluster is not built yet)")

    def _trim(self) -> None:
        ended = [p for p in self.pipelines.values() if p.state.terminal]
        ttl = self.config.result_ttl_s
        now = time.time()
        for p in ended:
            if p.ended_at is not None and now - p.ended_at > ttl:
                del self.pipelines[p.pipeline_id]
        ended = sorted((p for p in self.pipelines.values() if p.state.terminal),
                       key=lambda p: p.ended_at or 0)
        for p in ended[:max(0, len(ended) - _TERMINAL_KEPT)]:
            del self.pipelines[p.pipeline_id]

    def list(self) -> list[dict[str, Any]]:
        return [p.info() for p in self.pipelines.values()]
