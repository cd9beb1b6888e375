"""A running coordinator: the core thread and its ZeroMQ endpoint.

The HTTP API is not part of it: :mod:`sabot.node.coordinator_node` wires one onto it. Callers in
this process reach the core through :meth:`Coordinator.request` (the messages a ZeroMQ client
sends, answered the same way) and :meth:`Coordinator.query` (consistent reads of its state).
"""

from __future__ import annotations

import asyncio
import os
import socket
from collections.abc import Callable
from typing import Any, TypeVar

from ...config import Config
from ...errors import CoordinatorUnavailableError
from ...metrics import get_metrics
from ...processors import load_processor_modules
from ...version import __version__
from ..protocol import PROTOCOL_VERSION, reply_or_raise
from ..protocol import messages as m
from ..security import ClusterKeys
from .core import CoordinatorCore

T = TypeVar("T")


class Coordinator:
    """The coordinator of a cluster: start it, send it requests, read its state, stop it."""

    def __init__(self, config: Config, *, node_id: str | None = None) -> None:
        self.config = config
        self.node_id = node_id or config.node_name or \
            f"coordinator-{socket.gethostname()}-{os.getpid()}"
        self.metrics = get_metrics(config.cluster_name, self.node_id)
        self.core: CoordinatorCore | None = None
        self.zmq_port: int | None = None
        #: The data port (sabot.cluster.coordinator.spool_server); None when there is none.
        self.data_port: int | None = None
        self.keys: ClusterKeys | None = None

    async def start(self) -> None:
        """Serve ZeroMQ on SABOT_HOST:SABOT_ZMQ_PORT; returns once the core thread runs."""
        if self.core is not None:
            return
        config = self.config
        load_processor_modules(config.processors)
        self.keys = await asyncio.to_thread(ClusterKeys.from_config, config)
        self.core = await asyncio.to_thread(
            CoordinatorCore, config, self.keys, self.metrics, self.node_id, config.host,
            config.effective_zmq_port)
        self.zmq_port = self.core.zmq_port
        server = self.core.data_server
        self.data_port = server.port if server is not None else None
        self.core.start()
        self.core.wait_ready(10)
        self.metrics.set_load_source(self.core.load)

    async def stop(self) -> None:
        core, self.core = self.core, None
        if core is not None:
            core.stop()
            await asyncio.to_thread(core.join, 10)
            self.metrics.set_load_source(None)

    @property
    def running(self) -> bool:
        core = self.core
        return core is not None and core.is_alive()

    @property
    def failure(self) -> str | None:
        """Why the core thread ended, when it failed on its own (not stopped): the node cannot
        work and should be restarted."""
        core = self.core
        return core.failure if core is not None and not core.is_alive() else None

    @property
    def data_port_problem(self) -> str | None:
        """Why the data port does not serve, while the core runs (its thread ended): peers on
        other hosts could then not get their morsels' files."""
        core = self.core
        server = core.data_server if core is not None else None
        if server is not None and core is not None and core.is_alive() and \
                core.wait_ready(0) and not server.is_alive():
            return f"the data port's thread (port {server.port}) has stopped"
        return None

    @property
    def journal_problem(self) -> str | None:
        """Why the journal cannot be written, while it cannot: new submits are refused and the
        node is not healthy, but it serves and recovers on its own once it can write."""
        core = self.core
        return core.journal_problem() if core is not None and core.is_alive() else None

    async def wait_failed(self, poll_s: float = 0.5) -> str:
        """Returns (with the reason) once the core thread has failed; never while it runs."""
        while True:
            failure = self.failure
            if failure is not None:
                return failure
            await asyncio.sleep(poll_s)

    def _started(self) -> CoordinatorCore:
        if self.core is None:
            raise CoordinatorUnavailableError("the coordinator is not started")
        if self.core.failure is not None:
            raise CoordinatorUnavailableError(f"the coordinator core failed: {self.core.failure}")
        return self.core

    async def request(self, msg: m.Message) -> m.Message:
        """The reply to ``msg`` (as a ZeroMQ client gets it); an ErrorReply is raised as the
        exception its code stands for."""
        return reply_or_raise(await asyncio.wrap_future(self._started().call(msg)))

    def query(self, fn: Callable[[CoordinatorCore], T], timeout: float = 10.0) -> T:
        """``fn(core)`` run on the core thread, waited for (from any thread but the core's)."""
        core = self._started()
        return core.query(lambda: fn(core), timeout)  # type: ignore[no-any-return]

    async def query_async(self, fn: Callable[[CoordinatorCore], T]) -> T:
        """``fn(core)`` run on the core thread, awaited."""
        core = self._started()
        return await asyncio.wrap_future(core.call_fn(lambda: fn(core)))  # type: ignore

    def cluster_info(self) -> dict[str, Any]:
        """What a worker needs to join (``GET /cluster``)."""
        keys = self.keys
        return {
            "cluster_name": self.config.cluster_name,
            "protocol_version": PROTOCOL_VERSION,
            "coordinator_id": self.node_id,
            "zmq_port": self.zmq_port,
            "data_port": self.data_port,
            "curve_server_key": keys.server_public.decode() if keys else None,
            "key_fingerprint": keys.fingerprint if keys else None,
            "heartbeat_s": self.config.heartbeat_s,
            "node_timeout_s": self.config.node_timeout_s,
            "version": __version__,
        }


__all__ = ["Coordinator"]
