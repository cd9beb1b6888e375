"""A client of a remote coordinator over ZeroMQ (CURVE): submit, status, results, cancel.

Every request is idempotent (a submit carries its job id), so a request whose reply does not
come (the coordinator restarted) is simply sent again after saying hello again, until the
caller's timeout runs out: only that timeout bounds a request, however many tries it takes.
A socket monitor tells the client at once when its connection drops and comes back (a
coordinator restart): the requests in flight are sent again then, without waiting for their
try to time out. A hello that goes unanswered drops the socket, so the next try asks the
coordinator's HTTP port for its ZeroMQ endpoint again.
"""

from __future__ import annotations

import asyncio
import logging
import os
import socket
import time
import uuid
from collections.abc import AsyncIterator
from typing import Any

import zmq

from ..config import Config
from ..errors import AuthenticationError, CoordinatorUnavailableError, ProtocolError
from ..states import JobState
from . import transport
from .loop_socket import LoopSocket
from .protocol import PROTOCOL_VERSION, ErrorCode, Sender, decode, decode_frame, refusal_error
from .protocol import messages as m
from .remote_spool import RemoteSpool
from .security import ClusterKeys
from .spool import REMOTE, SHARED, SHARED_SYNCED, Spool
from .spool_client import SpoolClient, open_data_port

log = logging.getLogger(__name__)

#: How long one try of a request waits for its reply before it is sent again.
TRY_TIMEOUT_S = 5.0
#: A fetch that waits on the coordinator asks for its answer this long before the caller's
#: deadline, so that the answer (and what it says about the job) arrives in time.
REPLY_MARGIN_S = 0.25
#: Pause between tries while the coordinator cannot be reached.
RETRY_S = 0.5
#: A request that keeps failing says so in the log this often (it keeps trying).
WARN_EVERY_S = 10.0


