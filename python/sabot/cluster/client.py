"""A client of a remote coordinator over ZeroMQ (CURVE): submit, status, results, cancel.

Every request is idempotent (a submit carries its job id), so a request whose reply does not
come (the coordinator restarted) is simply sent again after saying hello again.
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
import zmq.asyncio

from ..config import Config
from ..errors import AuthenticationError, CoordinatorUnavailableError, ProtocolError
from ..states import JobState
from . import transport
from .protocol import PROTOCOL_VERSION, ErrorCode, Sender, decode, decode_frame, refusal_error
from .protocol import messages as m
from .security import ClusterKeys

log = logging.getLogger(__name__)

#: How long one try of a request waits for its reply before it is sent again.
TRY_TIMEOUT_S = 5.0


class ClusterClient:
    """Talks to the coordinator whose HTTP API is at host:port."""

    def __init__(self, config: Config, host: str, port: int) -> None:
        self.config = config
        self.host = "127.0.0.1" if host in ("0.0.0.0", "", "::") else host
        self.port = port
        self.node_id = f"client-{socket.gethostname()}-{os.getpid()}-{uuid.uuid4().hex[:6]}"
        self._ctx: zmq.asyncio.Context | None = None
        self._sock: zmq.asyncio.Socket | None = None
        self._sender = Sender()
        self._keys: ClusterKeys | None = None
        self._endpoint: str | None = None
        self._pending: dict[int, tuple[asyncio.Future[m.Message], m.Message]] = {}
        self._next_id = 0
        self._reader: asyncio.Task[None] | None = None
        self._welcome: asyncio.Future[m.Message] | None = None
        self._connect_lock = asyncio.Lock()
        self._session_ok = False
        self._coord_session: tuple[int, int] | None = None
        self._closed = False

    # -- connection ---------------------------------------------------------------------------
    async def connect(self) -> None:
        async with self._connect_lock:
            if self._session_ok:
                return
            if self._closed:
                raise CoordinatorUnavailableError("this client is closed")
            if self._keys is None:
                self._keys = await asyncio.to_thread(ClusterKeys.from_config, self.config)
            if self._sock is None:
                info = await asyncio.to_thread(
                    transport.fetch_cluster_info, self.host, self.port,
                    timeout=max(2.0, self.config.node_timeout_s), token=self.config.auth_token)
                if info.get("curve_server_key") not in (None, self._keys.server_public.decode()):
                    raise AuthenticationError(
                        f"the coordinator at {self.host}:{self.port} uses another cluster key: "
                        "use the same SABOT_CLUSTER_KEY / SABOT_CLUSTER_KEY_FILE as the cluster "
                        f"(this client's key came from {self._keys.source}, fingerprint "
                        f"{self._keys.fingerprint}; the coordinator's "
                        f"{info.get('key_fingerprint')})")
                self._ctx = zmq.asyncio.Context()
                self._endpoint = transport.zmq_endpoint(self.host, int(info["zmq_port"]))
                self._sock = transport.client_socket(self._ctx, self._keys, self._endpoint)
                self._reader = asyncio.get_running_loop().create_task(self._read_loop())
            await self._hello()

    async def _hello(self) -> None:
        loop = asyncio.get_running_loop()
        self._sender = Sender()
        self._coord_session = None
        self._welcome = loop.create_future()
        assert self._sock is not None
        await self._sock.send_multipart(self._sender.encode(m.Hello(
            PROTOCOL_VERSION, self.config.cluster_name, "client", self.node_id, pid=os.getpid())))
        try:
            reply = await asyncio.wait_for(asyncio.shield(self._welcome),
                                           max(2.0, self.config.node_timeout_s))
        except TimeoutError:
            raise CoordinatorUnavailableError(
                f"the coordinator at {self._endpoint} did not answer hello") from None
        if isinstance(reply, m.Refused):
            raise refusal_error(reply.code, reply.message)
        self._session_ok = True
        # Requests that were waiting when the session broke are sent again.
        for fut, msg in list(self._pending.values()):
            if not fut.done():
                await self._sock.send_multipart(self._sender.encode(msg))

    async def _read_loop(self) -> None:
        assert self._sock is not None
        while True:
            for frame in await self._sock.recv_multipart():
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
                self._session_ok = False
                if self._welcome is not None and not self._welcome.done():
                    return  # an answer to a request sent before our hello; wait on
                asyncio.get_running_loop().create_task(self._rehello())
                return
            if self._welcome is not None and not self._welcome.done():
                self._welcome.set_result(msg)
            return
        rid = getattr(msg, "request_id", None)
        entry = self._pending.get(rid) if rid is not None else None
        if entry is not None and not entry[0].done():
            entry[0].set_result(msg)

    async def _rehello(self) -> None:
        try:
            await self.connect()
        except Exception as exc:  # the requests' own retries report it
            log.debug("hello again failed: %s", exc)

    async def close(self) -> None:
        self._closed = True
        if self._reader is not None:
            self._reader.cancel()
            await asyncio.gather(self._reader, return_exceptions=True)
            self._reader = None
        for fut, _ in self._pending.values():
            if not fut.done():
                fut.cancel()
        self._pending.clear()
        if self._sock is not None:
            self._sock.close(0)
            self._sock = None
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
        """Send ``make(request_id)`` and return the reply; resend after ``try_timeout`` until
        ``timeout`` (None: forever). CoordinatorUnavailableError when it never answers."""
        deadline = None if timeout is None else time.monotonic() + timeout
        rid = self.new_request_id()
        msg = make(rid)
        if isinstance(msg, m.FetchResults):
            # The coordinator holds a fetch up to its wait_ms: a try must outlast that, or it
            # is sent again (and the session taken for lost) while its answer is still due.
            try_timeout = max(try_timeout, msg.wait_ms / 1000 + TRY_TIMEOUT_S)
        loop = asyncio.get_running_loop()
        last_error: BaseException | None = None
        try:
            while True:
                left = None if deadline is None else deadline - time.monotonic()
                if left is not None and left <= 0:
                    raise CoordinatorUnavailableError(
                        f"the coordinator at {self.host}:{self.port} did not answer "
                        f"{msg.OP} within {timeout:g} s"
                        + (f" ({last_error})" if last_error else ""))
                try:
                    if not self._session_ok or self._sock is None:
                        await self.connect()  # (a live session skips the lock)
                except (CoordinatorUnavailableError, OSError) as exc:
                    last_error = exc
                    await asyncio.sleep(min(0.5, left) if left is not None else 0.5)
                    continue
                fut: asyncio.Future[m.Message] = loop.create_future()
                self._pending[rid] = (fut, msg)
                assert self._sock is not None
                await self._sock.send_multipart(self._sender.encode(msg))
                wait = try_timeout if left is None else min(try_timeout, left)
                try:
                    return await asyncio.wait_for(fut, wait)
                except TimeoutError:
                    # Maybe the coordinator restarted and lost the session: hello again.
                    self._session_ok = False
                    last_error = None
        finally:
            self._pending.pop(rid, None)


async def iter_result_batches(client_request: Any, job_id: str, *, timeout: float | None,
                              until_done: bool = False, wait_ms: int | None = None
                              ) -> AsyncIterator[m.ResultBatch]:
    """ResultBatch messages of a job in morsel order until the last one (used by the API).
    ``until_done``: the first answer waits for the whole job (fewer round trips when the
    caller wants everything anyway); otherwise batches come as morsels finish."""
    if wait_ms is None:
        wait_ms = 10_000 if until_done else 2000
    start = 0
    deadline = None if timeout is None else time.monotonic() + timeout
    while True:
        left = None if deadline is None else deadline - time.monotonic()
        if left is not None and left <= 0:
            raise TimeoutError(job_id)
        wait = wait_ms if left is None else max(0, min(wait_ms, int(left * 1000)))
        reply = await client_request(
            lambda rid, s=start, w=wait: m.FetchResults(rid, job_id, s, 16 << 20, w, until_done),
            wait / 1000 + TRY_TIMEOUT_S)
        assert isinstance(reply, m.ResultBatch)
        yield reply
        start += len(reply.morsels)
        if reply.status in (JobState.FAILED, JobState.CANCELLED):
            return
        if start >= reply.total_morsels and reply.status == JobState.COMPLETED:
            return


__all__ = ["TRY_TIMEOUT_S", "ClusterClient", "iter_result_batches"]
