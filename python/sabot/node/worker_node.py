"""The worker composition root: a :class:`~sabot.cluster.worker.Worker` with its HTTP API
(``/health``, ``/ready``, ``/metrics``, ``/stats`` on SABOT_WORKER_PORT).

:class:`ServedWorker` is what a worker node runs: the API starts first (its port is reported
when the worker registers), the worker joins the coordinator, and on stop the worker drains
while the API keeps answering probes, then the API stops.
"""

from __future__ import annotations

from typing import Any

from ..cluster.worker import Worker
from ..config import Config
from ..http.server import HttpApi
from ..http.validation import BadRequest
from ..system import system_resources, usable_cores


class WorkerBackend:
    """The worker as a :class:`~sabot.http.backend.NodeBackend` (health, readiness, metrics,
    stats); jobs are submitted to the coordinator, not here."""

    role = "worker"

    def __init__(self, worker: Worker) -> None:
        self.worker = worker
        self.node_id = worker.node_id

    def is_ready(self) -> bool:
        return self.worker.registered.is_set() and not self.worker.draining

    def health(self) -> dict[str, Any]:
        w = self.worker
        return {"coordinator_connected": w.registered.is_set(), "running": w.running_morsels,
                "draining": w.draining}

    def cluster_info(self) -> None:
        return None

    def nodes(self) -> list[dict[str, Any]]:
        return [self.worker.info()]

    def stats(self) -> dict[str, Any]:
        w = self.worker
        engine = w.engine.get_stats() if w.engine is not None else None
        return {"nodes": [w.info()],
                "jobs": {"running_morsels": w.running_morsels, "morsels_done": w.morsels_done,
                         "morsels_failed": w.morsels_failed},
                "engine": engine, "usable_cores": usable_cores(),
                "system_resources": system_resources()}

    def _not_here(self) -> Exception:
        c = self.worker.config
        return BadRequest(f"this node is a worker; submit jobs to the coordinator at "
                          f"{c.coordinator_host}:{c.coordinator_port}")

    async def submit_job(self, data: Any, processor: str, *, priority: int = 0,
                         job_id: str | None = None) -> dict[str, Any]:
        raise self._not_here()

    async def get_job(self, job_id: str, *, offset: int = 0, limit: int | None = None
                      ) -> dict[str, Any]:
        raise self._not_here()

    async def cancel_job(self, job_id: str) -> dict[str, Any]:
        raise self._not_here()

    def list_jobs(self, limit: int = 100) -> list[dict[str, Any]]:
        return []


class ServedWorker:
    """A worker node: a :class:`Worker` and its HTTP API. The same constructor, ``start`` and
    ``stop`` as ``Worker``; ``worker`` is the Worker itself."""

    role = "worker"

    def __init__(self, config: Config, *, node_id: str | None = None,
                 slots: int | None = None) -> None:
        self.config = config
        self.worker = Worker(config, node_id=node_id, slots=slots)
        self.http: HttpApi | None = None

    @property
    def node_id(self) -> str:
        return self.worker.node_id

    @property
    def http_port(self) -> int | None:
        return self.worker.http_port

    async def start(self, *, wait_s: float | None = None) -> None:
        """Serve HTTP, then join the coordinator (see ``Worker.start``: raises a refusal)."""
        if self.http is None:
            worker = self.worker
            self.http = HttpApi(self.config, WorkerBackend(worker), worker.metrics)
            worker.http_port = await self.http.start(self.config.host, self.config.worker_port)
        try:
            await self.worker.start(wait_s=wait_s)
        except BaseException:
            await self._stop_http()
            raise

    async def stop(self, *, drain: bool = True) -> None:
        """Drain and stop the worker, then the HTTP API."""
        try:
            await self.worker.stop(drain=drain)
        finally:
            await self._stop_http()

    async def wait_closed(self) -> None:
        await self.worker.wait_closed()

    @property
    def registered(self) -> bool:
        """Whether the worker is registered with its coordinator now."""
        return self.worker.registered.is_set()

    def info(self) -> dict[str, Any]:
        return self.worker.info()

    async def _stop_http(self) -> None:
        http, self.http = self.http, None
        if http is not None:
            await http.stop()


__all__ = ["ServedWorker", "WorkerBackend"]