class ClusterClient:
    """Talks to the coordinator whose HTTP API is at host:port."""

    def __init__(self, config: Config, host: str, port: int) -> None:
        self.config = config
        self.host = "127.0.0.1" if host in ("0.0.0.0", "", "::") else host
        self.port = port
        self.node_id = f"client-{socket.gethostname()}-{os.getpid()}-{uuid.uuid4().hex[:6]}"
        self._ctx: zmq.Context | None = None
        #: The DEALER to the coordinator and its connection monitor, read on the loop.
        self._sock: LoopSocket | None = None
        self._monitor: LoopSocket | None = None
        self._dropped = False  # the connection dropped and has not come back yet
        self._sender = Sender()
        self._keys: ClusterKeys | None = None
        self._endpoint: str | None = None
        self._pending: dict[int, tuple[asyncio.Future[m.Message], m.Message]] = {}
        self._next_id = 0
        #: Resolved (and replaced) when the requests in flight must be sent again: the
        #: connection came back, or the coordinator no longer knows this session.
        self._resend: asyncio.Future[None] | None = None
        self._welcome: asyncio.Future[m.Message] | None = None
        self._connect_lock = asyncio.Lock()
        self._session_ok = False
        self._coord_session: tuple[int, int] | None = None
        self._closed = False
        #: The coordinator's spool, while this client shares it (its last welcome said so):
        #: big inputs and results then pass as files (sabot.cluster.spool).
        self.spool: Spool | None = None
        self.spool_sync = False
        self._data: SpoolClient | None = None  # the data port's client, once welcomed so

    # -- connection ---------------------------------------------------------------------------
    async def connect(self, wait: float | None = None) -> None:
        """Say hello (opening the socket first when there is none); ``wait`` bounds the wait
        for the welcome. CoordinatorUnavailableError when it does not come."""
        async with self._connect_lock:
            if self._session_ok:
                return
            if self._closed:
                raise CoordinatorUnavailableError("this client is closed")
            if self._keys is None:
                self._keys = await asyncio.to_thread(ClusterKeys.from_config, self.config)
            http_wait = max(2.0, self.config.node_timeout_s)
            if wait is not None:
                http_wait = max(0.1, min(http_wait, wait))
            if self._sock is None:
                info = await asyncio.to_thread(
                    transport.fetch_cluster_info, self.host, self.port,
                    timeout=http_wait, token=self.config.auth_token)
                if info.get("curve_server_key") not in (None, self._keys.server_public.decode()):
                    raise AuthenticationError(
                        f"the coordinator at {self.host}:{self.port} uses another cluster key: "
                        "use the same SABOT_CLUSTER_KEY / SABOT_CLUSTER_KEY_FILE as the cluster "
                        f"(this client's key came from {self._keys.source}, fingerprint "
                        f"{self._keys.fingerprint}; the coordinator's "
                        f"{info.get('key_fingerprint')})")
                if self._ctx is None:
                    self._ctx = zmq.Context()
                self._endpoint = transport.zmq_endpoint(self.host, int(info["zmq_port"]))
                await self._probe_data_port(info)
                sock = transport.client_socket(self._ctx, self._keys, self._endpoint)
                loop = asyncio.get_running_loop()
                self._dropped = False
                # The monitor first: it must see the first handshake.
                self._monitor = LoopSocket(transport.connection_monitor(sock), loop,
                                           self._on_monitor)
                self._sock = LoopSocket(sock, loop, self._on_frames)
            try:
                await self._hello(http_wait)
            except CoordinatorUnavailableError:
                # Unanswered: the next try starts from the HTTP port again (the coordinator
                # may have come back on another ZeroMQ port).
                await self._drop_socket()
                raise

    async def _hello(self, wait: float) -> None:
        loop = asyncio.get_running_loop()
        self._sender = Sender()
        self._coord_session = None
        self._welcome = loop.create_future()
        assert self._sock is not None
        token = ""
        if self.config.spool:
            token = await asyncio.to_thread(Spool(self.config.data_dir).read_token) or ""
        await self._sock.send(self._sender.encode(m.Hello(
            PROTOCOL_VERSION, self.config.cluster_name, "client", self.node_id, pid=os.getpid(),
            spool_token=token, remote_spool=self._data is not None)))
        try:
            reply = await asyncio.wait_for(asyncio.shield(self._welcome), wait)
        except TimeoutError:
            raise CoordinatorUnavailableError(
                f"the coordinator at {self._endpoint} did not answer hello within "
                f"{wait:g} s") from None
        if isinstance(reply, m.Refused):
            raise refusal_error(reply.code, reply.message)
        shared = isinstance(reply, m.Welcome) and int(reply.spool) in (SHARED, SHARED_SYNCED)
        self.spool = Spool(self.config.data_dir) if shared and token else None
        self.spool_sync = shared and int(reply.spool) == SHARED_SYNCED
        if isinstance(reply, m.Welcome) and int(reply.spool) == REMOTE and \
                self._data is not None:
            # Another host: the same spool files, through the coordinator's data port.
            self.spool = RemoteSpool(self._data)
        self._session_ok = True

    async def _probe_data_port(self, info: dict[str, Any]) -> None:
        """Keep a client of the coordinator's data port (``GET /cluster`` names it) when it
        answers: the hello then offers to pass big data through it."""
        old, self._data = self._data, None
        if old is not None:
            old.close()
        if self.config.spool:
            assert self._ctx is not None and self._keys is not None
            self._data = await asyncio.to_thread(
                open_data_port, self._ctx, self._keys, self.host, info,
                timeout_s=max(5.0, self.config.node_timeout_s))

    def _resend_all(self) -> None:
        """The requests in flight go out again (each from its own loop in :meth:`request`)."""
        self._session_ok = False
        fut, self._resend = self._resend, None
        if fut is not None and not fut.done():
            fut.set_result(None)

    def _on_monitor(self, frames: list[bytes]) -> None:
        """Socket events: a connection that dropped and came back (the coordinator restarted,
        or the network blipped) means the requests sent before may never be answered."""
        event = transport.connection_event(frames)
        if event == zmq.EVENT_DISCONNECTED:
            self._dropped = True
            self._session_ok = False
            log.debug("client %s: connection to %s dropped", self.node_id, self._endpoint)
        elif event == zmq.EVENT_HANDSHAKE_SUCCEEDED and self._dropped:
            self._dropped = False
            log.debug("client %s: connection to %s is back; sending again", self.node_id,
                      self._endpoint)
            self._resend_all()

    async def _drop_socket(self) -> None:
        self._session_ok = False
        sock, monitor = self._sock, self._monitor
        self._sock = self._monitor = None
        if sock is not None and monitor is not None:
            try:
                sock.sock.disable_monitor()
            except zmq.ZMQError:
                pass
        for each in (monitor, sock):
            if each is not None:
                each.close()

    def _on_frames(self, frames: list[bytes]) -> None:
        for frame in frames:
            self._on_frame(frame)

    def _on_frame(self, frame: bytes) -> None:
        try:
            env = decode_frame(frame)
        except ProtocolError as exc:
            log.warning("client rejected a message from the coordinator: %s", exc)
            return
        known = self._coord_session
        if known is not None and env.session == known[0] and env.seq <= known[1]:
            log.warning("client rejected a replayed message (seq %d)", env.seq)
            return
        self._coord_session = (env.session, env.seq)
        msg = env.msg
        if isinstance(msg, (m.Welcome, m.Refused)):
            if isinstance(msg, m.Refused) and msg.code == ErrorCode.UNKNOWN_SESSION:
                if self._welcome is not None and not self._welcome.done():
                    return  # an answer to a request sent before our hello; wait on
                # The coordinator restarted: hello again and send what is in flight again.
                self._resend_all()
                return
            if self._welcome is not None and not self._welcome.done():
                self._welcome.set_result(msg)
            return
        rid = getattr(msg, "request_id", None)
        entry = self._pending.get(rid) if rid is not None else None
        if entry is not None and not entry[0].done():
            entry[0].set_result(msg)

    async def close(self) -> None:
        self._closed = True
        await self._drop_socket()
        for fut, _ in self._pending.values():
            if not fut.done():
                fut.cancel()
        self._pending.clear()
        if self._data is not None:
            self._data.close()
            self._data = None
        if self._ctx is not None:
            self._ctx.term()
            self._ctx = None

    def stats_sync(self, timeout: float = 10.0) -> dict[str, Any]:
        """Cluster stats without an event loop: a short-lived plain ZeroMQ session. It works even
        when the coordinator's HTTP API shares this thread's (blocked) event loop."""
        keys = self._keys or ClusterKeys.from_config(self.config)
        endpoint = self._endpoint
        if endpoint is None:
            info = transport.fetch_cluster_info(self.host, self.port, timeout=timeout,
                                                token=self.config.auth_token)
            endpoint = transport.zmq_endpoint(self.host, int(info["zmq_port"]))
        ctx = zmq.Context()
        sock = transport.client_socket(ctx, keys, endpoint)
        try:
            sender = Sender()
            sock.send_multipart(sender.encode(m.Hello(
                PROTOCOL_VERSION, self.config.cluster_name, "client", self.node_id + "-sync",
                pid=os.getpid())))
            for request in (None, m.GetStats(1)):
                if request is not None:
                    sock.send_multipart(sender.encode(request))
                if not sock.poll(int(timeout * 1000)):
                    raise CoordinatorUnavailableError(
                        f"the coordinator at {endpoint} did not answer within {timeout:g} s")
                reply = decode(sock.recv_multipart()).msg
                if isinstance(reply, m.Refused):
                    raise refusal_error(reply.code, reply.message)
            assert isinstance(reply, m.Stats)
            return dict(reply.stats)
        finally:
            sock.close(0)
            ctx.term()

    # -- requests -----------------------------------------------------------------------------
    def new_request_id(self) -> int:
        self._next_id += 1
        return self._next_id

    async def request(self, make: Any, *, timeout: float | None = 30.0,
                      try_timeout: float = TRY_TIMEOUT_S) -> m.Message:
        """Send ``make(request_id)`` and return the reply. A try that gets no reply within
        ``try_timeout`` (or whose connection dropped and came back) is sent again, after a
        new hello, until ``timeout`` runs out (None: forever); then
        CoordinatorUnavailableError."""
        deadline = None if timeout is None else time.monotonic() + timeout
        rid = self.new_request_id()
        msg = make(rid)
        if isinstance(msg, m.FetchResults):
            # The coordinator holds a fetch up to its wait_ms: a try must outlast that, or it
            # is sent again (and the session taken for lost) while its answer is still due.
            try_timeout = max(try_timeout, msg.wait_ms / 1000 + TRY_TIMEOUT_S)
        loop = asyncio.get_running_loop()
        fut: asyncio.Future[m.Message] = loop.create_future()
        self._pending[rid] = (fut, msg)
        last_error: BaseException | None = None
        tries = 0
        next_warning = time.monotonic() + WARN_EVERY_S
        try:
            while True:
                now = time.monotonic()
                left = None if deadline is None else deadline - now
                if left is not None and left <= 0:
                    raise CoordinatorUnavailableError(
                        f"the coordinator at {self.host}:{self.port} did not answer "
                        f"{msg.OP} within {timeout:g} s ({tries} tr{'y' if tries == 1 else 'ies'})"
                        + (f": {last_error}" if last_error else ""))
                if last_error is not None and now >= next_warning:
                    next_warning = now + WARN_EVERY_S
                    log.warning("no answer from the coordinator at %s:%s to %s yet (%s); "
                                "still trying", self.host, self.port, msg.OP, last_error)
                try:
                    if not self._session_ok or self._sock is None:
                        await self.connect(left)  # (a live session skips the lock)
                except (CoordinatorUnavailableError, OSError) as exc:
                    last_error = exc
                    await asyncio.sleep(RETRY_S if left is None else min(RETRY_S, left))
                    continue
                if self._resend is None or self._resend.done():
                    self._resend = loop.create_future()
                resend = self._resend
                assert self._sock is not None
                tries += 1
                if self._monitor is not None:  # (a caller on another loop than before)
                    self._monitor.follow(loop)
                await self._sock.send(self._sender.encode(msg))
                wait = try_timeout if left is None else min(try_timeout, left)
                await asyncio.wait((fut, resend), timeout=wait,
                                   return_when=asyncio.FIRST_COMPLETED)
                if fut.done():
                    return fut.result()
                if not resend.done():
                    # No answer in time: maybe the coordinator restarted and lost the session.
                    self._session_ok = False
                    last_error = CoordinatorUnavailableError(
                        f"no answer to {msg.OP} within {wait:g} s")
        finally:
            self._pending.pop(rid, None)


