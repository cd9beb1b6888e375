"""The coordinator: job queue, morsel scheduling, failure handling, journal, HTTP and ZeroMQ.

One core thread owns all scheduling state, the ROUTER socket and the journal; it never waits
on anything but its poller. Each turn of its loop reads every ready message, runs timers,
hands out morsels under the workers' credits, commits the journal once and only then sends the
replies, so a submit is acknowledged only once journaled and a job is reported complete only
once its results are stored. Local callers (the HTTP API, the in-process API handle) reach the
core through a command queue and get the same reply messages a ZeroMQ client gets.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import heapq
import logging
import os
import queue
import socket
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import zmq

from .. import __version__
from ..config import Config
from ..errors import (
    CoordinatorUnavailableError,
    JobNotFoundError,
    ProtocolError,
    UnknownProcessorError,
    VersionMismatchError,
)
from ..http.backend import FINISHED_STATES
from ..metrics import Metrics, get_metrics
from ..processors import list_processors, load_processor_modules
from ..system import system_resources
from . import transport
from .journal import JobRow, Journal, MorselRow
from .protocol import PROTOCOL_VERSION, ReplayGuard, Sender, check_frames, decode_frame, payload
from .protocol import MAX_FRAMES
from .protocol import messages as m
from .security import ClusterKeys

log = logging.getLogger(__name__)

#: Messages read per loop turn before timers and dispatch get their turn.
_BATCH = 2048
#: Finished jobs whose results stay in memory (older ones are read from the journal).
_FINISHED_IN_MEMORY = 64
#: How often expired jobs are purged from the journal.
_PURGE_EVERY_S = 60.0
#: Longest wait a FetchResults may ask for.
_MAX_WAIT_MS = 60_000
_ACTIVE = ("pending", "running")
#: Longest time results may wait in memory for their journal commit when nobody asked yet.
_COMMIT_EVERY_S = 0.05
#: Log lines per second per kind of rejected message.
_LOG_BURST = 10
#: A dead or departed worker stays in the node table (and the stats) for this many
#: SABOT_NODE_TIMEOUT_S, then is forgotten, so churning workers do not grow the table forever.
#: (One heard from again after that registers anew: it is told its session is unknown.)
FORGET_AFTER_TIMEOUTS = 10


@dataclass(slots=True)
class _Morsel:
    idx: int
    offset: int
    items: int
    encoding: str
    data: bytes | None
    attempts: int = 0
    done: bool = False
    node: str | None = None  # worker running it now
    deadline: float = 0.0
    result: tuple[str, int, bytes] | None = None
    last_error: str | None = None


@dataclass(slots=True)
class _Job:
    job_id: str
    seq: int
    status: str
    priority: int
    func_name: str
    func_pickle: bytes | None
    result_kind: str
    morsels: list[_Morsel]
    total_items: int
    created_at: float
    started_at: float | None = None
    finished_at: float | None = None
    error: str | None = None
    done_morsels: int = 0
    done_items: int = 0

    def summary(self) -> dict[str, Any]:
        total = self.total_items
        done = self.done_items
        if self.status == "completed":
            fraction = 1.0
        else:
            fraction = done / total if total else 0.0
        return {
            "job_id": self.job_id, "status": self.status, "priority": self.priority,
            "processor": self.func_name, "items": total,
            "progress": {"done": done, "total": total, "fraction": round(fraction, 6),
                         "morsels_done": self.done_morsels, "morsels_total": len(self.morsels)},
            "error": self.error, "created_at": self.created_at,
            "started_at": self.started_at, "finished_at": self.finished_at,
            "result_kind": self.result_kind,
        }


@dataclass(slots=True)
class _Node:
    node_id: str
    peer: bytes
    host: str
    http_port: int
    pid: int
    cores: int
    slots: int
    capabilities: list[str]
    processors: list[str]
    credits: int
    registered_at: float
    last_seen: float
    state: str = "alive"
    state_since: float = 0.0  # monotonic time of the last change of state
    inflight: dict[tuple[str, int], int] = field(default_factory=dict)
    funcs_sent: set[str] = field(default_factory=set)
    morsels_done: int = 0
    items_done: int = 0
    morsels_failed: int = 0
    utilization: float = 0.0
    items_reported: int = 0

    @property
    def free(self) -> int:
        return self.credits - len(self.inflight) if self.state == "alive" else 0

    def info(self, now: float) -> dict[str, Any]:
        return {
            "node_id": self.node_id, "role": "worker", "state": self.state,
            "address": self.host, "http_port": self.http_port, "pid": self.pid,
            "cores": self.cores, "slots": self.slots, "credits": self.credits,
            "running": len(self.inflight), "morsels_done": self.morsels_done,
            "morsels_failed": self.morsels_failed, "items_done": self.items_done,
            "utilization_percent": round(self.utilization, 2),
            "capabilities": list(self.capabilities),
            "registered_at": self.registered_at,
            "last_heartbeat_age_s": round(max(0.0, now - self.last_seen), 3),
        }


class _Local:
    """A reply target inside this process: the reply resolves a future."""

    __slots__ = ("future",)

    def __init__(self, future: concurrent.futures.Future[Any]) -> None:
        self.future = future


Target = bytes | _Local


class CoordinatorCore(threading.Thread):
    """The scheduling thread. Start with :meth:`start`; talk to it with :meth:`call`."""

    def __init__(self, config: Config, keys: ClusterKeys, metrics: Metrics, node_id: str,
                 zmq_host: str, zmq_port: int) -> None:
        super().__init__(name="sabot-coordinator", daemon=True)
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
        self.journal = Journal(config.data_dir, config.journal_sync)
        self._sender = Sender()
        self._guard = ReplayGuard()
        self._wake_r, self._wake_w = os.pipe()
        os.set_blocking(self._wake_r, False)
        self._commands: queue.SimpleQueue[tuple[Any, Any]] = queue.SimpleQueue()
        self._out: list[tuple[Target, m.Message]] = []
        self._running = True
        self._ready = threading.Event()
        self._jobs: dict[str, _Job] = {}
        self._finished: list[str] = []  # finished job ids still in memory, oldest first
        self._queue: list[tuple[int, int, int, str]] = []  # (-priority, job seq, idx, job id)
        self._pending = 0  # morsels queued, not assigned
        self._nodes: dict[str, _Node] = {}
        self._by_peer: dict[bytes, str] = {}  # routing id -> node id (workers)
        self._waiters: dict[str, list[tuple[Target, m.FetchResults, float]]] = {}
        self._touched: set[str] = set()
        self._turn_results: list[tuple[str, bytes, int, int, str, int]] = []
        self._turn_items = 0
        self._need_commit = False
        self._last_commit = time.monotonic()
        self._rr = 0
        self._next_seq = self.journal.max_seq() + 1
        self._next_purge = 0.0
        self._next_timeout_scan = 0.0
        self._log_budget: dict[str, tuple[float, int, int]] = {}
        self.counters = {"morsels_assigned": 0, "morsels_completed": 0, "morsels_failed": 0,
                         "morsels_requeued": 0, "duplicates_ignored": 0,
                         "protocol_errors": 0, "morsels_timed_out": 0}
        self._recover()

    # -- API for other threads ----------------------------------------------------------------
    def call(self, msg: m.Message) -> concurrent.futures.Future[Any]:
        """Handle ``msg`` as if a client sent it; the future gets the reply message."""
        fut: concurrent.futures.Future[Any] = concurrent.futures.Future()
        self._commands.put((msg, fut))
        self._wake()
        return fut

    def call_fn(self, fn: Callable[[], Any]) -> concurrent.futures.Future[Any]:
        """Run ``fn`` on the core thread (consistent reads of its state)."""
        fut: concurrent.futures.Future[Any] = concurrent.futures.Future()
        self._commands.put((fn, fut))
        self._wake()
        return fut

    def query(self, fn: Callable[[], Any], timeout: float = 10.0) -> Any:
        if not self.is_alive():
            raise CoordinatorUnavailableError("the coordinator is not running")
        return self.call_fn(fn).result(timeout)

    def stop(self) -> None:
        self._running = False
        self._wake()

    def wait_ready(self, timeout: float) -> bool:
        return self._ready.wait(timeout)

    def _wake(self) -> None:
        try:
            os.write(self._wake_w, b"x")
        except BlockingIOError:  # the pipe is full: the core is awake anyway
            pass
        except OSError:
            pass

    # -- recovery -----------------------------------------------------------------------------
    def _recover(self) -> None:
        count = 0
        for row, morsels in self.journal.unfinished_jobs():
            job = _Job(row.job_id, row.seq, row.status, row.priority, row.func_name,
                       row.func_pickle, row.result_kind,
                       [_Morsel(r.idx, r.offset, r.items, r.encoding, r.data, r.attempts, r.done)
                        for r in morsels],
                       row.total_items, row.created_at, row.started_at)
            for mo in job.morsels:
                if mo.done:
                    job.done_morsels += 1
                    job.done_items += mo.items
                else:
                    self._push(job, mo)
            self._jobs[job.job_id] = job
            count += 1
            if job.done_morsels == len(job.morsels):
                self._finish(job, "completed")
        if count:
            log.info("resumed %d unfinished job(s) from the journal %s (%d morsels to run)",
                     count, self.journal.path, self._pending)
        self.journal.commit()

    # -- main loop ----------------------------------------------------------------------------
    def run(self) -> None:
        poller = zmq.Poller()
        poller.register(self.router, zmq.POLLIN)
        poller.register(self.monitor, zmq.POLLIN)
        poller.register(self._wake_r, zmq.POLLIN)
        self._ready.set()
        try:
            while self._running:
                events = dict(poller.poll(self._poll_timeout_ms()))
                if self.router in events:
                    self._read_router()
                if self._wake_r in events:
                    self._read_commands()
                if self.monitor in events:
                    for _ in range(64):
                        if not self.monitor.poll(0):
                            break
                        transport.log_monitor_event(self.monitor)
                self._turn()
        except Exception:
            log.exception("the coordinator core failed")
            raise
        finally:
            self._shutdown()

    def _turn(self) -> None:
        now = time.monotonic()
        self._timers(now)
        self._dispatch(now)
        self._serve_waiters(now)
        # Commit before any answer that depends on the journal (acks, results, states).
        # Turns that only take in results and hand out morsels are committed together, at most
        # _COMMIT_EVERY_S apart: a crash then costs re-running those morsels, never a result a
        # client has seen.
        if self._need_commit or now - self._last_commit >= _COMMIT_EVERY_S:
            self._flush_to_workers()
            self._store_results()
            self.journal.commit()
            self._need_commit = False
            self._last_commit = now
        self._flush()

    def _store_results(self) -> None:
        # One statement for all results that came in since the last commit.
        if self._turn_results:
            self.journal.store_results(self._turn_results)
            self._turn_results = []
        if self._turn_items:
            # The cluster's throughput (the workers record their own items and morsels).
            self.metrics.record_items(self._turn_items)
            self._turn_items = 0

    def _poll_timeout_ms(self) -> int:
        # Timers need at most a tenth of the heartbeat period of resolution.
        t = min(self.config.heartbeat_s, self.config.node_timeout_s) / 4
        if self.config.morsel_timeout_s:
            t = min(t, self.config.morsel_timeout_s / 4)
        return max(5, min(250, int(t * 1000)))

    def _shutdown(self) -> None:
        try:
            self._store_results()
            self.journal.close()
        except Exception:
            log.exception("closing the journal failed")
        # Local callers still waiting get an answer rather than a hang.
        while True:
            try:
                _, fut = self._commands.get_nowait()
            except queue.Empty:
                break
            if not fut.done():
                fut.set_exception(CoordinatorUnavailableError("the coordinator stopped"))
        for waiters in self._waiters.values():
            for target, _, _ in waiters:
                if isinstance(target, _Local) and not target.future.done():
                    target.future.set_exception(
                        CoordinatorUnavailableError("the coordinator stopped"))
        self.monitor.close(0)
        self.router.disable_monitor()
        self.router.close(0)
        self.auth.stop()
        self.ctx.term()
        os.close(self._wake_r)
        os.close(self._wake_w)

    def _read_router(self) -> None:
        router = self.router
        for _ in range(_BATCH):
            try:
                frames = router.recv_multipart(zmq.NOBLOCK)
            except zmq.Again:
                return
            peer = frames[0]
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
                    "unknown_session", "this coordinator does not know the session (it "
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
                self._send(peer, m.ErrorReply(rid, "internal", f"{type(exc).__name__}: {exc}"))

    def _protocol_error(self, peer: bytes, text: str) -> None:
        self.counters["protocol_errors"] += 1
        self.metrics.record_error("protocol")
        self._log_limited("protocol", logging.WARNING,
                          "rejected a message from peer %s: %s", peer.hex()[:10], text)

    def _log_limited(self, key: str, level: int, fmt: str, *args: Any) -> None:
        # At most _LOG_BURST lines per second per kind, so a flood of bad frames cannot flood
        # the log; the number left out is reported with the next line.
        now = time.monotonic()
        window, count, dropped = self._log_budget.get(key, (0.0, 0, 0))
        if now - window >= 1.0:
            window, count = now, 0
        if count >= _LOG_BURST:
            self._log_budget[key] = (window, count, dropped + 1)
            return
        if dropped:
            fmt += f" ({dropped} similar line(s) left out)"
        self._log_budget[key] = (window, count + 1, 0)
        log.log(level, fmt, *args)

    def _read_commands(self) -> None:
        try:
            while os.read(self._wake_r, 4096):
                pass
        except BlockingIOError:
            pass
        while True:
            try:
                item, fut = self._commands.get_nowait()
            except queue.Empty:
                return
            if not fut.set_running_or_notify_cancel():
                continue
            try:
                if isinstance(item, m.Message):
                    self._handle(_Local(fut), item, PROTOCOL_VERSION)
                else:
                    self._store_results()
                    self.journal.commit()
                    fut.set_result(item())
            except Exception as exc:
                if not fut.done():
                    fut.set_exception(exc)

    def _send(self, target: Target, msg: m.Message) -> None:
        if not isinstance(msg, _NO_COMMIT_NEEDED):
            self._need_commit = True
        self._out.append((target, msg))

    def _flush_to_workers(self) -> None:
        """Send what registered workers get (assignments, cancels, acks: nothing a client can
        see) before the commit, so they start on a new job's morsels while its input is still
        being journaled. If the coordinator dies before the commit, the job was never
        acknowledged and their results are ignored as unknown. Per-peer order is kept."""
        keep: list[tuple[Target, m.Message]] = []
        held: set[bytes] = set()
        now: dict[bytes, list[m.Message]] = {}
        for target, msg in self._out:
            if (isinstance(target, bytes) and target not in held
                    and isinstance(msg, _NO_COMMIT_NEEDED) and target in self._by_peer):
                now.setdefault(target, []).append(msg)
            else:
                if isinstance(target, bytes):
                    held.add(target)
                keep.append((target, msg))
        self._out = keep
        self._send_grouped(now)

    def _send_grouped(self, by_target: dict[bytes, list[m.Message]]) -> None:
        """A registered worker gets all of its messages of a turn in one ZeroMQ message (one
        frame each): one wake-up of each side for a whole credit window of assignments. Other
        peers (clients, which may be single-frame implementations) get one message each."""
        for target, msgs in by_target.items():
            if target in self._by_peer:
                msgs = m.batch_morsels(msgs)
                for i in range(0, len(msgs), MAX_FRAMES):
                    self._send_frames(target, msgs[i:i + MAX_FRAMES])
            else:
                for msg in msgs:
                    self._send_frames(target, [msg])

    def _send_frames(self, target: bytes, msgs: list[m.Message]) -> None:
        frames = [target, *self._sender.encode_many(msgs)]
        if len(frames) == 1:
            return
        try:
            self.router.send_multipart(frames, zmq.NOBLOCK)
        except zmq.ZMQError as exc:
            # The peer is gone (EHOSTUNREACH); heartbeats deal with workers.
            log.debug("dropping %s to a gone peer: %s", ", ".join(msg.OP for msg in msgs), exc)

    def _flush(self) -> None:
        out, self._out = self._out, []
        by_target: dict[bytes, list[m.Message]] = {}
        for target, msg in out:
            if isinstance(target, _Local):
                if not target.future.done():
                    target.future.set_result(msg)
                continue
            by_target.setdefault(target, []).append(msg)
        self._send_grouped(by_target)

    # -- message handlers ---------------------------------------------------------------------
    def _handle(self, peer: Target, msg: m.Message, version: int) -> None:
        handler = _HANDLERS.get(type(msg))
        if handler is None:
            if isinstance(peer, bytes):
                self._protocol_error(peer, f"{msg.OP} is not a message a coordinator accepts")
            return
        if isinstance(peer, bytes):
            node_id = self._by_peer.get(peer)
            if node_id is not None:
                node = self._nodes[node_id]
                node.last_seen = time.monotonic()
                if node.state == "dead" and type(msg) is not m.Hello:
                    self._revive(node)
            elif type(msg) not in _CLIENT_MESSAGES and type(msg) is not m.Hello:
                self._send(peer, m.Refused("unknown_session", "register with hello first",
                                           PROTOCOL_VERSION, self.config.cluster_name))
                return
        handler(self, peer, msg, version)

    def _on_hello(self, peer: Target, msg: m.Hello, version: int) -> None:
        if not isinstance(peer, bytes):
            return
        name = self.config.cluster_name
        refusal: tuple[str, str] | None = None
        if version != PROTOCOL_VERSION or msg.protocol_version != PROTOCOL_VERSION:
            refusal = ("version_mismatch",
                       f"protocol version mismatch: the coordinator speaks version "
                       f"{PROTOCOL_VERSION}, node {msg.node_id!r} speaks "
                       f"{msg.protocol_version}; run the same Sabot version on every node")
        elif msg.cluster_name != name:
            refusal = ("cluster_mismatch",
                       f"cluster name mismatch: the coordinator belongs to CLUSTER_NAME={name!r}, "
                       f"node {msg.node_id!r} to CLUSTER_NAME={msg.cluster_name!r}")
        elif msg.role not in ("worker", "client") or not msg.node_id:
            refusal = ("bad_hello", f"hello needs role 'worker' or 'client' and a node_id, got "
                       f"role={msg.role!r}")
        if refusal is not None:
            log.warning("refused node %r from peer %s: %s", msg.node_id, peer.hex()[:10],
                        refusal[1])
            self._guard.forget(peer)
            self._send(peer, m.Refused(refusal[0], refusal[1], PROTOCOL_VERSION, name))
            return
        if msg.role == "worker":
            self._register(peer, msg)
        self._send(peer, m.Welcome(self.node_id, name, PROTOCOL_VERSION, self.config.heartbeat_s,
                                   self.config.node_timeout_s))

    def _register(self, peer: bytes, msg: m.Hello) -> None:
        now = time.monotonic()
        node = self._nodes.get(msg.node_id)
        slots = max(1, int(msg.slots or 1))
        credits = min(slots, int(msg.credits)) if msg.credits > 0 else slots
        if node is None:
            node = _Node(msg.node_id, peer, msg.host, int(msg.http_port), int(msg.pid),
                         int(msg.cores), slots, [str(c) for c in msg.capabilities],
                         [str(p) for p in msg.processors], credits, time.time(), now,
                         state_since=now)
            self._nodes[msg.node_id] = node
            log.info("worker %s registered from %s (http port %s, %d cores, %d slots)",
                     msg.node_id, msg.host, msg.http_port, msg.cores, slots)
        else:
            # A worker saying hello again (it lost us, or we restarted): same node, new session.
            if node.peer != peer:
                self._by_peer.pop(node.peer, None)
            node.peer = peer
            node.host, node.http_port, node.slots, node.credits = msg.host, msg.http_port, \
                slots, credits
            node.processors = [str(p) for p in msg.processors]
            node.funcs_sent.clear()
            # A new session does not carry the old one's morsels: hand them out again (a late
            # result from the old session is then a duplicate, and ignored).
            for key in list(node.inflight):
                self._requeue(node, key, refund=True,
                              reason=f"worker {node.node_id} started a new session")
            if node.state != "alive":
                log.info("worker %s is back (was %s)", node.node_id, node.state)
                node.state_since = now
            node.state = "alive"
            node.last_seen = now
        self._by_peer[peer] = node.node_id

    def _forget(self, node: _Node) -> None:
        log.info("worker %s forgotten after %g s %s", node.node_id,
                 time.monotonic() - node.state_since, node.state)
        del self._nodes[node.node_id]
        if self._by_peer.get(node.peer) == node.node_id:
            del self._by_peer[node.peer]
            self._guard.forget(node.peer)

    def _revive(self, node: _Node) -> None:
        log.info("worker %s is heard from again; marking it alive", node.node_id)
        node.state = "alive"
        node.state_since = time.monotonic()
        node.funcs_sent.clear()

    def _on_heartbeat(self, peer: Target, msg: m.Heartbeat, version: int) -> None:
        node = self._node_of(peer)
        if node is None:
            return
        node.utilization = float(msg.utilization)
        node.items_reported = int(msg.items_done)
        self._send(peer, m.HeartbeatAck(time.time()))

    def _on_credit(self, peer: Target, msg: m.Credit, version: int) -> None:
        node = self._node_of(peer)
        if node is not None:
            # Never above the slots it registered with: a worker holds at most its slots.
            node.credits = min(node.slots, max(0, int(msg.credits)))

    def _on_goodbye(self, peer: Target, msg: m.Goodbye, version: int) -> None:
        node = self._node_of(peer)
        if node is None:
            return
        returned = {(str(j), int(i)) for j, i in (msg.returned or []) if isinstance(j, str)}
        log.info("worker %s leaves (%s); %d morsel(s) handed back", node.node_id, msg.reason,
                 len(returned))
        node.state = "left"
        node.state_since = time.monotonic()
        for key in list(node.inflight):
            # A morsel handed back did not fail: it does not use up an attempt.
            self._requeue(node, key, refund=key in returned, reason=f"worker {node.node_id} left")
        self._by_peer.pop(node.peer, None)
        self._guard.forget(node.peer)

    def _node_of(self, peer: Target) -> _Node | None:
        if not isinstance(peer, bytes):
            return None
        node_id = self._by_peer.get(peer)
        return self._nodes.get(node_id) if node_id is not None else None

    def _on_result(self, peer: Target, msg: m.MorselResult, version: int) -> None:
        node = self._node_of(peer)
        key = (msg.job_id, int(msg.morsel))
        if node is not None:
            node.inflight.pop(key, None)
            node.morsels_done += 1
            node.items_done += int(msg.items)
        job = self._jobs.get(msg.job_id)
        if job is None or job.status not in _ACTIVE or not 0 <= key[1] < len(job.morsels):
            self.counters["duplicates_ignored"] += 1
            return
        mo = job.morsels[key[1]]
        if mo.done:
            self.counters["duplicates_ignored"] += 1
            log.debug("ignored a duplicate result for %s morsel %d", msg.job_id, key[1])
            return
        if int(msg.items) != mo.items:
            # The worker decoded another number of items than the submit claimed (a pickle
            # morsel, which the coordinator cannot count): running it again cannot help.
            mo.node = None
            self.counters["morsels_failed"] += 1
            self._finish(job, "failed", error=(
                f"morsel {mo.idx} (items {mo.offset}-{mo.offset + mo.items - 1}) was submitted "
                f"as {mo.items} item(s) but worker {node.node_id if node else '?'} decoded "
                f"{int(msg.items)}: the submit's item count is wrong"))
            return
        if mo.node is not None and (node is None or mo.node != node.node_id):
            other = self._nodes.get(mo.node)
            if other is not None and other.inflight.pop(key, None) is not None:
                self._send(other.peer, m.CancelMorsel(job.job_id, key[1], "done elsewhere"))
        mo.done = True
        mo.node = None
        mo.result = (msg.encoding, int(msg.items), bytes(msg.data))
        mo.data = None
        job.done_morsels += 1
        job.done_items += mo.items
        self.counters["morsels_completed"] += 1
        self._turn_items += int(msg.items)
        self._turn_results.append((msg.encoding, mo.result[2], int(msg.items), mo.attempts,
                                   job.job_id, key[1]))
        self._touched.add(job.job_id)
        if job.done_morsels == len(job.morsels):
            self._finish(job, "completed")

    def _on_results(self, peer: Target, msg: m.MorselResults, version: int) -> None:
        for one in msg.expand():
            # One result that cannot be handled must not take the others of the batch with it
            # (they would stay in flight on a live worker).
            try:
                self._on_result(peer, one, version)
            except Exception:
                log.exception("handling the result of morsel %s of job %s failed", one.morsel,
                              one.job_id)
                self.metrics.record_error("coordinator_internal")

    def _on_failed(self, peer: Target, msg: m.MorselFailed, version: int) -> None:
        node = self._node_of(peer)
        key = (msg.job_id, int(msg.morsel))
        if node is not None:
            node.inflight.pop(key, None)
            node.morsels_failed += 1
        job = self._jobs.get(msg.job_id)
        if job is None or job.status not in _ACTIVE or not 0 <= key[1] < len(job.morsels):
            return
        mo = job.morsels[key[1]]
        if mo.done or (mo.node is not None and node is not None and mo.node != node.node_id):
            return  # another attempt is running or finished: this failure is stale
        where = f"item {mo.offset + msg.index}" if msg.index is not None else \
            f"items {mo.offset}-{mo.offset + mo.items - 1}"
        text = f"{msg.error_type}: {msg.message}"
        mo.last_error = (f"morsel {key[1]} ({where}) failed on worker "
                         f"{node.node_id if node else '?'}: {text}")
        if msg.traceback:
            mo.last_error += "\n" + msg.traceback.rstrip()
        self.counters["morsels_failed"] += 1
        self.metrics.record_morsel(0.0, "failed")
        log.info("job %s morsel %d attempt %d failed: %s", job.job_id, key[1], msg.attempt, text)
        mo.node = None
        self._retry_or_fail(job, mo)

    def _retry_or_fail(self, job: _Job, mo: _Morsel) -> None:
        self.journal.set_attempts(job.job_id, mo.idx, mo.attempts)
        if mo.attempts >= self.config.max_attempts:
            self._finish(job, "failed", error=(
                f"{mo.last_error}\n(gave up after {mo.attempts} attempt(s); "
                f"SABOT_MAX_ATTEMPTS={self.config.max_attempts})"))
        else:
            self.counters["morsels_requeued"] += 1
            self._push(job, mo)

    def _requeue(self, node: _Node, key: tuple[str, int], *, refund: bool, reason: str) -> None:
        node.inflight.pop(key, None)
        job = self._jobs.get(key[0])
        if job is None or job.status not in _ACTIVE:
            return
        mo = job.morsels[key[1]]
        if mo.done or mo.node != node.node_id:
            return
        mo.node = None
        if refund:
            mo.attempts = max(0, mo.attempts - 1)
            self.counters["morsels_requeued"] += 1
            self._push(job, mo)
            return
        mo.last_error = f"morsel {mo.idx} lost: {reason}"
        self._retry_or_fail(job, mo)

    def _on_submit(self, peer: Target, msg: m.SubmitJob, version: int) -> None:
        rid = msg.request_id
        job_id = msg.job_id
        known = self._jobs.get(job_id)
        row = None if known is not None else self.journal.job(job_id)
        if known is not None or row is not None:
            # A retried submit (the ack was lost): answer with the job's state.
            status = known.status if known is not None else row.status  # type: ignore[union-attr]
            self._send(peer, m.SubmitAck(rid, job_id, status))
            return
        problem = self._check_submit(msg)
        if problem is not None:
            code, text, details = problem
            self._send(peer, m.ErrorReply(rid, code, text, details))
            return
        now = time.time()
        morsels: list[_Morsel] = []
        offset = 0
        for i, (enc, items, data) in enumerate(msg.morsels):
            morsels.append(_Morsel(i, offset, int(items), enc, bytes(data)))
            offset += int(items)
        seq = self._next_seq
        self._next_seq += 1
        job = _Job(job_id, seq, "pending", int(msg.priority), msg.func_name,
                   bytes(msg.func_pickle) if msg.func_pickle is not None else None,
                   msg.result_kind, morsels, offset, now)
        self.journal.insert_job(
            JobRow(job_id, seq, "pending", job.priority, job.func_name, job.func_pickle,
                   job.result_kind, len(morsels), offset, None, now, None, None),
            [MorselRow(mo.idx, mo.offset, mo.items, mo.encoding, mo.data, 0, False)
             for mo in morsels])
        self._jobs[job_id] = job
        self.metrics.record_job("pending")
        for mo in morsels:
            self._push(job, mo)
        if not morsels:
            self._finish(job, "completed")
        self._send(peer, m.SubmitAck(rid, job_id, job.status))

    def _check_submit(self, msg: m.SubmitJob) -> tuple[str, str, dict[str, Any]] | None:
        if not msg.job_id or len(msg.job_id) > 128 or not msg.job_id.isprintable():
            return "bad_request", "job_id must be 1-128 printable characters", {}
        if msg.result_kind not in payload.RESULT_KINDS:
            return "bad_request", (f"result_kind {msg.result_kind!r} is unknown; accepted: "
                                   f"{', '.join(payload.RESULT_KINDS)}"), {}
        for i, part in enumerate(msg.morsels):
            if (not isinstance(part, (list, tuple)) or len(part) != 3
                    or part[0] not in payload.ENCODINGS or not isinstance(part[1], int)
                    or part[1] < 0 or not isinstance(part[2], (bytes, bytearray))):
                return "bad_request", (f"morsel {i} must be [encoding, items, data] with encoding "
                                       f"one of {', '.join(payload.ENCODINGS)}"), {}
            # The count a submit claims sizes the job's progress and its result: it must be the
            # count the data holds (read from the payload's header; a pickle is counted by the
            # worker that unpickles it, see _on_result).
            try:
                held = payload.count_items(part[0], bytes(part[2]))
            except ProtocolError as exc:
                return "bad_request", f"morsel {i} is not a valid {part[0]} payload: {exc}", {}
            if held is not None and held != part[1]:
                return "bad_request", (f"morsel {i} claims {part[1]} item(s) but its {part[0]} "
                                       f"data holds {held}; the items field must be the number "
                                       f"of items in the data"), {"morsel": i, "claimed": part[1],
                                                                  "held": held}
        if msg.func_pickle is None:
            known = set(list_processors())
            for node in self._nodes.values():
                if node.state == "alive":
                    known.update(node.processors)
            if msg.func_name not in known:
                return ("unknown_processor", str(UnknownProcessorError(msg.func_name, list(known))),
                        {"name": msg.func_name, "known": sorted(known)})
        return None

    def _on_status(self, peer: Target, msg: m.GetStatus, version: int) -> None:
        job = self._job_summary(msg.job_id)
        if job is None:
            self._send(peer, m.ErrorReply(msg.request_id, "job_not_found",
                                          f"no job {msg.job_id!r} (unknown, or expired after "
                                          f"SABOT_RESULT_TTL_S={self.config.result_ttl_s:g})"))
        else:
            self._send(peer, m.JobStatus(msg.request_id, job))

    def _job_summary(self, job_id: str) -> dict[str, Any] | None:
        job = self._jobs.get(job_id)
        if job is not None:
            return job.summary()
        self._store_results()
        row = self.journal.job(job_id)
        if row is None:
            return None
        done_morsels, done_items = self.journal.done_counts(job_id)
        total = row.total_items
        return {
            "job_id": row.job_id, "status": row.status, "priority": row.priority,
            "processor": row.func_name, "items": total,
            "progress": {"done": done_items, "total": total,
                         "fraction": 1.0 if row.status == "completed" else
                         round(done_items / total, 6) if total else 0.0,
                         "morsels_done": done_morsels, "morsels_total": row.total_morsels},
            "error": row.error, "created_at": row.created_at, "started_at": row.started_at,
            "finished_at": row.finished_at, "result_kind": row.result_kind,
        }

    def _on_cancel(self, peer: Target, msg: m.CancelJob, version: int) -> None:
        job = self._jobs.get(msg.job_id)
        if job is not None and job.status in _ACTIVE:
            self._finish(job, "cancelled", error="cancelled by request")
            log.info("job %s cancelled", job.job_id)
        self._on_status(peer, m.GetStatus(msg.request_id, msg.job_id), version)

    def _on_fetch(self, peer: Target, msg: m.FetchResults, version: int) -> None:
        wait = min(max(0, int(msg.wait_ms)), _MAX_WAIT_MS) / 1000
        if not self._try_fetch(peer, msg, final=wait == 0):
            deadline = time.monotonic() + wait
            self._waiters.setdefault(msg.job_id, []).append((peer, msg, deadline))

    def _try_fetch(self, peer: Target, msg: m.FetchResults, final: bool) -> bool:
        job = self._jobs.get(msg.job_id)
        start = max(0, int(msg.start))
        limit = max(1, int(msg.max_bytes))
        if job is None:
            self._store_results()  # the journal must hold what memory let go of
            row = self.journal.job(msg.job_id)
            if row is None:
                self._send(peer, m.ErrorReply(msg.request_id, "job_not_found",
                                              f"no job {msg.job_id!r} (unknown, or expired)"))
                return True
            parts = [list(p) for p in self.journal.results(msg.job_id, start, limit)]
            self._send(peer, m.ResultBatch(msg.request_id, msg.job_id, row.status, start, parts,
                                           row.total_morsels, row.result_kind, row.error))
            return True
        finished = job.status in FINISHED_STATES
        if msg.until_done and not finished and not final:
            return False
        parts: list[list[Any]] = []
        size = 0
        i = start
        morsels = job.morsels
        while i < len(morsels):
            mo = morsels[i]
            if not mo.done:
                break
            if mo.result is None:  # evicted from memory: read the rest from the journal
                self._store_results()
                self.journal.commit()
                parts.extend(list(p) for p in self.journal.results(job.job_id, i, limit - size))
                break
            if parts and size + len(mo.result[2]) > limit:
                break
            parts.append(list(mo.result))
            size += len(mo.result[2])
            i += 1
        if parts or finished or final or start >= len(morsels):
            self._send(peer, m.ResultBatch(msg.request_id, job.job_id, job.status, start, parts,
                                           len(morsels), job.result_kind, job.error))
            return True
        return False

    def _on_stats(self, peer: Target, msg: m.GetStats, version: int) -> None:
        self._send(peer, m.Stats(msg.request_id, self.stats()))

    # -- scheduling ---------------------------------------------------------------------------
    def _push(self, job: _Job, mo: _Morsel) -> None:
        heapq.heappush(self._queue, (-job.priority, job.seq, mo.idx, job.job_id))
        self._pending += 1

    def _dispatch(self, now: float) -> None:
        if not self._queue:
            return
        nodes = [n for n in self._nodes.values() if n.free > 0]
        if not nodes:
            return
        # Rotate the starting node so equal workers share the head of the queue.
        self._rr = (self._rr + 1) % len(nodes)
        nodes = nodes[self._rr:] + nodes[:self._rr]
        timeout = self.config.morsel_timeout_s
        while nodes and self._queue:
            still: list[_Node] = []
            for node in nodes:
                picked = self._pop()
                if picked is None:
                    return
                job, mo = picked
                mo.attempts += 1
                mo.node = node.node_id
                mo.deadline = now + timeout if timeout else 0.0
                node.inflight[(job.job_id, mo.idx)] = mo.attempts
                if job.status == "pending":
                    # Journaled with the job's end: after a restart a job is pending until a
                    # morsel runs again, which is what it is.
                    job.status = "running"
                    job.started_at = time.time()
                    self.metrics.record_job("running")
                func = None
                if job.func_pickle is not None and job.job_id not in node.funcs_sent:
                    func = job.func_pickle
                    node.funcs_sent.add(job.job_id)
                self.counters["morsels_assigned"] += 1
                self._send(node.peer, m.Assign(job.job_id, mo.idx, mo.attempts, mo.offset,
                                               job.func_name, func, mo.encoding,
                                               mo.data or b""))
                if node.free > 0:
                    still.append(node)
            nodes = still

    def _pop(self) -> tuple[_Job, _Morsel] | None:
        while self._queue:
            _, _, idx, job_id = heapq.heappop(self._queue)
            self._pending -= 1
            job = self._jobs.get(job_id)
            if job is None or job.status not in _ACTIVE:
                continue
            mo = job.morsels[idx]
            if mo.done or mo.node is not None:
                continue
            return job, mo
        return None

    def _finish(self, job: _Job, status: str, error: str | None = None) -> None:
        job.status = status
        job.error = error
        job.finished_at = time.time()
        for mo in job.morsels:
            mo.data = None
            if mo.node is not None:
                node = self._nodes.get(mo.node)
                if node is not None and node.inflight.pop((job.job_id, mo.idx), None) is not None:
                    self._send(node.peer, m.CancelMorsel(job.job_id, mo.idx, f"job {status}"))
                mo.node = None
        self.journal.set_job_state(job.job_id, status, error=error, started_at=job.started_at,
                                   finished_at=job.finished_at)
        self.metrics.record_job(status)
        self._touched.add(job.job_id)
        self._finished.append(job.job_id)
        if status == "failed":
            log.warning("job %s failed: %s", job.job_id, (error or "").splitlines()[0])
        else:
            log.debug("job %s %s (%d items, %d morsels)", job.job_id, status, job.total_items,
                     len(job.morsels))
        while len(self._finished) > _FINISHED_IN_MEMORY:
            old = self._jobs.get(self._finished.pop(0))
            if old is not None and old.job_id not in self._waiters:
                self._jobs.pop(old.job_id, None)

    def _serve_waiters(self, now: float) -> None:
        if not self._waiters:
            self._touched.clear()
            return
        for job_id in list(self._waiters):
            waiters = self._waiters[job_id]
            touched = job_id in self._touched
            keep = []
            for target, msg, deadline in waiters:
                if touched or deadline <= now:
                    if self._try_fetch(target, msg, final=deadline <= now):
                        continue
                keep.append((target, msg, deadline))
            if keep:
                self._waiters[job_id] = keep
            else:
                del self._waiters[job_id]
        self._touched.clear()

    def _timers(self, now: float) -> None:
        timeout = self.config.node_timeout_s
        for node in self._nodes.values():
            if node.state == "alive" and now - node.last_seen > timeout:
                node.state = "dead"
                node.state_since = now
                log.warning("worker %s missed heartbeats for %.1f s (SABOT_NODE_TIMEOUT_S=%g): "
                            "marked dead, %d morsel(s) requeued", node.node_id,
                            now - node.last_seen, timeout, len(node.inflight))
                self.metrics.record_error("worker_lost")
                for key in list(node.inflight):
                    self._requeue(node, key, refund=False,
                                  reason=f"worker {node.node_id} stopped answering")
        forget = FORGET_AFTER_TIMEOUTS * timeout
        gone = [n for n in self._nodes.values()
                if n.state != "alive" and now - n.state_since > forget and not n.inflight]
        for node in gone:
            self._forget(node)
        if self.config.morsel_timeout_s and now >= self._next_timeout_scan:
            self._next_timeout_scan = now + self.config.morsel_timeout_s / 10
            for node in self._nodes.values():
                for key in list(node.inflight):
                    job = self._jobs.get(key[0])
                    if job is None:
                        node.inflight.pop(key, None)
                        continue
                    mo = job.morsels[key[1]]
                    if mo.deadline and mo.deadline <= now and mo.node == node.node_id:
                        self.counters["morsels_timed_out"] += 1
                        node.inflight.pop(key, None)
                        self._send(node.peer, m.CancelMorsel(job.job_id, mo.idx, "timed out"))
                        mo.node = None
                        mo.last_error = (f"morsel {mo.idx} (items {mo.offset}-"
                                         f"{mo.offset + mo.items - 1}) timed out after "
                                         f"{self.config.morsel_timeout_s:g} s on worker "
                                         f"{node.node_id} (SABOT_MORSEL_TIMEOUT_S)")
                        log.warning("%s", mo.last_error)
                        self._retry_or_fail(job, mo)
        wall = time.time()
        if wall >= self._next_purge:
            self._next_purge = wall + _PURGE_EVERY_S
            for job_id in self.journal.purge_finished(wall - self.config.result_ttl_s):
                self._jobs.pop(job_id, None)

    # -- views (core thread) -------------------------------------------------------------------
    def stats(self) -> dict[str, Any]:
        now = time.monotonic()
        nodes = [n.info(now) for n in self._nodes.values()]
        by_state: dict[str, int] = {}
        for n in self._nodes.values():
            by_state[n.state] = by_state.get(n.state, 0) + 1
        jobs: dict[str, int] = {}
        for job in self._jobs.values():
            jobs[job.status] = jobs.get(job.status, 0) + 1
        alive = [n for n in self._nodes.values() if n.state == "alive"]
        # (credits can drop below what a worker still holds: count what it holds then)
        slots = sum(max(n.credits, len(n.inflight)) for n in alive)
        busy = sum(len(n.inflight) for n in alive)
        return {
            "cluster_name": self.config.cluster_name,
            "coordinator": {"node_id": self.node_id, "zmq_port": self.zmq_port,
                            "protocol_version": PROTOCOL_VERSION, "version": __version__,
                            "journal": str(self.journal.path)},
            "nodes": nodes,
            "nodes_by_state": by_state,
            "jobs": {"active": sum(jobs.get(s, 0) for s in _ACTIVE), "by_state": jobs,
                     "recent": [j.summary() for j in sorted(
                         self._jobs.values(), key=lambda j: -j.seq)[:20]]},
            "queue_depth": self._queued(),
            "slots": {"total": slots, "busy": busy},
            "counters": dict(self.counters),
            "system_resources": system_resources(),
        }

    def _queued(self) -> int:
        return max(0, self._pending)

    def load(self) -> dict[str, Any]:
        """For the metrics gauges; called from other threads, reads plain counters only."""
        nodes = list(self._nodes.values())
        alive = [n for n in nodes if n.state == "alive"]
        # (credits can drop below what a worker still holds: count what it holds then)
        slots = sum(max(n.credits, len(n.inflight)) for n in alive)
        busy = sum(len(n.inflight) for n in alive)
        jobs: dict[str, int] = {}
        for job in list(self._jobs.values()):
            jobs[job.status] = jobs.get(job.status, 0) + 1
        states: dict[str, int] = {}
        for n in nodes:
            states[n.state] = states.get(n.state, 0) + 1
        return {"queue_depth": self._queued(),
                "utilization_percent": 100.0 * busy / slots if slots else 0.0,
                "jobs": jobs, "nodes": states}

    def nodes_info(self) -> list[dict[str, Any]]:
        now = time.monotonic()
        return [n.info(now) for n in self._nodes.values()]

    def list_jobs(self, limit: int) -> list[dict[str, Any]]:
        out = []
        for row in self.journal.recent_jobs(limit):
            summary = self._job_summary(row.job_id)
            if summary is not None:
                out.append(summary)
        return out

    def result_page(self, job_id: str, offset: int, limit: int | None
                    ) -> tuple[dict[str, Any], list[tuple[str, int, bytes]], int]:
        """(job dict, result morsels covering items [offset, offset+limit), item offset of the
        first morsel) for the HTTP API."""
        summary = self._job_summary(job_id)
        if summary is None:
            raise JobNotFoundError(f"no job {job_id!r} (unknown, or expired after "
                                   f"SABOT_RESULT_TTL_S={self.config.result_ttl_s:g})")
        if summary["status"] != "completed":
            return summary, [], 0
        job = self._jobs.get(job_id)
        if job is not None and all(mo.result is not None for mo in job.morsels):
            parts, first, pos = [], 0, 0
            end = None if limit is None else offset + limit
            for mo in job.morsels:
                lo, hi = pos, pos + mo.result[1]  # type: ignore[index]
                pos = hi
                if hi <= offset:
                    continue
                if end is not None and lo >= end:
                    break
                if not parts:
                    first = lo
                parts.append(mo.result)  # type: ignore[arg-type]
            return summary, parts, first
        parts, first, pos = [], 0, 0
        idx = 0
        end = None if limit is None else offset + limit
        while True:
            chunk = self.journal.results(job_id, idx, 64 << 20)
            if not chunk:
                break
            for enc, items, blob in chunk:
                lo, hi = pos, pos + items
                pos = hi
                idx += 1
                if hi <= offset:
                    continue
                if end is not None and lo >= end:
                    return summary, parts, first
                if not parts:
                    first = lo
                parts.append((enc, items, blob))
        return summary, parts, first


_HANDLERS: dict[type, Callable[..., None]] = {
    m.Hello: CoordinatorCore._on_hello,
    m.Heartbeat: CoordinatorCore._on_heartbeat,
    m.Credit: CoordinatorCore._on_credit,
    m.Goodbye: CoordinatorCore._on_goodbye,
    m.MorselResult: CoordinatorCore._on_result,
    m.MorselResults: CoordinatorCore._on_results,
    m.MorselFailed: CoordinatorCore._on_failed,
    m.SubmitJob: CoordinatorCore._on_submit,
    m.GetStatus: CoordinatorCore._on_status,
    m.CancelJob: CoordinatorCore._on_cancel,
    m.FetchResults: CoordinatorCore._on_fetch,
    m.GetStats: CoordinatorCore._on_stats,
}

#: Messages whose sending does not depend on the journal being committed.
_NO_COMMIT_NEEDED = (m.Assign, m.CancelMorsel, m.HeartbeatAck, m.Welcome, m.Refused)

#: Messages a registered client (not a worker) may send.
_CLIENT_MESSAGES = (m.SubmitJob, m.GetStatus, m.CancelJob, m.FetchResults, m.GetStats)


def reply_or_raise(reply: m.Message) -> m.Message:
    """Turn an ErrorReply into the matching exception."""
    if isinstance(reply, m.ErrorReply):
        if reply.code == "job_not_found":
            raise JobNotFoundError(reply.message)
        if reply.code == "unknown_processor":
            details = reply.details or {}
            raise UnknownProcessorError(str(details.get("name", "?")),
                                        [str(k) for k in details.get("known", [])])
        if reply.code == "bad_request":
            raise ValueError(reply.message)
        raise CoordinatorUnavailableError(f"the coordinator failed the request: {reply.message}")
    return reply


class Coordinator:
    """A running coordinator: the core thread, the ZeroMQ endpoint and the HTTP API."""

    role = "coordinator"

    def __init__(self, config: Config, *, node_id: str | None = None) -> None:
        self.config = config
        self.node_id = node_id or f"coordinator-{socket.gethostname()}-{os.getpid()}"
        self.metrics = get_metrics(config.cluster_name, self.node_id)
        self.core: CoordinatorCore | None = None
        self.http: Any = None
        self.http_port: int | None = None
        self.zmq_port: int | None = None
        self._keys: ClusterKeys | None = None

    async def start(self) -> None:
        if self.core is not None:
            return
        config = self.config
        load_processor_modules(config.processors)
        self._keys = await asyncio.to_thread(ClusterKeys.from_config, config)
        self.core = await asyncio.to_thread(
            CoordinatorCore, config, self._keys, self.metrics, self.node_id, config.host,
            config.effective_zmq_port)
        self.zmq_port = self.core.zmq_port
        self.core.start()
        self.core.wait_ready(10)
        self.metrics.set_load_source(self.core.load)
        from ..http.server import HttpApi

        self.http = HttpApi(config, CoordinatorBackend(self), self.metrics)
        try:
            self.http_port = await self.http.start(config.host, config.port)
        except BaseException:
            await self._stop_core()
            raise
        log.info("coordinator %s of cluster %r: HTTP on %s:%s, ZeroMQ on port %s, key %s",
                 self.node_id, config.cluster_name, config.host, self.http_port, self.zmq_port,
                 self._keys.fingerprint)

    async def stop(self) -> None:
        if self.http is not None:
            await self.http.stop()
            self.http = None
        await self._stop_core()

    async def _stop_core(self) -> None:
        core, self.core = self.core, None
        if core is not None:
            core.stop()
            await asyncio.to_thread(core.join, 10)
            self.metrics.set_load_source(None)

    def _core(self) -> CoordinatorCore:
        if self.core is None:
            raise CoordinatorUnavailableError("the coordinator is not started")
        return self.core

    async def request(self, msg: m.Message) -> m.Message:
        return reply_or_raise(await asyncio.wrap_future(self._core().call(msg)))

    def cluster_info(self) -> dict[str, Any]:
        keys = self._keys
        return {
            "cluster_name": self.config.cluster_name,
            "protocol_version": PROTOCOL_VERSION,
            "coordinator_id": self.node_id,
            "zmq_port": self.zmq_port,
            "curve_server_key": keys.server_public.decode() if keys else None,
            "key_fingerprint": keys.fingerprint if keys else None,
            "heartbeat_s": self.config.heartbeat_s,
            "node_timeout_s": self.config.node_timeout_s,
            "version": __version__,
        }


class CoordinatorBackend:
    """The coordinator as a :class:`~sabot.http.backend.NodeBackend` for the HTTP API."""

    role = "coordinator"

    def __init__(self, coordinator: Coordinator) -> None:
        self.coordinator = coordinator
        self.node_id = coordinator.node_id

    def _query(self, fn: Callable[[CoordinatorCore], Any]) -> Any:
        core = self.coordinator._core()
        return core.query(lambda: fn(core))

    def is_ready(self) -> bool:
        core = self.coordinator.core
        return core is not None and core.is_alive()

    def health(self) -> dict[str, Any]:
        core = self.coordinator.core
        return {"core_alive": bool(core and core.is_alive()),
                "zmq_port": self.coordinator.zmq_port, "protocol_version": PROTOCOL_VERSION}

    def cluster_info(self) -> dict[str, Any]:
        return self.coordinator.cluster_info()

    def nodes(self) -> list[dict[str, Any]]:
        return self._query(lambda c: c.nodes_info())

    def stats(self) -> dict[str, Any]:
        return self._query(lambda c: c.stats())

    async def submit_job(self, data: Any, processor: str, *, priority: int = 0
                         ) -> dict[str, Any]:
        config = self.coordinator.config
        kind, morsels = await asyncio.to_thread(payload.split, data, config.morsel_size_bytes)
        job_id = uuid.uuid4().hex
        reply = await self.coordinator.request(
            m.SubmitJob(0, job_id, processor, None, kind, morsels, int(priority)))
        assert isinstance(reply, m.SubmitAck)
        return {"job_id": reply.job_id, "status": reply.status}

    async def get_job(self, job_id: str, *, offset: int = 0, limit: int | None = None
                      ) -> dict[str, Any]:
        core = self.coordinator._core()
        summary, parts, first = await asyncio.wrap_future(
            core.call_fn(lambda: core.result_page(job_id, offset, limit)))
        job = dict(summary)
        total = job.get("items", 0)
        if job["status"] != "completed":
            job.update(result=None, result_offset=offset, result_total=total, next_offset=None)
            return job
        items = await asyncio.to_thread(_decode_items, parts)
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
        return self._query(lambda c: c.list_jobs(limit))


def _decode_items(parts: list[tuple[str, int, bytes]]) -> list[Any]:
    from ..http.results import to_json_list

    out: list[Any] = []
    for enc, _, blob in parts:
        out.extend(to_json_list(payload.decode_value(enc, blob)))
    return out


__all__ = ["Coordinator", "CoordinatorBackend", "CoordinatorCore", "reply_or_raise"]
