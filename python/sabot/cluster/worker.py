"""A worker node: finds the coordinator, registers, heartbeats, runs morsels on the local engine.

The worker learns the coordinator's ZeroMQ endpoint from ``GET /cluster`` on
COORDINATOR_HOST:COORDINATOR_PORT, says hello (protocol version, cluster name, cores, slots,
an address the coordinator can reach) and then holds at most ``slots`` morsels at a time
(credit-based flow control: each finished morsel returns a credit). When the coordinator goes
silent for SABOT_NODE_TIMEOUT_S it reconnects and registers again; results of morsels that
finish meanwhile are kept and sent once it is back. ``stop()`` drains: no new morsels, running
ones finish (or are handed back), then goodbye.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import logging
import math
import operator
import os
import socket
import time
import traceback
import uuid
from collections import OrderedDict, deque
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import zmq
import zmq.asyncio

from .. import __version__
from ..config import Config
from ..engine.functions import ITEM, resolve_function
from ..errors import (
    AuthenticationError,
    ClusterMismatchError,
    CoordinatorUnavailableError,
    ProcessingError,
    ProtocolError,
    SabotError,
    VersionMismatchError,
)
from ..metrics import CpuSampler, get_metrics
from ..processors import list_processors, load_processor_modules
from ..system import system_resources, usable_cores
from . import transport
from .protocol import MAX_FRAMES, PROTOCOL_VERSION, Sender, check_frames, decode_frame, payload
from .protocol import messages as m
from .security import ClusterKeys

log = logging.getLogger(__name__)

#: Jobs whose function a worker keeps unpickled.
_FUNC_CACHE = 128
#: Longest a draining worker waits for its running morsels before handing them back.
DRAIN_GRACE_S = 30.0
#: Morsels of a per-item function up to this size run inline on the worker's loop.
INLINE_MAX_ITEMS = 64
INLINE_MAX_BYTES = 4096
#: ... and when they are expected to take less than this (the loop serves heartbeats).
INLINE_BUDGET_S = 0.001
#: Larger morsels of a per-item function cheaper than this per item skip the engine: they run
#: on the worker's "direct" threads. At this cost processes cannot win back the pickling of
#: items and results, so the engine's planning, re-slicing into sub-morsels and thread hops
#: would be pure overhead (and on a busy machine its sampler can pick processes anyway).
DIRECT_MAX_ITEM_S = 2e-6
#: The first list morsel of a job times the function on its first items (at most this many,
#: and for at most DIRECT_SAMPLE_S) to learn which path the job's morsels take.
DIRECT_SAMPLE_ITEMS = 256
DIRECT_SAMPLE_S = 0.002
#: Sampled items (over one or more morsels) that settle a job's path.
DIRECT_VERDICT_ITEMS = 8
#: With SABOT_WORKER_SLOTS=auto a worker's credits follow its morsels' cost: enough cheap
#: morsels wait on it to cover about CREDIT_WORK_S of work (tiny morsels then travel and run in
#: batches instead of one round trip to the coordinator each), never fewer than the base
#: (2 x cores + 2) and never more than its slots, AUTO_SLOTS_FACTOR x the base (at most
#: AUTO_SLOTS_MAX).
CREDIT_WORK_S = 0.02
AUTO_SLOTS_FACTOR = 16
AUTO_SLOTS_MAX = 256


class _FatalRefusal(Exception):
    """Wraps an error that must stop the worker instead of retrying."""

    def __init__(self, error: SabotError) -> None:
        super().__init__(str(error))
        self.error = error


class Worker:
    """One worker node. ``await start()`` returns once registered (or raises a refusal)."""

    role = "worker"

    def __init__(self, config: Config, *, node_id: str | None = None,
                 slots: int | None = None) -> None:
        self.config = config
        self.node_id = node_id or f"worker-{socket.gethostname()}-{os.getpid()}-" \
                                  f"{uuid.uuid4().hex[:6]}"
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
        self.engine: Any = None
        self.http: Any = None
        self.http_port: int | None = None
        self.registered = asyncio.Event()
        self.coordinator_id: str | None = None
        self._keys: ClusterKeys | None = None
        self._ctx: zmq.asyncio.Context | None = None
        self._sock: zmq.asyncio.Socket | None = None
        self._sync: zmq.Socket | None = None
        self._sender = Sender()
        # a morsel's task, or its future in _Lanes
        self._running: dict[tuple[str, int], asyncio.Future[None]] = {}
        self._funcs: OrderedDict[str, Any] = OrderedDict()
        # Keyed by the function (its pickle, or a processor's name), not the job, so that jobs
        # submitted again and again with the same function (small jobs) skip both unpickling
        # and sampling:
        self._job_func: OrderedDict[str, bytes | str] = OrderedDict()  # job id -> key
        self._loaded: OrderedDict[bytes, Any] = OrderedDict()  # pickle -> function
        self._cost: dict[bytes | str, float] = {}  # the function's own seconds per item
        self._samples: dict[bytes | str, list[float]] = {}  # until enough for a verdict
        self._outbox: list[m.Message] = []
        # Messages posted while posts are held (see _held_posts) go out together, as one
        # ZeroMQ message.
        self._posts: list[m.Message] = []
        self._holding = 0
        # Messages that came in one ZeroMQ message and are not handled yet.
        self._inbox: deque[m.Message] = deque()
        self._lanes = _Lanes(self)
        self._direct: concurrent.futures.ThreadPoolExecutor | None = None
        self._outbox_event = asyncio.Event()
        self._kick_pending = False
        self._session_over: asyncio.Event | None = None
        self._task: asyncio.Task[None] | None = None
        self._fatal: SabotError | None = None
        self._fatal_pending: _FatalRefusal | None = None
        self._stopping = False
        self._draining = False
        self._last_heard = 0.0
        self._coord_session: tuple[int, int] | None = None
        self._items_done = 0
        self._morsels_done = 0
        self._morsels_failed = 0
        self._cpu: CpuSampler | None = None
        self.advertise_host = config.advertise_host

    # -- lifecycle ----------------------------------------------------------------------------
    async def start(self, *, wait_s: float | None = None) -> None:
        """Start serving HTTP and join the coordinator. Raises ClusterMismatchError,
        VersionMismatchError or AuthenticationError when refused; when the coordinator is
        merely unreachable it logs, returns after ``wait_s`` and keeps trying."""
        if self._task is not None:
            return
        config = self.config
        load_processor_modules(config.processors)
        self._keys = await asyncio.to_thread(ClusterKeys.from_config, config)
        from ..engine.local_engine import LocalEngine
        from ..http.server import HttpApi

        # isolate: a user function that crashes takes down a pool process, not this worker;
        # record_metrics=False: this worker counts items and morsels itself.
        self.engine = LocalEngine(config, node=self.node_id, isolate=True, record_metrics=False)
        self._cpu = CpuSampler(self.cores)
        self.metrics.set_load_source(self._load)
        self.http = HttpApi(config, WorkerBackend(self), self.metrics)
        self.http_port = await self.http.start(config.host, config.worker_port)
        if self.advertise_host is None:
            self.advertise_host = await asyncio.to_thread(
                transport.detect_advertise_host, config.coordinator_host, config.coordinator_port)
        self._ctx = zmq.asyncio.Context()
        self._task = asyncio.get_running_loop().create_task(self._run(), name="sabot-worker")
        wait = max(10.0, 2 * config.node_timeout_s) if wait_s is None else wait_s
        registered = asyncio.ensure_future(self.registered.wait())
        await asyncio.wait([self._task, registered], timeout=wait,
                           return_when=asyncio.FIRST_COMPLETED)
        registered.cancel()
        if self._fatal is not None:
            error = self._fatal
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
        if self._stopping:
            if self._task is not None:
                await asyncio.gather(self._task, return_exceptions=True)
            return
        self._stopping = True
        returned: list[list[Any]] = []
        if self._sock is not None and self.registered.is_set():
            self._draining = True
            # A credit posted earlier but not yet sent would go out after this one and undo it.
            self._posts = [x for x in self._posts if not isinstance(x, m.Credit)]
            self._outbox = [x for x in self._outbox if not isinstance(x, m.Credit)]
            await self._send_now(m.Credit(0))
            if drain and self._running:
                log.info("worker %s draining %d running morsel(s)", self.node_id,
                         len(self._running))
                await asyncio.wait(list(self._running.values()), timeout=DRAIN_GRACE_S)
            for key, task in list(self._running.items()):
                task.cancel()
                returned.append([key[0], key[1]])
            self._flush_posts()
            await self._flush_outbox()
            await self._send_now(m.Goodbye("stopping", returned))
        for task in list(self._running.values()):
            task.cancel()
        if self._running:
            await asyncio.gather(*self._running.values(), return_exceptions=True)
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
        self._close_socket(linger_ms=1000)
        if self._ctx is not None:
            self._ctx.term()
            self._ctx = None
        if self.http is not None:
            await self.http.stop()
            self.http = None
        if self.engine is not None:
            await self.engine.close()
            self.engine = None
        if self._direct is not None:
            self._direct.shutdown(wait=True)
            self._direct = None
        self.metrics.set_load_source(None)
        log.info("worker %s stopped", self.node_id)

    # -- connection ---------------------------------------------------------------------------
    async def _run(self) -> None:
        delay = 0.2
        while not self._stopping:
            try:
                await self._session()
                delay = 0.2
            except _FatalRefusal as exc:
                self._fatal = exc.error
                log.error("worker %s refused: %s", self.node_id, exc.error)
                return
            except (CoordinatorUnavailableError, OSError, zmq.ZMQError) as exc:
                self._log_retry(exc)
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("worker %s: connection failed", self.node_id)
            finally:
                self.registered.clear()
                if not self._stopping:  # stop() closes it after its goodbye went out
                    self._close_socket()
            if self._stopping:
                return
            await asyncio.sleep(delay)
            delay = min(2.0, delay * 2)

    def _log_retry(self, exc: BaseException) -> None:
        now = time.monotonic()
        if now >= getattr(self, "_next_retry_log", 0.0):
            self._next_retry_log = now + 10.0
            log.warning("worker %s: %s; retrying", self.node_id, exc)

    def _close_socket(self, linger_ms: int = 0) -> None:
        self._sync = None
        if self._sock is not None:
            self._sock.close(linger_ms)
            self._sock = None

    async def _session(self) -> None:
        config = self.config
        assert self._keys is not None and self._ctx is not None
        info = await asyncio.to_thread(
            transport.fetch_cluster_info, config.coordinator_host, config.coordinator_port,
            timeout=max(2.0, config.node_timeout_s), token=config.auth_token)
        key_differs = info.get("curve_server_key") not in (
            None, self._keys.server_public.decode())
        endpoint = transport.zmq_endpoint(config.coordinator_host, int(info["zmq_port"]))
        self._sender = Sender()
        self._coord_session = None
        self._inbox.clear()
        self._sock = transport.client_socket(self._ctx, self._keys, endpoint)
        # The same socket without asyncio, for sends and reads that need not wait.
        self._sync = zmq.Socket.shadow(self._sock.underlying)
        await self._send_now(m.Hello(
            PROTOCOL_VERSION, config.cluster_name, "worker", self.node_id,
            host=self.advertise_host or "", http_port=int(self.http_port or 0), pid=os.getpid(),
            cores=self.cores, slots=self.slots, credits=self.credits,
            capabilities=["python", "pickle", "arrow", "numpy", f"sabot-{__version__}"],
            processors=list_processors()))
        hello_wait = 1.0 if key_differs else max(2.0, config.node_timeout_s)
        reply = await self._recv(timeout=hello_wait)
        if reply is None:
            if key_differs:
                raise _FatalRefusal(AuthenticationError(
                    f"the coordinator at {config.coordinator_host}:{config.coordinator_port} "
                    "uses another cluster key: give every node the same SABOT_CLUSTER_KEY or "
                    f"SABOT_CLUSTER_KEY_FILE (this node's key file: {config.cluster_key_file}, "
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
        self._last_heard = time.monotonic()
        self.registered.set()
        log.info("worker %s registered with coordinator %s at %s (%d slots, HTTP port %s)",
                 self.node_id, reply.coordinator_id, endpoint, self.slots, self.http_port)
        if self._draining:
            await self._send_now(m.Credit(0))
        self._session_over = asyncio.Event()
        tasks = [asyncio.ensure_future(self._receive_loop()),
                 asyncio.ensure_future(self._heartbeat_loop()),
                 asyncio.ensure_future(self._send_loop()),
                 asyncio.ensure_future(self._session_over.wait())]
        try:
            done, _ = await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
            for t in done:
                t.result()
            if self._fatal_pending is not None:
                fatal, self._fatal_pending = self._fatal_pending, None
                raise fatal
        finally:
            for t in tasks:
                t.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)

    def _refused(self, reply: m.Refused) -> None:
        if reply.code == "version_mismatch":
            raise _FatalRefusal(VersionMismatchError(reply.message))
        if reply.code == "cluster_mismatch":
            raise _FatalRefusal(ClusterMismatchError(reply.message))
        if reply.code == "bad_hello":
            raise _FatalRefusal(ProtocolError(reply.message))

    async def _recv(self, timeout: float | None) -> m.Message | None:
        """The next valid message from the coordinator (None on timeout)."""
        assert self._sock is not None
        deadline = None if timeout is None else time.monotonic() + timeout
        while not self._inbox:
            left = None if deadline is None else max(0.0, deadline - time.monotonic())
            if left is not None and left <= 0:
                return None
            if not await self._sock.poll(None if left is None else int(left * 1000) + 1):
                continue
            self._inbox.extend(self._accept(await self._sock.recv_multipart()))
        return self._inbox.popleft()

    def _recv_nowait(self) -> m.Message | None | bool:
        """A message already waiting (None when what came was rejected), False when none is."""
        if self._inbox:
            return self._inbox.popleft()
        if self._sync is None:
            return False
        try:
            frames = self._sync.recv_multipart(zmq.NOBLOCK)
        except zmq.Again:
            return False
        self._inbox.extend(self._accept(frames))
        return self._inbox.popleft() if self._inbox else None

    def _accept(self, frames: list[bytes]) -> list[m.Message]:
        """The valid messages of one ZeroMQ message (one per frame, in order); bad frames are
        rejected and logged one by one."""
        try:
            check_frames(frames)
        except ProtocolError as exc:
            self._reject(exc)
            return []
        out = []
        for frame in frames:
            try:
                env = decode_frame(frame)
            except ProtocolError as exc:
                self._reject(exc)
                continue
            known = self._coord_session
            if known is not None and env.session == known[0] and env.seq <= known[1]:
                log.warning("worker %s rejected a replayed message (seq %d)", self.node_id,
                            env.seq)
                continue
            if known is not None and env.session != known[0] and not isinstance(
                    env.msg, (m.Refused, m.Welcome)):
                log.warning("worker %s ignored %s from an unknown coordinator session",
                            self.node_id, env.msg.OP)
                continue
            self._coord_session = (env.session, env.seq)
            self._last_heard = time.monotonic()
            if type(env.msg) is m.AssignMany:
                out += env.msg.expand()
            else:
                out.append(env.msg)
        return out

    def _reject(self, exc: ProtocolError) -> None:
        self.metrics.record_error("protocol")
        log.warning("worker %s rejected a message from the coordinator: %s", self.node_id, exc)

    async def _send_now(self, msg: m.Message) -> None:
        if self._sock is not None:
            await self._sock.send_multipart(self._sender.encode(msg))

    def _post(self, msg: m.Message) -> None:
        """Send ``msg`` now, or when posts are held, with the others when they are released."""
        self._posts.append(msg)
        if not self._holding:
            self._flush_posts()

    @contextlib.contextmanager
    def _held_posts(self) -> Iterator[None]:
        """Messages posted inside go out together when it ends (the results of one coalesced
        engine call, or of the morsels of one received batch run inline: one ZeroMQ message,
        one wake-up of the coordinator, instead of one each)."""
        self._holding += 1
        try:
            yield
        finally:
            self._holding -= 1
            if not self._holding and self._posts:
                self._flush_posts()

    def _flush_posts(self) -> None:
        msgs, self._posts = self._posts, []
        if len(msgs) > 1:
            msgs = m.batch_morsels(msgs)
        # Until the welcome, posts wait for the send loop: a read after a send here (the
        # kick) could take the welcome (or a refusal) away from the hello.
        if not self._outbox and self._sync is not None and self.registered.is_set():
            try:
                while msgs:
                    self._sync.send_multipart(self._sender.encode_many(msgs[:MAX_FRAMES]),
                                              zmq.NOBLOCK)
                    del msgs[:MAX_FRAMES]
            except zmq.ZMQError:
                # Not connected right now (the sequence numbers are spent; later ones are
                # higher, which is all the coordinator checks): the send loop retries.
                pass
            self._kick()
        if msgs:
            self._outbox.extend(msgs)
            self._outbox_event.set()

    def _kick(self) -> None:
        """After a send on the plain socket: read what waits now. ZMQ_FD, which the asyncio
        poll in _receive_loop waits on, is edge-triggered, and a send on the same socket can
        consume its edge (the send processes the socket's pending commands); a message that
        arrived meanwhile would then sit unread until some later traffic (a heartbeat ack a
        second later), which held morsels back for up to a heartbeat period."""
        if self._kick_pending or self._sync is None:
            return
        try:
            readable = self._sync.get(zmq.EVENTS) & zmq.POLLIN
        except zmq.ZMQError:
            return
        if readable:
            self._kick_pending = True
            asyncio.get_running_loop().call_soon(self._drain_kicked)

    def _drain_kicked(self) -> None:
        self._kick_pending = False
        try:
            with self._held_posts():
                msg = self._recv_nowait()
                while msg is not False:
                    if msg is not None and not self._dispatch(msg):
                        if self._session_over is not None:
                            self._session_over.set()
                        return
                    msg = self._recv_nowait()
        except _FatalRefusal as exc:
            # (a callback: the session ends and _session raises it)
            self._fatal_pending = exc
            if self._session_over is not None:
                self._session_over.set()

    async def _flush_outbox(self) -> None:
        while self._outbox and self._sock is not None:
            msg = self._outbox.pop(0)
            await self._send_now(msg)

    async def _send_loop(self) -> None:
        while True:
            await self._flush_outbox()
            self._outbox_event.clear()
            if not self._outbox:
                await self._outbox_event.wait()

    async def _receive_loop(self) -> None:
        assert self._sock is not None
        while True:
            # Only wait for readability here: every read is a plain read that is handled at
            # once (here or in _drain_kicked), so messages are handled in the order they came
            # (an asyncio read could complete, then wait for the loop while a kicked drain
            # handles later messages, and be dropped as a replay). What is already read comes
            # first: the assignments that came with the welcome wait in the inbox.
            with self._held_posts():
                msg: Any = self._recv_nowait()
                while msg is not False:
                    if msg is not None and not self._dispatch(msg):
                        return
                    # Everything already queued is handled in this wake-up, without the loop.
                    msg = self._recv_nowait()
                # All that came is queued: its engine calls start now, not a turn later.
                self._lanes.start_queued()
            await self._sock.poll()

    def _dispatch(self, msg: m.Message) -> bool:
        """Act on one message from the coordinator; False ends the session."""
        if isinstance(msg, m.Assign):
            key = (msg.job_id, msg.morsel)
            old = self._running.pop(key, None)
            if old is not None:
                old.cancel()
            if not self._run_inline(msg):
                self._running[key] = asyncio.ensure_future(self._run_morsel(msg))
        elif isinstance(msg, m.CancelMorsel):
            task = self._running.pop((msg.job_id, msg.morsel), None)
            if task is not None:
                task.cancel()
                log.info("morsel %d of job %s cancelled: %s", msg.morsel, msg.job_id,
                         msg.reason)
        elif isinstance(msg, m.Refused):
            if msg.code == "unknown_session":
                log.info("worker %s: the coordinator does not know this session "
                         "(it restarted); registering again", self.node_id)
                return False
            self._refused(msg)
            return False
        # HeartbeatAck and Welcome only refresh _last_heard.
        return True

    def _run_inline(self, msg: m.Assign) -> bool:
        """Run a list morsel of a per-item function without the engine: a tiny one of a
        function known to be cheap right here on the loop (for a few items the engine's
        planning costs more than the work), others on a direct thread, which samples the
        function first when its cost is unknown. False for morsels the engine must plan:
        other encodings and function kinds, and functions sampled costly."""
        if msg.encoding not in ("msgpack", "pickle"):
            return False
        if msg.func_pickle is not None:
            self._remember_func(msg.job_id, bytes(msg.func_pickle))
        cost = self._cost.get(self._func_key(msg))
        if cost is not None and cost > DIRECT_MAX_ITEM_S:
            return False  # costly: the engine plans it (processes, several cores)
        t0 = time.perf_counter()
        try:
            func = self._function(msg)
            spec = resolve_function(func)
            if spec.kind != ITEM:
                return False
            builtin = isinstance(func, str) and getattr(spec.func, "__module__", "") == \
                "sabot.processors"
            if not builtin:
                # User code runs only in the engine's isolated pool processes: an os._exit or a
                # segfault there kills a pool process (retried), never this worker node. List
                # morsels of one function are coalesced into one engine call (_Lanes).
                self._running[(msg.job_id, msg.morsel)] = self._lanes.submit(
                    msg, func, self._func_key(msg))
                return True
            data: Any = None
            if msg.encoding == "msgpack" and len(msg.data) <= INLINE_MAX_BYTES and (
                    builtin or cost is not None):
                data = payload.decode_value(msg.encoding, msg.data)
                # Only work known to be cheap may hold the loop.
                if len(data) > INLINE_MAX_ITEMS or (
                        not builtin and cost is not None and cost * len(data) > INLINE_BUDGET_S):
                    data = None
            if data is None:
                self._running[(msg.job_id, msg.morsel)] = asyncio.ensure_future(
                    self._run_direct(msg, spec.func))
                return True
            encoding, blob, _ = _apply_items(spec.func, data)
        except Exception as exc:
            self._morsels_failed += 1
            self.metrics.record_morsel(time.perf_counter() - t0, "failed")
            self._post(self._failure(msg, exc))
            return True
        self._done(msg, len(data), encoding, blob, time.perf_counter() - t0)
        return True

    async def _run_direct(self, msg: m.Assign, func: Any) -> None:
        """A list morsel of a per-item function not known to be costly: decode, apply and
        encode in one hop to a direct thread. When the job's cost is unknown the first items
        are timed; if they are costly the rest of the morsel goes to the engine (the sampled
        results are kept)."""
        key = (msg.job_id, msg.morsel)
        t0 = time.perf_counter()
        try:
            if self._direct is None:
                # A thread per slot: no morsel ever waits behind another one (a hung item
                # holds only its own morsel, which the coordinator times out and retries).
                self._direct = concurrent.futures.ThreadPoolExecutor(
                    self.base_slots, thread_name_prefix="sabot-direct")
            fkey = self._func_key(msg)
            sample = fkey not in self._cost
            done = await asyncio.get_running_loop().run_in_executor(
                self._direct, _direct_morsel, func, msg.encoding, msg.data, sample)
            if done.times and fkey not in self._cost:
                times = self._samples.setdefault(fkey, [])
                times.extend(done.times)
                if len(times) >= DIRECT_VERDICT_ITEMS:
                    self._cost[fkey] = _median(times)
                    del self._samples[fkey]
                    while len(self._cost) > _FUNC_CACHE:
                        self._cost.pop(next(iter(self._cost)))
                while len(self._samples) > _FUNC_CACHE:
                    self._samples.pop(next(iter(self._samples)))
            if done.rest is not None:
                try:
                    out = await self.engine.process(done.rest, self._function(msg))
                except ProcessingError as exc:
                    if exc.index is not None:
                        exc.index += len(done.head)
                    raise
                encoding, blob = await _encode(done.head + list(out))
                items = len(done.head) + len(done.rest)
            else:
                encoding, blob, items = done.encoding, done.blob, done.items
            self._done(msg, items, encoding, blob, time.perf_counter() - t0)
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            self._morsels_failed += 1
            self.metrics.record_morsel(time.perf_counter() - t0, "failed")
            self._post(self._failure(msg, exc))
        finally:
            if self._running.get(key) is asyncio.current_task():
                del self._running[key]

    def _done(self, msg: m.Assign, items: int, encoding: str, blob: bytes,
              elapsed: float, cost: float | None = None) -> None:
        """Post a morsel's result; ``cost``: its share of the work when it ran with others."""
        self._items_done += items
        self._morsels_done += 1
        self.metrics.record_items(items)
        self.metrics.record_morsel(elapsed)
        self._post(m.MorselResult(msg.job_id, msg.morsel, msg.attempt, items, encoding, blob,
                                  elapsed))
        self._observe_cost(elapsed if cost is None else cost)

    def _observe_cost(self, seconds: float) -> None:
        """Adapt the credits (SABOT_WORKER_SLOTS=auto) to the recent cost per morsel."""
        if not self._adaptive:
            return
        last = self._morsel_s
        cost = seconds if last is None else 0.8 * last + 0.2 * seconds
        self._morsel_s = cost
        if self._draining:
            return
        want = max(self.base_slots, min(self.slots, math.ceil(CREDIT_WORK_S / max(cost, 1e-6))))
        # Only a change by half or double is sent: costs that wobble around a value would
        # otherwise send a credit every few morsels.
        if want >= 2 * self.credits or 2 * want <= self.credits or (
                want != self.credits and want in (self.base_slots, self.slots)
                and abs(want - self.credits) * 2 >= self.credits):
            self.credits = want
            self._post(m.Credit(want))

    async def _heartbeat_loop(self) -> None:
        period = self.config.heartbeat_s
        timeout = self.config.node_timeout_s
        while True:
            await asyncio.sleep(period)
            silent = time.monotonic() - self._last_heard
            if silent > timeout:
                log.warning("worker %s: no word from the coordinator for %.1f s; reconnecting",
                            self.node_id, silent)
                return
            util = self._cpu.percent() if self._cpu is not None else 0.0
            await self._send_now(m.Heartbeat(len(self._running), self._items_done, util,
                                             self._draining))

    # -- running morsels ----------------------------------------------------------------------
    async def _run_morsel(self, msg: m.Assign) -> None:
        key = (msg.job_id, msg.morsel)
        t0 = time.perf_counter()
        try:
            func = self._function(msg)
            data = payload.decode_value(msg.encoding, msg.data)
            items = int(getattr(data, "num_rows", None) or len(data))
            out = await self.engine.process(data, func)
            encoding, blob = await _encode(out)
            self._done(msg, items, encoding, blob, time.perf_counter() - t0)
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            self._morsels_failed += 1
            self.metrics.record_morsel(time.perf_counter() - t0, "failed")
            self._post(self._failure(msg, exc))
        finally:
            if self._running.get(key) is asyncio.current_task():
                del self._running[key]

    def _failure(self, msg: m.Assign, exc: BaseException) -> m.MorselFailed:
        if isinstance(exc, ProcessingError):
            orig = exc.original
            name = type(orig).__name__ if orig is not None else type(exc).__name__
            text = str(orig) if orig is not None else str(exc.args[0] if exc.args else exc)
            tb = exc.remote_traceback or ""
            index = exc.index
        else:
            name, text, index = type(exc).__name__, str(exc), None
            tb = "".join(traceback.format_exception(type(exc), exc, exc.__traceback__))
        # User text may hold what UTF-8 cannot carry (lone surrogates): escaped, not lost.
        return m.MorselFailed(msg.job_id, msg.morsel, msg.attempt, _utf8(name), _utf8(text),
                              _utf8(tb), index)

    def _remember_func(self, job_id: str, key: bytes) -> None:
        self._job_func[job_id] = key
        self._job_func.move_to_end(job_id)
        while len(self._job_func) > _FUNC_CACHE:
            self._job_func.popitem(last=False)

    def _func_key(self, msg: m.Assign) -> bytes | str:
        return self._job_func.get(msg.job_id, msg.func_name)

    def _function(self, msg: m.Assign) -> Any:
        if msg.func_pickle is None:
            cached = self._funcs.get(msg.job_id)
            if cached is None:
                return msg.func_name  # a named processor: the engine looks it up
        else:
            key = bytes(msg.func_pickle)
            cached = self._loaded.get(key)
            if cached is None:
                cached = self._load_function(msg)
                if not isinstance(cached, BaseException):  # a module may be installed later
                    self.engine.use_pickle(cached, key)  # the pool gets these bytes as they are
                    self._loaded[key] = cached
                    while len(self._loaded) > _FUNC_CACHE:
                        self._loaded.popitem(last=False)
            else:
                self._loaded.move_to_end(key)
            self._funcs[msg.job_id] = cached
            self._remember_func(msg.job_id, key)
            while len(self._funcs) > _FUNC_CACHE:
                self._funcs.popitem(last=False)
        self._funcs.move_to_end(msg.job_id)
        if isinstance(cached, BaseException):
            raise cached
        return cached

    def _load_function(self, msg: m.Assign) -> Any:
        import cloudpickle

        try:
            return cloudpickle.loads(msg.func_pickle)
        except ModuleNotFoundError as exc:
            return ModuleNotFoundError(
                f"worker {self.node_id} cannot load the job's function {msg.func_name!r}: module "
                f"{exc.name!r} is not importable here ({exc}); install it on every worker, or "
                f"define the function in __main__ so that it is shipped by value",
                name=exc.name)
        except Exception as exc:
            return RuntimeError(
                f"worker {self.node_id} cannot unpickle the job's function {msg.func_name!r}: "
                f"{type(exc).__name__}: {exc}")

    # -- views --------------------------------------------------------------------------------
    def _load(self) -> dict[str, Any]:
        return {"queue_depth": len(self._running),
                "utilization_percent": self._cpu.percent() if self._cpu else 0.0}

    def info(self) -> dict[str, Any]:
        return {
            "node_id": self.node_id, "role": "worker",
            "state": "alive" if self.registered.is_set() else "connecting",
            "address": self.advertise_host, "http_port": self.http_port, "pid": os.getpid(),
            "cores": self.cores, "slots": self.slots, "credits": self.credits,
            "running": len(self._running),
            "morsels_done": self._morsels_done, "morsels_failed": self._morsels_failed,
            "items_done": self._items_done, "coordinator_id": self.coordinator_id,
            "coordinator": f"{self.config.coordinator_host}:{self.config.coordinator_port}",
            "draining": self._draining,
        }


@dataclass(slots=True, eq=False)
class _Queued:
    """A list morsel of a user function waiting for (or in) a coalesced engine call."""

    msg: m.Assign
    func: Any
    fkey: bytes | str
    done: asyncio.Future[None]
    size: int
    items: list[Any] | None = None  # decoded input, once ready
    # A bulk morsel left encoded: the pool process that runs it decodes and encodes it.
    encoded: bool = False
    rows: int = 1  # its item count (an estimate for pickle morsels, for statistics only)


class _Lanes:
    """Coalesced engine calls for list morsels of user (per-item) functions.

    One engine call per morsel costs the isolated pool a round trip, the function's pickling
    and the engine's planning for each morsel, and calls that come and go one by one make the
    isolated pool grow and shrink (a process start each time): tiny morsels then ran at a few
    hundred per second. Here a morsel is decoded when it arrives (big ones off the loop), and
    every decoded morsel of the same function that waits while an engine call runs goes into
    the next call (one engine call spreads them over the pool's processes); results are cut
    back into morsels and encoded after the call has left the engine, while the next one runs.
    One engine call at a time keeps the pool's size steady; a call running longer than
    ESCALATE_S (a slow or hung item) lets one more start beside it, so other morsels are not
    held up behind it. A bulk morsel (ENCODED_BYTES or more) is not decoded here at all: it is
    a call of its own, started at once, which a pool process decodes, runs and encodes.

    Each morsel's ``done`` future is its entry in ``Worker._running``, so cancelling, draining
    and handing back work as for any morsel: a morsel cancelled while
    its call runs cancels that call and the call's other morsels wait for the next one.
    """

    #: A call running this long lets another start beside it.
    ESCALATE_S = 1.0
    #: Most bytes of input and morsels coalesced into one call.
    MAX_BYTES = 16 << 20
    MAX_MORSELS = 256
    #: Inputs or results bigger than this are decoded / encoded off the event loop.
    THREAD_BYTES = 256 << 10
    #: Morsels of at least this many bytes are not decoded here: each is one task of the
    #: isolated pool, which decodes it, runs it and encodes the results, so this process only
    #: moves bytes (decoding, pickling to the pool and back, and encoding a bulk morsel here
    #: cost this process more CPU than the pool spent on the function).
    ENCODED_BYTES = 32 << 10

    def __init__(self, worker: Worker) -> None:
        self.worker = worker
        self.waiting: list[_Queued] = []
        # Engine calls in flight: task -> (start time, morsels); a task leaves this table when
        # its engine call returns (its results may still be being encoded).
        self.calls: dict[asyncio.Future[None], tuple[float, list[_Queued]]] = {}
        self._timer: asyncio.TimerHandle | None = None
        self._pump_due = False

    def submit(self, msg: m.Assign, func: Any, fkey: bytes | str) -> asyncio.Future[None]:
        """Decode and queue a morsel now; returns its future, which is the morsel's entry in
        ``Worker._running``: done when its result (or failure) is posted, and cancelling it
        takes the morsel out of its call. (No task per morsel: a task costs a tiny morsel two
        more turns of the loop and a tenth of its CPU.)"""
        key = (msg.job_id, msg.morsel)
        t0 = time.perf_counter()
        q = _Queued(msg, func, fkey, asyncio.get_running_loop().create_future(), len(msg.data))
        q.done.add_done_callback(lambda fut: self._settled(q, key, fut))
        try:
            if q.size >= self.ENCODED_BYTES and msg.encoding in ("msgpack", "pickle"):
                q.encoded = True
                q.rows = payload.count_items(msg.encoding, msg.data) or 1
            else:
                # (below ENCODED_BYTES, decoding here is cheaper than a hop to a thread)
                q.items = _decode_list(msg)
        except Exception as exc:
            self._fail(q, exc, t0)
            return q.done
        self.waiting.append(q)
        self._pump_soon()
        return q.done

    def _settled(self, q: _Queued, key: tuple[str, int], fut: asyncio.Future[None]) -> None:
        running = self.worker._running
        if running.get(key) is fut:
            del running[key]
        if fut.cancelled():
            self._drop(q)

    def _fail(self, q: _Queued, exc: BaseException, t0: float) -> None:
        worker = self.worker
        worker._morsels_failed += 1
        worker.metrics.record_morsel(time.perf_counter() - t0, "failed")
        worker._post(worker._failure(q.msg, exc))
        if not q.done.done():
            q.done.set_result(None)

    def _drop(self, q: _Queued) -> None:
        if q in self.waiting:
            self.waiting.remove(q)
            return
        for call, (_, batch) in list(self.calls.items()):
            if q in batch:
                # The call's other morsels run again in the next call, without this one.
                del self.calls[call]
                call.cancel()
                self.waiting[:0] = [o for o in batch if o is not q and not o.done.done()]
                break
        self.pump()

    def _pump_soon(self) -> None:
        # At the end of this turn of the loop, not now: the morsels that came together (one
        # ZeroMQ message of assignments) are all queued by then and share one call, instead of
        # the first going alone and the rest waiting for it.
        if not self._pump_due:
            self._pump_due = True
            asyncio.get_running_loop().call_soon(self.start_queued)

    def start_queued(self) -> None:
        """Start the calls the morsels queued since _pump_soon need (once: the receive loop
        calls this when it has read everything waiting, before the scheduled call runs)."""
        if self._pump_due:
            self._pump_due = False
            self.pump()

    def pump(self) -> None:
        loop = asyncio.get_running_loop()
        now = loop.time()
        if any(q.done.done() for q in self.waiting):
            # cancelled (or failed) after it was queued, before its _settled callback ran
            self.waiting = [q for q in self.waiting if not q.done.done()]
        if any(q.encoded for q in self.waiting):
            # An encoded morsel is a call of its own (one pool task) and starts at once; the
            # pool's queue spreads them over its processes.
            for q in [q for q in self.waiting if q.encoded]:
                call = asyncio.ensure_future(self._call([q]))
                self.calls[call] = (now, [q])
            self.waiting = [q for q in self.waiting if not q.encoded]
        while self.waiting:
            oldest = min((t for t, b in self.calls.values() if not b[0].encoded), default=None)
            if oldest is not None and now - oldest < self.ESCALATE_S:
                if self._timer is None:
                    self._timer = loop.call_later(self.ESCALATE_S - (now - oldest), self._tick)
                return
            batch = self._take()
            call = asyncio.ensure_future(self._call(batch))
            self.calls[call] = (now, batch)

    def _tick(self) -> None:
        self._timer = None
        self.pump()

    def _take(self) -> list[_Queued]:
        first = self.waiting[0]
        batch, rest, size = [], [], 0
        for q in self.waiting:
            if q.fkey == first.fkey and not q.encoded and len(batch) < self.MAX_MORSELS and (
                    not batch or size + q.size <= self.MAX_BYTES):
                batch.append(q)
                size += q.size
            else:
                rest.append(q)
        self.waiting = rest
        return batch

    async def _call(self, batch: list[_Queued]) -> None:
        worker = self.worker
        t0 = time.perf_counter()
        me = asyncio.current_task()
        left_engine = False
        try:
            if batch[0].encoded:
                # (one morsel: a failure's index is already the item within it)
                results = await worker.engine.process_encoded(
                    [(q.msg.encoding, q.msg.data, q.rows) for q in batch], batch[0].func,
                    payload.decode_value, payload.encode_items)
                left_engine = self.calls.pop(me, None) is not None  # type: ignore[arg-type]
            else:
                parts: list[list[Any]] = [q.items or [] for q in batch]
                items = [x for part in parts for x in part] if len(parts) > 1 else parts[0]
                try:
                    out = await worker.engine.process(items, batch[0].func)
                except ProcessingError as exc:
                    if exc.index is None or len(batch) == 1:
                        raise
                    self._failed_item(batch, parts, exc, t0)
                    return
                # Out of the engine: the next call may start while these results are encoded.
                left_engine = self.calls.pop(me, None) is not None  # type: ignore[arg-type]
                if left_engine and self.waiting:
                    self.pump()
                out = out if isinstance(out, list) else list(out)
                if sum(q.size for q in batch) > self.THREAD_BYTES:
                    encoded = await asyncio.to_thread(_encode_cut, out, parts)
                else:
                    encoded = _encode_cut(out, parts)
                results = [(len(part), encoding, blob)
                           for part, (encoding, blob) in zip(parts, encoded)]
            elapsed = time.perf_counter() - t0
            with worker._held_posts():
                for q, (n, encoding, blob) in zip(batch, results):
                    if not q.done.done():
                        q.items = None
                        worker._done(q.msg, n, encoding, blob, elapsed, elapsed / len(batch))
                        q.done.set_result(None)
        except asyncio.CancelledError:
            if left_engine:
                # Cancelled while encoding: the morsels not yet posted run again.
                self.waiting[:0] = [q for q in batch if not q.done.done()]
            raise
        except Exception as exc:
            for q in batch:
                if not q.done.done():
                    self._fail(q, exc, t0)
        finally:
            if me is not None:
                self.calls.pop(me, None)  # type: ignore[arg-type]
            if self.waiting:
                self.pump()

    def _failed_item(self, batch: list[_Queued], parts: list[list[Any]], exc: ProcessingError,
                     t0: float) -> None:
        """An item failed: its morsel fails (with the index inside it); the others run again
        in the next call (this call's results are gone with the exception)."""
        index = int(exc.index or 0)
        again = []
        for q, part in zip(batch, parts):
            if q.done.done():
                continue
            if 0 <= index < len(part):
                exc.index = index
                self._fail(q, exc, t0)
            else:
                again.append(q)
            index -= len(part)
        self.waiting[:0] = again


def _utf8(text: str) -> str:
    try:
        text.encode("utf-8")
        return text
    except UnicodeEncodeError:
        return text.encode("utf-8", "backslashreplace").decode("utf-8")


def _decode_list(msg: m.Assign) -> list[Any]:
    items = payload.decode_value(msg.encoding, msg.data)
    return items if isinstance(items, list) else list(items)


def _encode_cut(out: list[Any], parts: list[list[Any]]) -> list[tuple[str, bytes]]:
    """The results of a coalesced call cut back into its morsels, each encoded."""
    encoded = []
    pos = 0
    for part in parts:
        encoded.append(payload.encode_items(out[pos:pos + len(part)]))
        pos += len(part)
    return encoded


def _apply_items(func: Any, data: list[Any]) -> tuple[str, bytes, int]:
    """``func`` over every item, encoded; ProcessingError names the failing item."""
    encoding, blob = payload.encode_items(_apply(func, data))
    return encoding, blob, len(data)


@dataclass(slots=True)
class _Direct:
    """What the direct thread made of a morsel: its encoded result, or (``rest`` set) the
    results of the sampled head and the items left for the engine."""

    encoding: str = ""
    blob: bytes = b""
    items: int = 0
    times: list[float] = field(default_factory=list)  # sampled seconds per item
    head: list[Any] = field(default_factory=list)
    rest: list[Any] | None = None


def _direct_morsel(func: Any, encoding: str, data: bytes, sample: bool) -> _Direct:
    items = payload.decode_value(encoding, data)
    if not isinstance(items, list):
        items = list(items)
    if not sample:
        enc, blob, n = _apply_items(func, items)
        return _Direct(enc, blob, n)
    head: list[Any] = []
    times: list[float] = []
    clock = time.perf_counter
    t0 = last = clock()
    limit = min(len(items), DIRECT_SAMPLE_ITEMS)
    while len(head) < limit:
        i = len(head)
        try:
            head.append(func(items[i]))
        except Exception as exc:
            raise ProcessingError(f"item {i} failed: {type(exc).__name__}: {exc}",
                                  index=i, original=exc) from exc
        now = clock()
        times.append(now - last)
        last = now
        if now - t0 > DIRECT_SAMPLE_S:
            break
    n = len(head)
    # The median item: on a busy machine a preemption lengthens one item, not most of them
    # (a function that sleeps or computes for long lengthens them all). A handful of items
    # decide only when they alone used up the sampling time.
    if n < len(items) and _median(times) > DIRECT_MAX_ITEM_S and (
            n >= DIRECT_VERDICT_ITEMS or last - t0 > DIRECT_SAMPLE_S):
        return _Direct(times=times, head=head, rest=items[n:])
    tail = _apply(func, items, n)
    enc, blob = payload.encode_items(head + tail)
    return _Direct(enc, blob, len(items), times)


def _median(values: list[float]) -> float:
    return sorted(values)[len(values) // 2] if values else 0.0


def _apply(func: Any, data: list[Any], start: int = 0) -> list[Any]:
    """``func`` over ``data[start:]``; ProcessingError names the failing item."""
    it = iter(data)
    if start:
        it = iter(data[start:])
    try:
        return [func(item) for item in it]
    except Exception as exc:
        # A list iterator knows how many items it has left: the failing one is the last taken.
        i = len(data) - operator.length_hint(it) - 1
        raise ProcessingError(f"item {i} failed: {type(exc).__name__}: {exc}",
                              index=i, original=exc) from exc


async def _encode(out: Any) -> tuple[str, bytes]:
    # Big results are encoded off the event loop so heartbeats keep going.
    n = len(out) if hasattr(out, "__len__") else 0
    if n > 20_000:
        return await asyncio.to_thread(payload.encode_value, out)
    return payload.encode_value(out)


class WorkerBackend:
    """The worker as a :class:`~sabot.http.backend.NodeBackend` (health, readiness, metrics,
    stats); jobs are submitted to the coordinator, not here."""

    role = "worker"

    def __init__(self, worker: Worker) -> None:
        self.worker = worker
        self.node_id = worker.node_id

    def is_ready(self) -> bool:
        return self.worker.registered.is_set() and not self.worker._draining

    def health(self) -> dict[str, Any]:
        w = self.worker
        return {"coordinator_connected": w.registered.is_set(), "running": len(w._running),
                "draining": w._draining}

    def cluster_info(self) -> None:
        return None

    def nodes(self) -> list[dict[str, Any]]:
        return [self.worker.info()]

    def stats(self) -> dict[str, Any]:
        w = self.worker
        engine = w.engine.get_stats() if w.engine is not None else None
        return {"nodes": [w.info()],
                "jobs": {"running_morsels": len(w._running), "morsels_done": w._morsels_done,
                         "morsels_failed": w._morsels_failed},
                "engine": engine, "usable_cores": usable_cores(),
                "system_resources": system_resources()}

    def _not_here(self) -> Exception:
        from ..http.validation import BadRequest

        c = self.worker.config
        return BadRequest(f"this node is a worker; submit jobs to the coordinator at "
                          f"{c.coordinator_host}:{c.coordinator_port}")

    async def submit_job(self, data: Any, processor: str, *, priority: int = 0
                         ) -> dict[str, Any]:
        raise self._not_here()

    async def get_job(self, job_id: str, *, offset: int = 0, limit: int | None = None
                      ) -> dict[str, Any]:
        raise self._not_here()

    async def cancel_job(self, job_id: str) -> dict[str, Any]:
        raise self._not_here()

    def list_jobs(self, limit: int = 100) -> list[dict[str, Any]]:
        return []


__all__ = ["DRAIN_GRACE_S", "Worker", "WorkerBackend"]
