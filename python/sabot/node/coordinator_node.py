"""The composition root of a coordinator: the cluster's :class:`Coordinator` (core thread,
ZeroMQ, journal) with the HTTP API served in front of it.

:class:`CoordinatorBackend` is the coordinator as the HTTP layer sees it (a
:class:`~sabot.http.backend.NodeBackend`): submits and cancels are the same requests a ZeroMQ
client sends, reads run on the core thread.
"""

from __future__ import annotations

import asyncio
import logging
import uuid
from typing import Any

from ..cluster.coordinator import Coordinator
from ..cluster.protocol import PROTOCOL_VERSION, payload
from ..cluster.protocol import messages as m
from ..cluster.result_files import ResultFileError, ResultRef
from ..config import Config
from ..http.results import to_json_list
from ..http.server import HttpApi
from ..states import JobState

log = logging.getLogger(__name__)


class CoordinatorNode:
    """A coordinator serving HTTP on SABOT_HOST:SABOT_PORT and ZeroMQ on SABOT_ZMQ_PORT."""

    def __init__(self, config: Config, *, node_id: str | None = None) -> None:
        self.config = config
        self.coordinator = Coordinator(config, node_id=node_id)
        self.node_id = self.coordinator.node_id
        self.http: HttpApi | None = None
        self.http_port: int | None = None

    @property
    def zmq_port(self) -> int | None:
        return self.coordinator.zmq_port

    async def start(self) -> None:
        """Returns once both endpoints serve."""
        if self.http is not None:
            return
        config = self.config
        coordinator = self.coordinator
        await coordinator.start()
        http = HttpApi(config, CoordinatorBackend(coordinator), coordinator.metrics)
        try:
            self.http_port = await http.start(config.host, config.port)
        except BaseException:
            await coordinator.stop()
            raise
        self.http = http
        assert coordinator.keys is not None  # (set by start)
        log.info("coordinator %s of cluster %r: HTTP on %s:%s, ZeroMQ on port %s, data port %s, "
                 "key %s", self.node_id, config.cluster_name, config.host, self.http_port,
                 coordinator.zmq_port, coordinator.data_port or "none",
                 coordinator.keys.fingerprint)

    async def stop(self) -> None:
        if self.http is not None:
            await self.http.stop()
            self.http = None
        await self.coordinator.stop()