async def iter_result_batches(client_request: Any, job_id: str, *, timeout: float | None,
                              until_done: bool = False, wait_ms: int | None = None,
                              files: bool = False) -> AsyncIterator[m.ResultBatch]:
    """ResultBatch messages of a job in morsel order until the last one (used by the API).
    ``until_done``: the first answer waits for the whole job (fewer round trips when the
    caller wants everything anyway); otherwise batches come as morsels finish. ``files``:
    results in files come as spool references (a client sharing the spool reads them)."""
    if wait_ms is None:
        wait_ms = 10_000 if until_done else 2000
    start = 0
    deadline = None if timeout is None else time.monotonic() + timeout
    asked = False
    while True:
        left = None if deadline is None else deadline - time.monotonic()
        if left is not None and (left <= 0 or (asked and left <= REPLY_MARGIN_S)):
            raise TimeoutError(job_id)
        asked = True
        # The coordinator's answer must arrive before the caller's deadline: it is asked to
        # answer a little earlier.
        wait = wait_ms if left is None else \
            max(0, min(wait_ms, int((left - REPLY_MARGIN_S) * 1000)))
        # The request itself retries (a coordinator restart) until the caller's deadline.
        reply = await client_request(
            lambda rid, s=start, w=wait: m.FetchResults(rid, job_id, s, 16 << 20, w, until_done,
                                                        files),
            left)
        assert isinstance(reply, m.ResultBatch)
        yield reply
        start += len(reply.morsels)
        if reply.status in (JobState.FAILED, JobState.CANCELLED):
            return
        if start >= reply.total_morsels and reply.status == JobState.COMPLETED:
            return


__all__ = ["TRY_TIMEOUT_S", "ClusterClient", "iter_result_batches"]
