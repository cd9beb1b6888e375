"""A worker node: finds the coordinator, registers, heartbeats, runs morsels on the local engine.

The worker learns the coordinator's ZeroMQ endpoint from ``GET /cluster`` on
COORDINATOR_HOST:COORDINATOR_PORT, says hello (protocol version, cluster name, cores, slots,
an address the coordinator can reach) and then holds at most ``slots`` morsels at a time
(credit-based flow control: each finished morsel returns a credit). When the coordinator goes
silent for SABOT_NODE_TIMEOUT_S it reconnects and registers again; results of morsels that
finish meanwhile are kept and sent once it is back. ``stop()`` drains: no new morsels, running
ones finish (or are handed back), then goodbye.

This class holds the life cycle (:class:`~sabot.cluster.worker_state.WorkerState`), the
session and the credits; the messages travel on a
:class:`~sabot.cluster.worker_link.CoordinatorLink` and the morsels run through a
:class:`~sabot.cluster.worker_router.MorselRouter`. Its HTTP API is wired in
:mod:`sabot.node.worker_node`.
"""

from __future__ import annotations

import asyncio
import logging
import math
import os
import socket
import time
import uuid
from typing import Any

import zmq
import zmq.asyncio

from ..config import Config
from ..engine.local_engine import LocalEngine
from ..errors import AuthenticationError, CoordinatorUnavailableError
from ..metrics import CpuSampler, get_metrics
from ..processors import list_processors, load_processor_modules
from ..states import NodeState
from ..version import __version__
from . import transport
from .protocol import PROTOCOL_VERSION
from .protocol import messages as m
from .protocol.error_codes import FATAL_REFUSALS, ErrorCode, exception_for
from .remote_spool import StagedSpool, sweep_staging
from .security import ClusterKeys
from .spool import REMOTE, SHARED, SHARED_SYNCED, Spool
from .spool_client import SpoolClient, open_data_port
from .worker_link import CoordinatorLink, FatalRefusal
from .worker_router import MorselRouter
from .worker_state import WorkerState, check_worker_transition
from .worker_tasks import StreamTasks

log = logging.getLogger(__name__)

#: Longest a draining worker waits for its running morsels before handing them back.
DRAIN_GRACE_S = 30.0
#: With SABOT_WORKER_SLOTS=auto a worker's credits follow its morsels' cost: enough cheap
#: morsels wait on it to cover about CREDIT_WORK_S of work (tiny morsels then travel and run in
#: batches instead of one round trip to the coordinator each), never fewer than the base
#: (2 x cores + 2) and never more than its slots, AUTO_SLOTS_FACTOR x the base (at most
#: AUTO_SLOTS_MAX).
CREDIT_WORK_S = 0.02
AUTO_SLOTS_FACTOR = 16
AUTO_SLOTS_MAX = 256