class CoordinatorBackend:
    """The coordinator as a :class:`~sabot.http.backend.NodeBackend` for the HTTP API."""

    role = "coordinator"

    def __init__(self, coordinator: Coordinator) -> None:
        self.coordinator = coordinator
        self.node_id = coordinator.node_id

    def is_ready(self) -> bool:
        return self.coordinator.running and self.coordinator.journal_problem is None and \
            self.coordinator.data_port_problem is None

    def health(self) -> dict[str, Any]:
        coordinator = self.coordinator
        journal_problem = coordinator.journal_problem
        health: dict[str, Any] = {"core_alive": coordinator.running,
                                  "journal_writable": coordinator.running and
                                  journal_problem is None,
                                  "zmq_port": coordinator.zmq_port,
                                  "data_port": coordinator.data_port,
                                  "protocol_version": PROTOCOL_VERSION}
        data_port_problem = coordinator.data_port_problem
        if not coordinator.running:
            health["problem"] = "the coordinator core is not running" + (
                f": {coordinator.failure}" if coordinator.failure else "")
        elif journal_problem is not None:
            # Reads are served, submits refused (507) until the journal can be written again.
            health["problem"] = f"the journal cannot be written: {journal_problem}"
        elif data_port_problem is not None:
            health["problem"] = data_port_problem
        return health

    def cluster_info(self) -> dict[str, Any]:
        return self.coordinator.cluster_info()

    def nodes(self) -> list[dict[str, Any]]:
        return self.coordinator.query(lambda core: core.nodes_info())

    def stats(self) -> dict[str, Any]:
        return self.coordinator.query(lambda core: core.stats())

    async def submit_job(self, data: Any, processor: str, *, priority: int = 0,
                         job_id: str | None = None) -> dict[str, Any]:
        config = self.coordinator.config
        kind, morsels, digest = await asyncio.to_thread(
            _split_and_digest, data, config.morsel_size_bytes, processor, int(priority))
        reply = await self.coordinator.request(
            m.SubmitJob(0, job_id or uuid.uuid4().hex, processor, None, kind, morsels,
                        int(priority), digest))
        assert isinstance(reply, m.SubmitAck)
        out: dict[str, Any] = {"job_id": reply.job_id, "status": reply.status}
        if reply.existing:
            out["existing"] = True
        return out

    async def get_job(self, job_id: str, *, offset: int = 0, limit: int | None = None
                      ) -> dict[str, Any]:
        summary, parts, first = await self.coordinator.query_async(
            lambda core: core.result_page(job_id, offset, limit))
        job = dict(summary)
        total = job.get("items", 0)
        if job["status"] != JobState.COMPLETED:
            job.update(result=None, result_offset=offset, result_total=total, next_offset=None)
            return job
        try:
            items = await asyncio.to_thread(_decode_items, parts)
        except ResultFileError:
            # The retention let the job go between the page and the read: say so (410).
            await self.coordinator.query_async(lambda core: core.result_page(job_id, 0, 0))
            raise
        lo = offset - first
        page = items[lo:] if limit is None else items[lo:lo + limit]
        nxt = offset + len(page)
        job.update(result=page, result_offset=offset, result_total=total,
                   next_offset=nxt if nxt < total else None)
        return job

    async def cancel_job(self, job_id: str) -> dict[str, Any]:
        reply = await self.coordinator.request(m.CancelJob(0, job_id))
        assert isinstance(reply, m.JobStatus)
        return dict(reply.job)

    def list_jobs(self, limit: int = 100) -> list[dict[str, Any]]:
        return self.coordinator.query(lambda core: core.list_jobs(limit))

    def pipelines(self) -> list[dict[str, Any]]:
        return self.coordinator.query(lambda core: core.list_pipelines())

    async def submit_pipeline(self, name: str, params: dict[str, Any], *,
                              instances: int | None = None, state_dir: str | None = None,
                              checkpoint_interval: str | None = None,
                              pipeline_id: str | None = None) -> dict[str, Any]:
        """Build the registered pipeline ``name`` with ``params`` here and run it on the
        workers (see sabot.stream.registry)."""
        from ..stream.registry import build

        graph, checkpoint, label = await asyncio.to_thread(
            build, name, params, state_dir=state_dir, checkpoint_interval=checkpoint_interval)
        pid = pipeline_id or f"p-{uuid.uuid4().hex[:12]}"
        reply = await self.coordinator.request(
            m.SubmitPipeline(0, pid, name, graph, instances or 0, 128, checkpoint))
        assert isinstance(reply, m.PipelineAck)
        return {"pipeline_id": reply.pipeline_id, "instances": reply.instances,
                "collects": label is not None}

    async def pipeline_results(self, pipeline_id: str) -> dict[str, Any]:
        """A finished pipeline's collected rows (JSON-ready), in instance order."""
        import pyarrow as pa

        reply = await self.coordinator.request(m.GetPipeline(0, pipeline_id))
        assert isinstance(reply, m.PipelineStatus)

        def rows() -> list[Any]:
            out: list[Any] = []
            for _sink, _instance, data in sorted(reply.results, key=lambda r: (r[0], r[1])):
                out.extend(pa.ipc.open_stream(pa.py_buffer(data)).read_all().to_pylist())
            return out

        state = reply.pipeline["state"]
        return {"pipeline_id": pipeline_id, "state": state,
                "rows": await asyncio.to_thread(rows) if state == "finished" else None}

    def pipeline_action(self, pipeline_id: str, action: str, **kw: Any) -> dict[str, Any]:
        return self.coordinator.query(lambda core: core.pipeline_action(pipeline_id, action,
                                                                        **kw))


def _split_and_digest(data: Any, morsel_bytes: int, processor: str, priority: int
                      ) -> tuple[str, list[Any], str]:
    kind, morsels = payload.split(data, morsel_bytes)
    return kind, morsels, payload.submit_digest(processor, None, kind, morsels, priority)


def _decode_items(parts: list[tuple[str, int, bytes | ResultRef]]) -> list[Any]:
    """The items of a result page (off the event loop: a result in a file is read here)."""
    out: list[Any] = []
    for enc, _, blob in parts:
        data = blob if isinstance(blob, bytes) else blob.read()
        out.extend(to_json_list(payload.decode_value(enc, data)))
    return out


__all__ = ["CoordinatorBackend", "CoordinatorNode"]
