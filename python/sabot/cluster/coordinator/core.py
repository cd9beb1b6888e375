"""The coordinator's core thread: its poll loop, and the objects it drives.

One core thread owns all scheduling state, the ROUTER socket and the journal; it never waits
on anything but its poller. Each turn of its loop reads every ready message, runs timers,
hands out morsels under the workers' credits, commits the journal once and only then sends the
replies, so a submit is acknowledged only once journaled and a job is reported complete only
once its results are stored. A journal that cannot be written (a full disk) does not stop the
loop: the submits of that commit are refused (``journal_unwritable``, HTTP 507), new ones too
while it lasts, everything else is served from memory and written when a retry (every
journal.RETRY_S, and on a submit) succeeds. Local callers (the HTTP API, the in-process API handle) reach the
core through a command queue and get the same reply messages a ZeroMQ client gets.

What the loop drives are plain objects the thread owns: the :class:`NodeRegistry` (workers),
the :class:`JobTable` (jobs and their states), the :class:`Dispatcher` (the morsel queue,
credits, retries, timeouts), the :class:`ResultPager` (results to readers) and the
:class:`Outbox` (what the turn sends). A message is handed to the one that handles it; the
core itself handles the messages that concern several (hello, goodbye, submit, stats).
"""

from __future__ import annotations

import concurrent.futures
import logging
import sqlite3
import threading
import time
from collections.abc import Callable
from functools import partial
from typing import Any

import zmq

from ...config import Config
from ...errors import CoordinatorUnavailableError, ProtocolError, VersionMismatchError
from ...metrics import Metrics
from ...states import JournalState, NodeState
from ...system import system_resources
from ...version import __version__
from .. import transport
from ..journal import Journal
from ..protocol import (
    PROTOCOL_VERSION,
    ErrorCode,
    ReplayGuard,
    check_frames,
    decode_frame,
)
from ..protocol import messages as m
from ..result_files import ResultFiles
from ..security import ClusterKeys
from ..spool import NOT_SHARED, REMOTE, SHARED, SHARED_SYNCED, Spool
from .dispatcher import Dispatcher
from .inbox import Inbox
from .job_table import JobTable
from .large_buffers import return_large_buffers_to_os
from .node_registry import NodeRegistry
from .outbox import Local, Outbox, Target
from .pipeline_table import PipelineTable
from .rate_limited_log import RateLimitedLog
from .result_pager import ResultPager, Waiter
from .spool_server import SpoolServer

log = logging.getLogger(__name__)

#: Messages read per loop turn before timers and dispatch get their turn.
_BATCH = 2048
#: Longest time results may wait in memory for their journal commit when nobody asked yet.
_COMMIT_EVERY_S = 0.05

#: After a connection on the ROUTER closed, the alive workers are probed this long after it
#: (seconds): the ROUTER may learn of the closed connection a moment after its monitor.
_PROBE_AFTER_S = (0.0, 0.05, 0.25, 1.0)

#: Messages a registered client (not a worker) may send.
_CLIENT_MESSAGES = (m.SubmitJob, m.GetStatus, m.CancelJob, m.FetchResults, m.GetStats,
                    m.SubmitPipeline, m.GetPipeline)

_DEAD = NodeState.DEAD