class Worker:
    """One worker node. ``await start()`` returns once registered (or raises a refusal)."""

    role = "worker"

    def __init__(self, config: Config, *, node_id: str | None = None,
                 slots: int | None = None) -> None:
        self.config = config
        self.node_id = node_id or config.node_name or \
            f"worker-{socket.gethostname()}-{os.getpid()}-{uuid.uuid4().hex[:6]}"
        self.cores = config.effective_max_workers
        # SABOT_WORKER_SLOTS (auto: two morsels per core, one running and one ready, plus two
        # in transit, so neither the cores nor the link idle between morsels).
        self.base_slots = slots or config.effective_worker_slots
        self._adaptive = slots is None and config.worker_slots == 0
        self.slots = min(AUTO_SLOTS_MAX, AUTO_SLOTS_FACTOR * self.base_slots) \
            if self._adaptive else self.base_slots
        self.slots = max(self.slots, self.base_slots)
        self.credits = self.base_slots  # what the coordinator may send (Credit changes it)
        self._morsel_s: float | None = None  # recent seconds of work per morsel
        self.metrics = get_metrics(config.cluster_name, self.node_id)
        self.engine: LocalEngine | None = None
        #: This node's HTTP port, reported at registration: set before start() by whoever
        #: serves the node's HTTP API (sabot.node.worker_node).
        self.http_port: int | None = None
        #: Set while the coordinator has welcomed this worker (follows ``state``).
        self.registered = asyncio.Event()
        self.state = WorkerState.CREATED
        #: Why the coordinator refused this worker for good, once it did.
        self.refusal: Exception | None = None
        self.coordinator_id: str | None = None
        self.advertise_host = config.advertise_host
        self._keys: ClusterKeys | None = None
        self._ctx: zmq.asyncio.Context | None = None
        #: The coordinator's data port, while it answers (for a data dir not shared with it):
        #: its client, on a plain context of its own (its calls block, in threads).
        self._data: SpoolClient | None = None
        self._data_ctx: zmq.Context | None = None
        self._task: asyncio.Task[None] | None = None
        self._cpu: CpuSampler | None = None
        self._next_retry_log = 0.0
        self._link = CoordinatorLink(self.node_id, self.metrics, self.registered,
                                     on_message=self._dispatch, on_read=self._read_done)
        self.router = MorselRouter(node_id=self.node_id, metrics=self.metrics,
                                   poster=self._link, on_cost=self._observe_cost,
                                   threads=self.base_slots)
        #: Tasks of streaming pipelines, each in a process of its own.
        self.tasks = StreamTasks(config, self.node_id, self._link.post,
                                 lambda: self.advertise_host or "127.0.0.1")

    # -- state ----------------------------------------------------------------------------
    def _set_state(self, new: WorkerState) -> None:
        """The one place the life cycle moves (``registered`` follows it)."""
        check_worker_transition(self.state, new)
        log.debug("worker %s: %s -> %s", self.node_id, self.state.value, new.value)
        self.state = new
        if new.welcomed:
            self.registered.set()
        else:
            self.registered.clear()

    @property
    def draining(self) -> bool:
        """stop() was called: no new morsels are taken."""
        return self.state.stopping

    @property
    def running_morsels(self) -> int:
        return len(self.router.running)

    @property
    def morsels_done(self) -> int:
        return self.router.morsels_done

    @property
    def morsels_failed(self) -> int:
        return self.router.morsels_failed

    # -- lifecycle ----------------------------------------------------------------------------
    async def start(self, *, wait_s: float | None = None) -> None:
        """Join the coordinator. Raises ClusterMismatchError, VersionMismatchError or
        AuthenticationError when refused; when the coordinator is merely unreachable it logs,
        returns after ``wait_s`` and keeps trying."""
        if self._task is not None:
            return
        config = self.config
        load_processor_modules(config.processors)
        self._keys = await asyncio.to_thread(ClusterKeys.from_config, config)
        # isolate: a user function that crashes takes down a pool process, not this worker;
        # record_metrics=False: this worker counts items and morsels itself.
        self.engine = self.router.engine = LocalEngine(config, node=self.node_id, isolate=True,
                                                       record_metrics=False)
        self._cpu = CpuSampler(self.cores)
        self.metrics.set_load_source(self._load)
        if self.advertise_host is None:
            self.advertise_host = await asyncio.to_thread(
                transport.detect_advertise_host, config.coordinator_host, config.coordinator_port)
        self._ctx = zmq.asyncio.Context()
        self._set_state(WorkerState.CONNECTING)
        self._task = asyncio.get_running_loop().create_task(self._run(), name="sabot-worker")
        wait = max(10.0, 2 * config.node_timeout_s) if wait_s is None else wait_s
        registered = asyncio.ensure_future(self.registered.wait())
        await asyncio.wait([self._task, registered], timeout=wait,
                           return_when=asyncio.FIRST_COMPLETED)
        registered.cancel()
        if self.refusal is not None:
            error = self.refusal
            await self.stop(drain=False)
            raise error
        if not self.registered.is_set():
            log.warning("worker %s: not registered with the coordinator at %s:%s yet; still "
                        "trying", self.node_id, config.coordinator_host, config.coordinator_port)

    async def wait_closed(self) -> None:
        """Until the worker stops (after stop(), or when refused for good)."""
        if self._task is not None:
            await asyncio.gather(self._task, return_exceptions=True)

    async def stop(self, *, drain: bool = True) -> None:
        """Drain (finish or hand back running morsels), say goodbye and close everything."""
        if self.state.stopping:
            if self._task is not None:
                await asyncio.gather(self._task, return_exceptions=True)
            return
        link, running = self._link, self.router.running
        if link.connected and self.state is WorkerState.REGISTERED:
            self._set_state(WorkerState.DRAINING)
            # A credit posted earlier but not yet sent would go out after this one and undo it.
            link.drop_credits()
            await link.send_now(m.Credit(0))
            if drain and running:
                log.info("worker %s draining %d running morsel(s)", self.node_id, len(running))
                await asyncio.wait(list(running.values()), timeout=DRAIN_GRACE_S)
            returned: list[list[Any]] = []
            for key, task in list(running.items()):
                task.cancel()
                returned.append([key[0], key[1]])
            link.flush()
            await link.flush_outbox()
            # Big results finished before the goodbye go first (else they are lost with it).
            await link.wait_chunks_sent(DRAIN_GRACE_S)
            await link.send_now(m.Goodbye("stopping", returned))
        if self.state is not WorkerState.STOPPING:  # (a draining session may have ended)
            self._set_state(WorkerState.STOPPING)
        await self.tasks.close()
        for task in list(running.values()):
            task.cancel()
        if running:
            await asyncio.gather(*running.values(), return_exceptions=True)
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
        link.close(linger_ms=1000)
        self._drop_data_port(last=True)
        if self._ctx is not None:
            self._ctx.term()
            self._ctx = None
        if self.engine is not None:
            await self.engine.close()
            self.engine = self.router.engine = None
        self.router.close()
        self.metrics.set_load_source(None)
        self._set_state(WorkerState.STOPPED)
        log.info("worker %s stopped", self.node_id)

    # -- connection ---------------------------------------------------------------------------
    async def _run(self) -> None:
        delay = 0.2
        while not self.state.stopping:
            try:
                await self._session()
                delay = 0.2
            except FatalRefusal as exc:
                self.refusal = exc.error
                if not self.state.stopping:
                    self._set_state(WorkerState.REFUSED)
                log.error("worker %s refused: %s", self.node_id, exc.error)
                return
            except (CoordinatorUnavailableError, OSError, zmq.ZMQError) as exc:
                self._log_retry(exc)
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("worker %s: connection failed", self.node_id)
            finally:
                if self.state is WorkerState.REGISTERED:
                    self._set_state(WorkerState.CONNECTING)
                elif self.state is WorkerState.DRAINING:
                    self._set_state(WorkerState.STOPPING)
                if not self.state.stopping:  # stop() closes it after its goodbye went out
                    self._link.close()
            if self.state.stopping:
                return
            await asyncio.sleep(delay)
            delay = min(2.0, delay * 2)

    def _log_retry(self, exc: BaseException) -> None:
        now = time.monotonic()
        if now >= self._next_retry_log:
            self._next_retry_log = now + 10.0
            log.warning("worker %s: %s; retrying", self.node_id, exc)

    async def _probe_data_port(self, info: dict[str, Any]) -> None:
        """Keep a client of the coordinator's data port (``GET /cluster`` names it) when it
        answers: the hello then offers to get and put spool files through it."""
        self._drop_data_port()
        if not self.config.spool:
            return
        assert self._keys is not None
        if self._data_ctx is None:
            # (the first session: copies a worker of this data dir left when it died go)
            await asyncio.to_thread(sweep_staging, self.config.data_dir, self.node_id,
                                    self.config.spool_orphan_s)
            self._data_ctx = zmq.Context()
        self._data = await asyncio.to_thread(
            open_data_port, self._data_ctx, self._keys, self.config.coordinator_host, info,
            timeout_s=max(5.0, self.config.node_timeout_s))

    def _drop_data_port(self, *, last: bool = False) -> None:
        """Close the data port's client (``last``: its context too, at the worker's stop)."""
        data, self._data = self._data, None
        if data is not None:
            data.close()
        if last and self._data_ctx is not None:
            self._data_ctx.term()
            self._data_ctx = None
            sweep_staging(self.config.data_dir, self.node_id, self.config.spool_orphan_s)

    async def _session(self) -> None:
        config, link = self.config, self._link
        assert self._keys is not None and self._ctx is not None
        info = await asyncio.to_thread(
            transport.fetch_cluster_info, config.coordinator_host, config.coordinator_port,
            timeout=max(2.0, config.node_timeout_s), token=config.auth_token)
        key_differs = info.get("curve_server_key") not in (
            None, self._keys.server_public.decode())
        endpoint = transport.zmq_endpoint(config.coordinator_host, int(info["zmq_port"]))
        await self._probe_data_port(info)
        link.open(self._ctx, self._keys, endpoint)
        await link.send_now(m.Hello(
            PROTOCOL_VERSION, config.cluster_name, "worker", self.node_id,
            host=self.advertise_host or "", http_port=int(self.http_port or 0), pid=os.getpid(),
            cores=self.cores, slots=self.slots, credits=self.credits,
            capabilities=["python", "pickle", "arrow", "numpy", m.RANGES,
                          f"sabot-{__version__}"],
            processors=list_processors(),
            spool_token=(Spool(config.data_dir).read_token() or "") if config.spool else "",
            remote_spool=self._data is not None))
        hello_wait = 1.0 if key_differs else max(2.0, config.node_timeout_s)
        reply = await link.recv(timeout=hello_wait)
        if reply is None:
            if key_differs:
                raise FatalRefusal(AuthenticationError(
                    f"the coordinator at {config.coordinator_host}:{config.coordinator_port} "
                    "uses another cluster key: give every node the same SABOT_CLUSTER_KEY or "
                    f"SABOT_CLUSTER_KEY_FILE (this node's key came from {self._keys.source}, "
                    f"fingerprint {self._keys.fingerprint}; the coordinator's: "
                    f"{info.get('key_fingerprint')})"))
            raise CoordinatorUnavailableError(
                f"no answer to hello from {endpoint} within {hello_wait:g} s")
        if isinstance(reply, m.Refused):
            self._refused(reply)
            raise CoordinatorUnavailableError(f"refused: {reply.message}")
        if not isinstance(reply, m.Welcome):
            raise CoordinatorUnavailableError(f"expected welcome, got {reply.OP}")
        self.coordinator_id = reply.coordinator_id
        link.last_heard = time.monotonic()
        offered = int(reply.chunk_bytes)
        link.chunk_bytes = min(max(offered, 64 << 10), 1 << 30) if offered > 0 else 0
        # The same-host data plane: morsels in the spool are read, big results written there.
        shared = int(reply.spool) in (SHARED, SHARED_SYNCED) and config.spool
        spool: Spool | None = Spool(config.data_dir) if shared else None
        if int(reply.spool) == REMOTE and self._data is not None:
            # Another host: the spool's files are got and put through the data port.
            spool = StagedSpool(config.data_dir, self.node_id, self._data)
        self.router.spool = link.spool = spool
        self.router.spool_sync = link.spool_sync = int(reply.spool) == SHARED_SYNCED
        if self.state is WorkerState.CONNECTING:  # (not when stop() came meanwhile)
            self._set_state(WorkerState.REGISTERED)
        log.info("worker %s registered with coordinator %s at %s (%d slots, HTTP port %s)",
                 self.node_id, reply.coordinator_id, endpoint, self.slots, self.http_port)
        session_over = link.begin_session()
        tasks = [asyncio.ensure_future(link.receive_loop()),
                 asyncio.ensure_future(self._heartbeat_loop()),
                 asyncio.ensure_future(link.send_loop()),
                 asyncio.ensure_future(link.chunk_loop()),
                 asyncio.ensure_future(session_over.wait())]
        try:
            done, _ = await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
            for t in done:
                t.result()
            link.raise_if_refused()
        finally:
            for t in tasks:
                t.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)

    def _refused(self, reply: m.Refused) -> None:
        if reply.code in FATAL_REFUSALS:
            raise FatalRefusal(exception_for(reply.code, reply.message))

    def _dispatch(self, msg: m.Message) -> bool:
        """Act on one message from the coordinator; False ends the session."""
        if isinstance(msg, m.Assign):
            self.router.assign(msg)
        elif isinstance(msg, m.CancelMorsel):
            self._link.cancel_result(msg.job_id, msg.morsel)
            if self.router.cancel(msg.job_id, msg.morsel):
                log.info("morsel %d of job %s cancelled: %s", msg.morsel, msg.job_id,
                         msg.reason)
        elif isinstance(msg, m.RunTask):
            self.tasks.run(msg)
        elif isinstance(msg, m.TaskPeers):
            self.tasks.peers(msg)
        elif isinstance(msg, m.TaskControl):
            self.tasks.control(msg)
        elif isinstance(msg, m.CancelTask):
            self.tasks.cancel(msg.pipeline_id, msg.reason, msg.before_attempt)
        elif isinstance(msg, m.Refused):
            if msg.code == ErrorCode.UNKNOWN_SESSION:
                log.info("worker %s: the coordinator does not know this session "
                         "(it restarted); registering again", self.node_id)
                return False
            self._refused(msg)
            return False
        # HeartbeatAck and Welcome only refresh the link's last_heard.
        return True

    def _read_done(self) -> None:
        # All that came in one read is queued: its engine calls start now, not a turn later.
        self.router.start_queued()

    async def _heartbeat_loop(self) -> None:
        period = self.config.heartbeat_s
        timeout = self.config.node_timeout_s
        link = self._link
        while True:
            await asyncio.sleep(period)
            silent = time.monotonic() - link.last_heard
            if silent > timeout:
                log.warning("worker %s: no word from the coordinator for %.1f s; reconnecting",
                            self.node_id, silent)
                return
            util = self._cpu.percent() if self._cpu is not None else 0.0
            await link.send_now(m.Heartbeat(len(self.router.running), self.router.items_done,
                                            util, self.draining))

    def _observe_cost(self, seconds: float) -> None:
        """Adapt the credits (SABOT_WORKER_SLOTS=auto) to the recent cost per morsel."""
        if not self._adaptive:
            return
        last = self._morsel_s
        cost = seconds if last is None else 0.8 * last + 0.2 * seconds
        self._morsel_s = cost
        if self.draining:
            return
        want = max(self.base_slots, min(self.slots, math.ceil(CREDIT_WORK_S / max(cost, 1e-6))))
        # Only a change by half or double is sent: costs that wobble around a value would
        # otherwise send a credit every few morsels.
        if want >= 2 * self.credits or 2 * want <= self.credits or (
                want != self.credits and want in (self.base_slots, self.slots)
                and abs(want - self.credits) * 2 >= self.credits):
            self.credits = want
            self._link.post(m.Credit(want))

    # -- views --------------------------------------------------------------------------------
    def _load(self) -> dict[str, Any]:
        return {"queue_depth": len(self.router.running),
                "utilization_percent": self._cpu.percent() if self._cpu else 0.0}

    def info(self) -> dict[str, Any]:
        router = self.router
        return {
            "node_id": self.node_id, "role": "worker",
            "state": NodeState.ALIVE if self.registered.is_set() else NodeState.CONNECTING,
            "address": self.advertise_host, "http_port": self.http_port, "pid": os.getpid(),
            "cores": self.cores, "slots": self.slots, "credits": self.credits,
            "running": len(router.running),
            "morsels_done": router.morsels_done, "morsels_failed": router.morsels_failed,
            "items_done": router.items_done, "coordinator_id": self.coordinator_id,
            "coordinator": f"{self.config.coordinator_host}:{self.config.coordinator_port}",
            "draining": self.draining,
        }


__all__ = ["DRAIN_GRACE_S", "Worker"]
