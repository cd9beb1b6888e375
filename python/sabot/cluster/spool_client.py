"""A peer's side of the data port: spool files put and got over ZeroMQ (CURVE, the cluster keys).

Blocking calls, meant for a thread (a client's put of a submit's inputs, a worker's get of a
morsel's input and put of its result). Each thread takes a socket of its own from a small pool
for the call, so a few transfers run at once. A request unanswered within ``timeout_s`` (the
connection was cut, the coordinator restarted) is sent again on a new connection, up to
``tries`` times, then :class:`SpoolTransferError`: a put sent again writes the same bytes at the
same offset, a get reads them again, so nothing is done twice. What comes is checked against
the size and CRC-32 its reference names before anyone uses it.
"""

from __future__ import annotations

import logging
import secrets
import threading
from collections.abc import Sequence
from typing import Any

import zmq

from ..crc import crc32
from . import transport
from .protocol import data_port as dp
from .security import ClusterKeys

log = logging.getLogger(__name__)

#: The name a reachability probe asks for (any answer, "missing" too, shows the port answers).
_PROBE = "spool/j-probe/0.00000000.in"


class SpoolTransferError(ConnectionError):
    """A spool file could not be put or got through the data port; ``code`` (a data port
    refusal's, or ``io`` for no answer) and the message say why."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code


class SpoolClient:
    """Transfers to and from one coordinator's data port (``endpoint``)."""

    def __init__(self, ctx: zmq.Context, keys: ClusterKeys, endpoint: str, *,
                 timeout_s: float = 30.0, tries: int = 3) -> None:
        self.endpoint = endpoint
        self.timeout_s = timeout_s
        self.tries = tries
        self._ctx = ctx
        self._keys = keys
        self._idle: list[zmq.Socket] = []
        self._lock = threading.Lock()
        self._closed = False
        #: Bytes of file data sent and received (what crossed the data port for this peer).
        self.bytes_sent = 0
        self.bytes_received = 0

    # -- the three operations ------------------------------------------------------------
    def size_of(self, name: str) -> int | None:
        """The size of ``name`` under the coordinator's data dir; None when it is not there."""
        try:
            meta, _ = self._call(dp.request(b"stat", name, {}))
        except SpoolTransferError as exc:
            if exc.code == dp.MISSING:
                return None
            raise
        return int(meta["size"])

    def put(self, name: str, parts: Sequence[bytes | memoryview], size: int, crc: int) -> None:
        """Write the bytes ``parts`` make (``size`` of them, CRC-32 ``crc``) as ``name``: in
        requests of at most CHUNK_BYTES, taking the name only once all came whole."""
        upload = secrets.token_hex(8)
        offset = 0
        batch: list[memoryview] = []
        batch_bytes = 0
        for part in parts:
            view = memoryview(part).cast("B")
            while len(view):
                take = view[:dp.CHUNK_BYTES - batch_bytes]
                view = view[len(take):]
                batch.append(take)
                batch_bytes += len(take)
                if batch_bytes == dp.CHUNK_BYTES and (len(view) or offset + batch_bytes < size):
                    self._call(dp.request(b"put", name, {"upload": upload, "offset": offset},
                                          *batch))
                    offset += batch_bytes
                    self.bytes_sent += batch_bytes
                    batch, batch_bytes = [], 0
        self._call(dp.request(b"put", name, {"upload": upload, "offset": offset, "last": True,
                                             "size": size, "crc": crc}, *batch))
        self.bytes_sent += batch_bytes

    def get(self, name: str, size: int, crc: int) -> bytearray:
        """The ``size`` bytes of ``name``, checked against CRC-32 ``crc``."""
        out = bytearray(size)
        view = memoryview(out)
        offset = 0
        while offset < size:
            meta, data = self._call(dp.request(
                b"get", name, {"offset": offset, "length": min(dp.CHUNK_BYTES, size - offset)}))
            chunk = data[0].buffer if data else memoryview(b"")
            if int(meta.get("size", -1)) != size or not len(chunk):
                raise SpoolTransferError(dp.DAMAGED, f"{name} on the coordinator holds "
                                         f"{meta.get('size')} bytes, its reference says {size}")
            view[offset:offset + len(chunk)] = chunk
            offset += len(chunk)
        self.bytes_received += size
        if crc32(out) != crc:
            raise SpoolTransferError(dp.DAMAGED, f"{name} is damaged: its bytes on the "
                                     "coordinator do not have the CRC-32 its reference names")
        return out

    def reachable(self, timeout_s: float = 2.0) -> bool:
        """Whether the data port answers (a stat of a name no job has: a refusal that it is
        missing is an answer), within ``timeout_s``."""
        probe = SpoolClient(self._ctx, self._keys, self.endpoint, timeout_s=timeout_s, tries=1)
        try:
            probe.size_of(_PROBE)
        except SpoolTransferError:
            return False
        finally:
            probe.close()
        return True

    def close(self) -> None:
        with self._lock:
            self._closed = True
            idle, self._idle = self._idle, []
        for sock in idle:
            sock.close(0)

    # -- requests ------------------------------------------------------------------------
    def _call(self, frames: list[Any]) -> tuple[dict[str, Any], list[zmq.Frame]]:
        last = ""
        for _ in range(max(1, self.tries)):
            sock = self._take()
            try:
                sock.send_multipart(frames, copy=False)
                if sock.poll(int(self.timeout_s * 1000)):
                    reply = sock.recv_multipart(copy=False)
                else:
                    # (no answer: this socket may still get the late one, so it goes)
                    sock.close(0)
                    sock = None
                    last = f"no answer from the data port at {self.endpoint} within " \
                           f"{self.timeout_s:g} s"
                    continue
            except zmq.ZMQError as exc:
                sock.close(0)
                sock = None
                last = f"the data port at {self.endpoint}: {exc}"
                continue
            finally:
                if sock is not None:
                    self._give_back(sock)
            try:
                return dp.parse_reply(reply)
            except dp.DataPortError as exc:
                raise SpoolTransferError(exc.code, f"the data port at {self.endpoint} "
                                         f"refused it: {exc}") from None
        raise SpoolTransferError(dp.IO, last + f" ({self.tries} tries)")

    def _take(self) -> zmq.Socket:
        with self._lock:
            if self._closed:
                raise SpoolTransferError(dp.IO, "this spool client is closed")
            if self._idle:
                return self._idle.pop()
        return transport.client_socket(self._ctx, self._keys, self.endpoint)

    def _give_back(self, sock: zmq.Socket) -> None:
        with self._lock:
            if not self._closed and len(self._idle) < 8:
                self._idle.append(sock)
                return
        sock.close(0)


def open_data_port(ctx: zmq.Context, keys: ClusterKeys, host: str, info: dict[str, Any], *,
                   timeout_s: float) -> SpoolClient | None:
    """(Blocking) a client of the data port ``GET /cluster`` (``info``) names on ``host``, when
    it answers a probe; None when there is none or it does not answer (logged: big data then
    goes over the ZeroMQ port)."""
    port = info.get("data_port")
    if not isinstance(port, int) or isinstance(port, bool) or not 0 < port < 65536:
        return None
    client = SpoolClient(ctx, keys, transport.zmq_endpoint(host, port), timeout_s=timeout_s)
    if client.reachable():
        return client
    client.close()
    log.warning("the coordinator's data port %s does not answer: big inputs and results go "
                "over its ZeroMQ port", client.endpoint)
    return None


__all__ = ["SpoolClient", "SpoolTransferError", "open_data_port"]