class CoordinatorCore(threading.Thread):
    """The scheduling thread. Start with :meth:`start`; talk to it with :meth:`call`."""

    def __init__(self, config: Config, keys: ClusterKeys, metrics: Metrics, node_id: str,
                 zmq_host: str, zmq_port: int) -> None:
        super().__init__(name="sabot-coordinator", daemon=True)
        # Results are big and short-lived here: freed, they must leave the process's RSS.
        return_large_buffers_to_os()
        self.config = config
        self.keys = keys
        self.metrics = metrics
        self.node_id = node_id
        self.ctx = zmq.Context()
        self.auth = transport.start_authenticator(self.ctx, keys)
        try:
            self.router, self.zmq_port = transport.server_socket(self.ctx, keys, zmq_host,
                                                                 zmq_port)
        except OSError:
            self.auth.stop()
            self.ctx.term()
            raise
        self.monitor = transport.monitor_socket(self.router)
        try:
            self.journal = Journal(
                config.data_dir, config.journal_sync,
                owner=f"coordinator {node_id} (ZeroMQ port {self.zmq_port})")
        except BaseException:
            self.monitor.close(0)
            self.router.disable_monitor()
            self.router.close(0)
            self.auth.stop()
            self.ctx.term()
            raise
        self._guard = ReplayGuard()
        self._inbox = Inbox()
        self._running = True
        self._ready = threading.Event()
        self._last_commit = time.monotonic()
        self._protocol_errors = 0
        self._bytes_received = 0  # of the message frames peers sent
        #: Why the core thread ended, when it failed (None while it runs or after a stop).
        self.failure: str | None = None
        self._rejects = RateLimitedLog(log)
        self._probes: list[float] = []  # when to look for workers whose connection closed
        self._next_spool_sweep = 0.0  # UNIX time of the next sweep of unclaimed spool dirs
        #: Acks of this turn's submits, sent once their insert is written (else refused).
        self._acks: list[tuple[Target, m.SubmitAck]] = []

        self._outbox = Outbox(self.router)
        send = self._outbox.send
        self._send = send
        self._registry = NodeRegistry(config, metrics, self._guard, send)
        self._by_peer = self._registry.by_peer
        self._nodes = self._registry.nodes
        # The pager's waiters: a finished job someone waits on stays in the job table.
        waiters: dict[str, list[Waiter]] = {}
        # Big results are written by a thread of their own, which wakes the loop when done.
        self._files = ResultFiles(config.data_dir, self._inbox.wake)
        #: The same-host data plane: peers whose hello shows this token share the data dir.
        self._spool = Spool(config.data_dir)
        self._spool_token = ""
        if config.spool:
            try:
                self._spool_token = self._spool.create_token()
            except OSError as exc:
                log.warning("the spool under %s cannot be set up (%s): peers on this host send "
                            "every byte over ZeroMQ", config.data_dir, exc)
        #: The data port: the spool for peers that do not share the data dir.
        self.data_server: SpoolServer | None = None
        if self._spool_token:
            self.data_server = self._open_data_port(zmq_host)
        self._jobs = JobTable(config, self.journal, metrics, self._registry, send, waiters,
                              self._files)
        self._dispatcher = Dispatcher(config, self._jobs, self._registry, self.journal, metrics,
                                      send)
        self._pager = ResultPager(config, self._jobs, self.journal, send, waiters)
        self._pipelines = PipelineTable(config, self._registry, send)
        self._handlers = self._handler_table()
        self._recover()

    def _open_data_port(self, host: str) -> SpoolServer | None:
        """The data port's server, bound (not started); None when the default port is taken
        (peers that do not share the data dir then send their bytes over ZeroMQ, as before
        the data port); an explicit SABOT_DATA_PORT that cannot be bound is an error."""
        config = self.config
        try:
            return SpoolServer(self.ctx, self.keys, config.data_dir, host,
                               config.effective_data_port,
                               sync=config.journal_sync == "full")
        except OSError as exc:
            if config.data_port is not None:
                self.journal.close()
                self._close_sockets()
                raise OSError(f"SABOT_DATA_PORT={config.data_port}: {exc}") from None
            log.warning("no data port (%s): peers that do not share the data dir %s send "
                        "their bytes over the ZeroMQ port; set SABOT_DATA_PORT to a free port",
                        exc, config.data_dir)
            return None

    def _handler_table(self) -> dict[type, Callable[[Target, Any, int], None]]:
        """Who handles each message a coordinator accepts (the core itself for those that
        concern several of its parts)."""
        return {
            m.Hello: self._on_hello,
            m.Heartbeat: self._registry.on_heartbeat,
            m.Credit: self._registry.on_credit,
            m.Goodbye: self._on_goodbye,
            m.MorselResult: self._dispatcher.on_result,
            m.MorselResults: self._dispatcher.on_results,
            m.ResultChunk: self._dispatcher.on_chunk,
            m.MorselFailed: self._dispatcher.on_failed,
            m.SubmitJob: self._on_submit,
            m.GetStatus: self._jobs.on_status,
            m.CancelJob: self._jobs.on_cancel,
            m.FetchResults: self._pager.on_fetch,
            m.GetStats: self._on_stats,
            m.SubmitPipeline: self._pipelines.on_submit,
            m.GetPipeline: self._pipelines.on_get,
            m.TaskReady: self._pipelines.on_ready,
            m.TaskDone: self._pipelines.on_done,
            m.TaskEvent: self._pipelines.on_event,
        }

    # -- API for other threads ----------------------------------------------------------------
    def call(self, msg: m.Message) -> concurrent.futures.Future[Any]:
        """Handle ``msg`` as if a client sent it; the future gets the reply message."""
        return self._inbox.put(msg)

    def call_fn(self, fn: Callable[[], Any]) -> concurrent.futures.Future[Any]:
        """Run ``fn`` on the core thread (consistent reads of its state)."""
        return self._inbox.put(fn)

    def query(self, fn: Callable[[], Any], timeout: float = 10.0) -> Any:
        if not self.is_alive():
            raise CoordinatorUnavailableError("the coordinator is not running")
        return self.call_fn(fn).result(timeout)

    def stop(self) -> None:
        self._running = False
        self._inbox.wake()

    def wait_ready(self, timeout: float) -> bool:
        return self._ready.wait(timeout)

    # -- recovery -----------------------------------------------------------------------------
    def _recover(self) -> None:
        jobs = self._jobs.recover()
        for job in jobs:
            self._dispatcher.enqueue(job)
        if jobs:
            log.info("resumed %d unfinished job(s) from the journal %s (%d morsels to run)",
                     len(jobs), self.journal.path, self._dispatcher.queued)
        self.journal.commit()

    # -- main loop ----------------------------------------------------------------------------
    def run(self) -> None:
        poller = zmq.Poller()
        poller.register(self.router, zmq.POLLIN)
        poller.register(self.monitor, zmq.POLLIN)
        poller.register(self._inbox.wake_fd, zmq.POLLIN)
        if self.data_server is not None:
            self.data_server.start()
        self._ready.set()
        try:
            while self._running:
                events = dict(poller.poll(self._poll_timeout_ms()))
                if self.router in events:
                    self._read_router()
                if self._inbox.wake_fd in events:
                    self._read_commands()
                if self.monitor in events:
                    for _ in range(64):
                        if not self.monitor.poll(0):
                            break
                        if transport.log_monitor_event(self.monitor) == zmq.EVENT_DISCONNECTED:
                            self._probe_soon(time.monotonic())
                self._turn()
        except Exception as exc:
            self.failure = f"{type(exc).__name__}: {exc}"
            if isinstance(exc, sqlite3.Error):
                self.failure += (f" (the journal {self.journal.path}, under SABOT_DATA_DIR="
                                 f"{self.config.data_dir})")
            log.exception("the coordinator core failed: %s", self.failure)
            raise
        finally:
            self._shutdown()

    def _turn(self) -> None:
        now = time.monotonic()
        self._jobs.take_written()
        lost = self._jobs.take_lost()
        if lost:
            self._dispatcher.requeue_lost(lost)
        # Chunks on their way to disk are acknowledged: their workers send on.
        self._dispatcher.chunks.acks()
        self._timers(now)
        self._dispatcher.dispatch(now)
        self._pager.serve(now)
        # Commit before any answer that depends on the journal (acks, results, states).
        # Turns that only take in results and hand out morsels are committed together, at most
        # _COMMIT_EVERY_S apart: a crash then costs re-running those morsels, never a result a
        # client has seen.
        outbox = self._outbox
        if outbox.need_commit or now - self._last_commit >= _COMMIT_EVERY_S:
            outbox.send_before_commit(self._by_peer)
            self._jobs.commit()  # (False while it cannot be written: see _settle_acks)
            if self._acks:
                self._settle_acks()
            outbox.need_commit = False
            self._last_commit = now
        outbox.flush(self._by_peer)

    def _settle_acks(self) -> None:
        """Acknowledge the submits whose insert is written; refuse the others (the journal
        cannot be written) and take their jobs back."""
        acks, self._acks = self._acks, []
        journal = self.journal
        failed = {ack.job_id for _, ack in acks if journal.insert_pending(ack.job_id)}
        for job_id in failed:
            self._jobs.discard(job_id)
        if failed:
            log.warning("refused %d submit(s): the journal cannot be written (%s)", len(failed),
                        journal.problem)
        for peer, ack in acks:
            self._send(peer, self._jobs.unwritable_reply(ack.request_id)
                       if ack.job_id in failed else ack)

    def _retry_journal(self) -> bool:
        """Try to write what waits for an unwritable journal; True once it is writable."""
        self._jobs.flush_results()
        if self.journal.retry():
            self._jobs.written()
            self._jobs.evict()
            return True
        return False

    def _timers(self, now: float) -> None:
        if self.journal.retry_due(now):
            self._retry_journal()
        registry = self._registry
        if self._probes and self._probes[0] <= now:
            self._probe_connections(now)
        for node in registry.silent(now):
            registry.mark_dead(node, now)
            self._dispatcher.release(node, f"worker {node.node_id} stopped answering")
            self._pipelines.lost(node, f"worker {node.node_id} stopped answering")
        registry.forget_gone(now)
        self._pipelines.tick(now)
        self._dispatcher.expire_morsels(now)
        self._dispatcher.sweep_chunks()
        wall = time.time()
        self._jobs.purge(wall)
        if self._spool_token and wall >= self._next_spool_sweep:
            self._next_spool_sweep = wall + min(60.0, self.config.spool_orphan_s)
            # (on the result files' thread: removing a big orphan must not hold the core)
            self._files.then(partial(self._spool.sweep, self._jobs.active_ids(),
                                     self.config.spool_orphan_s, wall))

    def _probe_soon(self, now: float) -> None:
        """A connection closed: look for the worker it was at once and a few times after."""
        self._probes = sorted({*self._probes, *(now + s for s in _PROBE_AFTER_S)})

    def _probe_connections(self, now: float) -> None:
        """Mark dead (and requeue the morsels of) every alive worker whose connection is gone:
        a killed worker is noticed when its TCP connection closes, not after the heartbeat
        timeout."""
        self._probes = [t for t in self._probes if t > now]
        registry = self._registry
        for node in registry.alive():
            if self._outbox.has_queued(node.peer):
                continue  # just registered, its Welcome not sent yet: a later probe asks
            if not self._outbox.reachable(node.peer):
                registry.mark_dead(node, now, disconnected=True)
                self._dispatcher.release(node, f"worker {node.node_id}'s connection closed")
                self._pipelines.lost(node, f"worker {node.node_id}'s connection closed")

    def _poll_timeout_ms(self) -> int:
        # Timers need at most a tenth of the heartbeat period of resolution.
        t = min(self.config.heartbeat_s, self.config.node_timeout_s) / 4
        if self.config.morsel_timeout_s:
            t = min(t, self.config.morsel_timeout_s / 4)
        if self._probes:
            t = min(t, max(0.0, self._probes[0] - time.monotonic()))
        return max(5, min(250, int(t * 1000)))

    def _shutdown(self) -> None:
        try:
            # The files being written are finished first, so the journal records them.
            self._files.close()
            self._jobs.take_written()
            self._jobs.flush_results()
            self.journal.close()
        except Exception:
            log.exception("closing the journal failed")
        # Local callers still waiting get an answer rather than a hang.
        self._pager.abandon()
        self._close_sockets()
        self._inbox.close(self.failure)

    def _close_sockets(self) -> None:
        server = self.data_server
        if server is not None:
            server.stop()
            if server.is_alive():
                server.join(5)
            else:
                server.sock.close(0)
        self.monitor.close(0)
        self.router.disable_monitor()
        self.router.close(0)
        self.auth.stop()
        self.ctx.term()

    # -- reading --------------------------------------------------------------------------------
    def _read_router(self) -> None:
        router = self.router
        for _ in range(_BATCH):
            try:
                frames = router.recv_multipart(zmq.NOBLOCK)
            except zmq.Again:
                return
            peer = frames[0]
            self._bytes_received += sum(len(f) for f in frames) - len(peer)
            try:
                check_frames(frames[1:])
            except ProtocolError as exc:
                self._protocol_error(peer, str(exc))
                continue
            # Each frame is one message (a peer may send several together), handled in order;
            # a bad one is rejected alone.
            for frame in frames[1:]:
                self._read_frame(peer, frame)

    def _read_frame(self, peer: bytes, frame: bytes) -> None:
        try:
            env = decode_frame(frame)
            if not self._guard.check(peer, env):
                self._send(peer, m.Refused(
                    ErrorCode.UNKNOWN_SESSION, "this coordinator does not know the session (it "
                    "restarted, or the peer never said hello): say hello again",
                    PROTOCOL_VERSION, self.config.cluster_name))
                return
        except VersionMismatchError as exc:
            self._protocol_error(peer, f"{exc}; run the same Sabot version on every node")
            return
        except ProtocolError as exc:
            self._protocol_error(peer, str(exc))
            return
        try:
            self._handle(peer, env.msg, env.version)
        except Exception as exc:
            log.exception("handling %s failed", env.msg.OP)
            self.metrics.record_error("coordinator_internal")
            rid = getattr(env.msg, "request_id", None)
            if rid is not None:
                self._send(peer, m.ErrorReply(rid, ErrorCode.INTERNAL,
                                              f"{type(exc).__name__}: {exc}"))

    def _protocol_error(self, peer: bytes, text: str) -> None:
        self._protocol_errors += 1
        self.metrics.record_error("protocol")
        self._rejects.log("protocol", logging.WARNING, "rejected a message from peer %s: %s",
                          peer.hex()[:10], text)

    def _read_commands(self) -> None:
        for item, fut in self._inbox.take():
            try:
                if isinstance(item, m.Message):
                    self._handle(Local(fut), item, PROTOCOL_VERSION)
                else:
                    self._jobs.commit()
                    fut.set_result(item())
            except Exception as exc:
                if not fut.done():
                    fut.set_exception(exc)

    # -- message handlers ---------------------------------------------------------------------
    def _handle(self, peer: Target, msg: m.Message, version: int) -> None:
        handler = self._handlers.get(type(msg))
        if handler is None:
            if isinstance(peer, bytes):
                self._protocol_error(peer, f"{msg.OP} is not a message a coordinator accepts")
            return
        if isinstance(peer, bytes):
            node_id = self._by_peer.get(peer)
            if node_id is not None:
                node = self._nodes[node_id]
                node.last_seen = time.monotonic()
                if node.state is _DEAD and type(msg) is not m.Hello:
                    self._registry.revive(node)
            elif type(msg) not in _CLIENT_MESSAGES and type(msg) is not m.Hello:
                self._send(peer, m.Refused(ErrorCode.UNKNOWN_SESSION,
                                           "register with hello first", PROTOCOL_VERSION,
                                           self.config.cluster_name))
                return
        handler(peer, msg, version)

    def _on_hello(self, peer: Target, msg: m.Hello, version: int) -> None:
        if not isinstance(peer, bytes):
            return
        name = self.config.cluster_name
        refusal = self._registry.refusal(msg, version)
        if refusal is not None:
            code, text = refusal
            log.warning("refused node %r from peer %s: %s", msg.node_id, peer.hex()[:10], text)
            self._guard.forget(peer)
            self._send(peer, m.Refused(code, text, PROTOCOL_VERSION, name))
            return
        shared = bool(self._spool_token) and msg.spool_token == self._spool_token
        remote = not shared and bool(msg.remote_spool) and self.data_server is not None
        if msg.role == "worker":
            node = self._registry.register(peer, msg, shared or remote)
            # A new session does not carry the old one's morsels: hand them out again (a late
            # result from the old session is then a duplicate, and ignored).
            self._dispatcher.release(node, f"worker {node.node_id} started a new session",
                                     refund_all=True)
            self._pipelines.lost(node, f"worker {node.node_id} started a new session")
        # A worker sends its big results in chunks (CHUNK_BYTES each) to this coordinator.
        spool = REMOTE if remote else NOT_SHARED if not shared else (
            SHARED_SYNCED if self.config.journal_sync == "full" else SHARED)
        self._send(peer, m.Welcome(self.node_id, name, PROTOCOL_VERSION, self.config.heartbeat_s,
                                   self.config.node_timeout_s,
                                   m.CHUNK_BYTES if msg.role == "worker" else 0, spool,
                                   self.data_server.port if remote and self.data_server else 0))

    def _on_goodbye(self, peer: Target, msg: m.Goodbye, version: int) -> None:
        node = self._registry.node_of(peer)
        if node is None:
            return
        returned = {(str(j), int(i)) for j, i in (msg.returned or []) if isinstance(j, str)}
        self._registry.leave(node, msg.reason, len(returned))
        # A morsel handed back did not fail: it does not use up an attempt.
        self._dispatcher.release(node, f"worker {node.node_id} left", handed_back=returned)
        self._pipelines.lost(node, f"worker {node.node_id} left")

    def _on_submit(self, peer: Target, msg: m.SubmitJob, version: int) -> None:
        journal = self.journal
        if journal.retry_due(time.monotonic(), soon=True):
            self._retry_journal()
        job, reply = self._jobs.submit(msg)
        if job is not None:
            self._dispatcher.enqueue(job)
        if isinstance(reply, m.SubmitAck) and journal.insert_pending(reply.job_id):
            # Answered once the insert is written (this turn's commit), or refused then.
            self._acks.append((peer, reply))
            self._outbox.need_commit = True
        else:
            self._send(peer, reply)

    def _on_stats(self, peer: Target, msg: m.GetStats, version: int) -> None:
        self._send(peer, m.Stats(msg.request_id, self.stats()))

    # -- views (core thread) -------------------------------------------------------------------
    def _data_port_counters(self) -> dict[str, int]:
        server = self.data_server
        if server is None:
            return {}
        return {"data_port_bytes_in": server.bytes_in, "data_port_bytes_out": server.bytes_out,
                "data_port_refused": server.refused}

    def stats(self) -> dict[str, Any]:
        registry = self._registry
        jobs = self._jobs.count_by_state()
        total, busy = registry.slots()
        return {
            "cluster_name": self.config.cluster_name,
            "coordinator": {"node_id": self.node_id, "zmq_port": self.zmq_port,
                            "data_port": self.data_server.port if self.data_server else None,
                            "protocol_version": PROTOCOL_VERSION, "version": __version__,
                            "journal": str(self.journal.path),
                            "journal_status": self.journal.status()},
            "nodes": registry.info(time.monotonic()),
            "nodes_by_state": registry.count_by_state(),
            "jobs": {"active": JobTable.active(jobs), "by_state": jobs,
                     "recent": self._jobs.recent(20)},
            "queue_depth": self._dispatcher.queued,
            "slots": {"total": total, "busy": busy},
            "counters": {**self._dispatcher.counters, "protocol_errors": self._protocol_errors,
                         "jobs_expired": self._jobs.expired_count,
                         "bytes_received": self._bytes_received,
                         "bytes_sent": self._outbox.bytes_sent,
                         **self._data_port_counters()},
            "results": self._results_status(),
            "system_resources": system_resources(),
        }

    def _results_status(self) -> dict[str, Any]:
        """Where results are: held in memory (within SABOT_RESULT_MEMORY_MB), being written to
        their files, and what the retention keeps on disk."""
        jobs = self._jobs
        retention = jobs.retention
        return {"memory": jobs.memory.status(), "writing_bytes": self._files.queued_bytes,
                "retained": {"jobs": len(retention), "bytes": retention.total_bytes,
                             "max_bytes": retention.max_bytes, "ttl_s": retention.ttl_s},
                "files_dir": str(self._files.root)}

    def load(self) -> dict[str, Any]:
        """For the metrics gauges; called from other threads, reads plain counters only."""
        # Utilization is CPU, as each worker reports it (the same figure as /nodes), not the
        # share of credits in use: slots are full whenever work is queued, busy or not.
        return {"queue_depth": self._dispatcher.queued,
                "utilization_percent": self._registry.cpu_percent(),
                "jobs": self._jobs.count_by_state(), "nodes": self._registry.count_by_state(),
                "pipelines": self._pipelines.metrics()}

    def journal_problem(self) -> str | None:
        """Why the journal cannot be written, while it cannot (safe from any thread)."""
        journal = self.journal
        return journal.problem if journal.state is JournalState.UNWRITABLE else None

    def nodes_info(self) -> list[dict[str, Any]]:
        return self._registry.info(time.monotonic())

    def list_pipelines(self) -> list[dict[str, Any]]:
        return self._pipelines.list()

    def pipeline_action(self, pipeline_id: str, action: str, **kw: Any) -> dict[str, Any]:
        """``stop`` (``savepoint``), ``resume`` (``instances``) or ``cancel`` a pipeline;
        KeyError for an unknown one, ValueError for a request its state refuses."""
        table = self._pipelines
        if action == "stop":
            return table.stop(pipeline_id, bool(kw.get("savepoint", True)))
        if action == "resume":
            return table.resume(pipeline_id, kw.get("instances"))
        if action == "cancel":
            return table.cancel(pipeline_id)
        raise ValueError(f"unknown action {action!r}: stop, resume or cancel")

    def list_jobs(self, limit: int) -> list[dict[str, Any]]:
        return self._jobs.listed(limit)

    def result_page(self, job_id: str, offset: int, limit: int | None
                    ) -> tuple[dict[str, Any], list[tuple[str, int, bytes]], int]:
        """(job dict, result morsels covering items [offset, offset+limit), item offset of the
        first morsel) for the HTTP API."""
        return self._pager.page(job_id, offset, limit)


__all__ = ["CoordinatorCore"]
