"""The channels of a distributed job's exchange: Arrow batches between instances over ZeroMQ.

Each instance binds one ROUTER (CURVE, the cluster's keys) that every other instance's DEALER
connects to; a DEALER's identity is its instance number. What an instance sends to another goes
through one first-in-first-out queue per (exchange, destination): batches (Arrow IPC, the event
times as one more column), watermarks and idleness, in the order the job made them.

Backpressure is by credits, per (exchange, destination): a sender may have ``CREDITS`` batches
on their way that the receiver's job has not yet taken; the receiver gives one back for each
batch its job has pushed through. Watermarks and idleness need no credit but wait behind the
batches before them. A job whose queues hold more than ``BACKLOG`` items stops reading its
sources (:meth:`wait_writable`) until they drain; it keeps taking what others send it, so two
instances waiting on each other's credits cannot stall.

A sender's final watermark is its end of stream; the receiver acknowledges it, and an instance
closes its sockets only once every other instance acknowledged its end (:meth:`drain`).
Rows an instance sends to itself skip the sockets.
"""

from __future__ import annotations

import asyncio
import collections
import logging
import struct
from collections.abc import Callable
from typing import Any

import numpy as np
import pyarrow as pa
import zmq

from ..cluster import transport
from ..cluster.loop_socket import LoopSocket
from ..cluster.security import ClusterKeys
from .chunk import TIME_COLUMN, Chunk
from .durations import MAX_TIME

log = logging.getLogger(__name__)

CREDITS = 8
BACKLOG = 64

_HEAD = struct.Struct("<BHHq")  # kind, exchange, sender instance, value
BATCH, WATERMARK, IDLE, CREDIT, END_ACK, BARRIER = 1, 2, 3, 4, 5, 6

#: deliver(exchange, sender, kind ("batch", "watermark", "idle", "barrier"), payload)
Deliver = Callable[[int, int, str, Any], None]


def encode_chunk(chunk: Chunk) -> bytes:
    batch = chunk.batch.append_column(TIME_COLUMN, pa.array(chunk.ts, pa.int64()))
    sink = pa.BufferOutputStream()
    with pa.ipc.new_stream(sink, batch.schema) as w:
        w.write_batch(batch)
    return sink.getvalue()


def decode_chunk(data: bytes | memoryview) -> Chunk:
    batch = pa.ipc.open_stream(pa.py_buffer(data)).read_next_batch()
    i = batch.schema.get_field_index(TIME_COLUMN)
    ts = np.asarray(batch.column(i).to_numpy(zero_copy_only=False), dtype=np.int64)
    return Chunk(batch.remove_column(i), ts)


class ExchangeChannels:
    """One instance's end of every exchange of its job."""

    def __init__(self, instance: int, instances: int, key_groups: int, keys: ClusterKeys,
                 host: str) -> None:
        self.instance = instance
        self.instances = instances
        self.key_groups = key_groups
        self._keys = keys
        self._ctx = zmq.Context()
        self._auth = transport.start_authenticator(self._ctx, keys)
        self._router_sock, port = transport.server_socket(self._ctx, keys, host, 0)
        self.endpoint = transport.zmq_endpoint(host, port)
        self._router: LoopSocket | None = None
        #: Every instance's endpoint, by instance number (set before :meth:`start`).
        self.peers: list[str] = []
        self._dealers: dict[int, LoopSocket] = {}
        self._fifo: dict[tuple[int, int], collections.deque[tuple[bool, list[bytes]]]] = {}
        self._credits: dict[tuple[int, int], int] = {}
        self._exchanges: set[int] = set()
        self._acked: set[tuple[int, int]] = set()
        self._deliver: Deliver | None = None
        self._changed: asyncio.Event | None = None
        self.queued = 0
        self.bytes_sent = 0
        self.batches_sent = 0
        self.blocked_s = 0.0
        self.failure: BaseException | None = None

    # -- setup ----------------------------------------------------------------------------------
    def start(self, deliver: Deliver) -> None:
        """Connect to the other instances' endpoints (``peers[i]`` is instance i's, set
        before) and read what they send on the running loop."""
        peers = self.peers
        if len(peers) != self.instances:
            raise RuntimeError(f"exchange: {len(peers)} peer endpoints for {self.instances} "
                               "instances")
        loop = asyncio.get_running_loop()
        self._deliver = deliver
        self._changed = asyncio.Event()
        self._router = LoopSocket(self._router_sock, loop, self._on_router)
        for i, ep in enumerate(peers):
            if i == self.instance:
                continue
            sock = self._dealer(ep)
            self._dealers[i] = LoopSocket(sock, loop, lambda f, i=i: self._on_dealer(i, f))

    def _dealer(self, endpoint: str) -> zmq.Socket:
        sock = self._ctx.socket(zmq.DEALER)
        sock.setsockopt(zmq.IDENTITY, str(self.instance).encode())
        sock.curve_serverkey = self._keys.server_public
        sock.curve_publickey = self._keys.client_public
        sock.curve_secretkey = self._keys.client_secret
        sock.setsockopt(zmq.LINGER, 0)
        sock.setsockopt(zmq.SNDHWM, 0)
        sock.setsockopt(zmq.RCVHWM, 0)
        sock.setsockopt(zmq.MAXMSGSIZE, -1)
        sock.setsockopt(zmq.RECONNECT_IVL, 100)
        sock.setsockopt(zmq.RECONNECT_IVL_MAX, 1000)
        sock.connect(endpoint)
        return sock

    def register(self, exchange: int) -> None:
        self._exchanges.add(exchange)

    # -- sending --------------------------------------------------------------------------------
    def send_batch(self, exchange: int, dest: int, chunk: Chunk) -> None:
        if dest == self.instance:
            assert self._deliver is not None
            self._deliver(exchange, dest, "batch", chunk)
            return
        self._enqueue(exchange, dest, True, encode_chunk(chunk), 0)

    def _to_all(self, exchange: int, kind: str, value: Any, code: int) -> None:
        """A control item (no credit needed) to every instance, after what went before."""
        for dest in range(self.instances):
            if dest == self.instance:
                assert self._deliver is not None
                self._deliver(exchange, dest, kind, value)
            else:
                self._enqueue(exchange, dest, False, None, int(value), code)

    def send_watermark(self, exchange: int, watermark: int) -> None:
        self._to_all(exchange, "watermark", watermark, WATERMARK)

    def send_idle(self, exchange: int, idle: bool) -> None:
        self._to_all(exchange, "idle", idle, IDLE)

    def send_barrier(self, exchange: int, epoch: int) -> None:
        """Checkpoint ``epoch``'s barrier, after everything sent before it, to every instance."""
        self._to_all(exchange, "barrier", epoch, BARRIER)

    def _enqueue(self, exchange: int, dest: int, is_batch: bool, payload: bytes | None,
                 value: int, kind: int = BATCH) -> None:
        head = _HEAD.pack(kind, exchange, self.instance, value)
        frames = [head] if payload is None else [head, payload]
        key = (exchange, dest)
        q = self._fifo.get(key)
        if q is None:
            q = self._fifo[key] = collections.deque()
            self._credits.setdefault(key, CREDITS)
        q.append((is_batch, frames))
        self.queued += 1
        self._flush(key)

    def _flush(self, key: tuple[int, int]) -> None:
        q = self._fifo.get(key)
        sock = self._dealers.get(key[1])
        if not q or sock is None:
            return
        while q:
            is_batch, frames = q[0]
            if is_batch and self._credits[key] <= 0:
                break
            if not sock.send_nowait(frames, copy=False):
                asyncio.get_running_loop().call_later(0.005, self._flush, key)
                break
            q.popleft()
            self.queued -= 1
            if is_batch:
                self._credits[key] -= 1
                self.batches_sent += 1
                self.bytes_sent += len(frames[1])
        self._notify()

    def _notify(self) -> None:
        if self._changed is not None:
            self._changed.set()

    async def wait_writable(self) -> None:
        """Until the queues are short enough to read on (a source waits here)."""
        if self.queued <= BACKLOG:
            return
        loop = asyncio.get_running_loop()
        t0 = loop.time()
        while self.queued > BACKLOG and self.failure is None:
            assert self._changed is not None
            self._changed.clear()
            await self._changed.wait()
        self.blocked_s += loop.time() - t0

    # -- receiving ------------------------------------------------------------------------------
    def _on_router(self, frames: list[bytes]) -> None:
        if len(frames) < 2 or len(frames[1]) != _HEAD.size:
            log.warning("exchange: a malformed message (%d frames) was dropped", len(frames))
            return
        ident, head = frames[0], frames[1]
        kind, exchange, sender, value = _HEAD.unpack(head)
        if ident != str(sender).encode() or not 0 <= sender < self.instances:
            log.warning("exchange: a message claiming instance %d came from %r", sender, ident)
            return
        assert self._deliver is not None
        if kind == BATCH and len(frames) == 3:
            self._deliver(exchange, sender, "batch", decode_chunk(frames[2]))
        elif kind == WATERMARK:
            self._deliver(exchange, sender, "watermark", value)
            if value >= MAX_TIME:
                self._reply(ident, END_ACK, exchange, 0)
        elif kind == IDLE:
            self._deliver(exchange, sender, "idle", bool(value))
        elif kind == BARRIER:
            self._deliver(exchange, sender, "barrier", value)

    def consumed(self, exchange: int, sender: int) -> None:
        """The job pushed a batch from ``sender`` through: give the sender its credit back."""
        if sender != self.instance:
            self._reply(str(sender).encode(), CREDIT, exchange, 1)

    def _reply(self, ident: bytes, kind: int, exchange: int, value: int) -> None:
        assert self._router is not None
        try:
            if not self._router.send_nowait([ident, _HEAD.pack(kind, exchange, self.instance,
                                                               value)]):
                asyncio.get_running_loop().call_later(0.005, self._reply, ident, kind,
                                                      exchange, value)
        except zmq.ZMQError as exc:  # the sender is gone: the job fails on its own
            log.debug("exchange: cannot answer instance %s: %s", ident.decode(), exc)

    def _on_dealer(self, dest: int, frames: list[bytes]) -> None:
        if len(frames) != 1 or len(frames[0]) != _HEAD.size:
            return
        kind, exchange, _sender, value = _HEAD.unpack(frames[0])
        key = (exchange, dest)
        if kind == CREDIT:
            self._credits[key] = self._credits.get(key, CREDITS) + value
            self._flush(key)
        elif kind == END_ACK:
            self._acked.add(key)
            self._notify()

    # -- the end --------------------------------------------------------------------------------
    def _all_acked(self) -> bool:
        return all((x, d) in self._acked for x in self._exchanges for d in range(self.instances)
                   if d != self.instance)

    async def drain(self, timeout: float) -> bool:
        """Until every queue is sent and every other instance acknowledged this one's end of
        each exchange; False after ``timeout`` seconds."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while self.queued or not self._all_acked():
            left = deadline - loop.time()
            if left <= 0:
                return False
            assert self._changed is not None
            self._changed.clear()
            try:
                await asyncio.wait_for(self._changed.wait(), min(left, 0.5))
            except TimeoutError:
                for key in list(self._fifo):
                    self._flush(key)
        return True

    def stats(self) -> dict[str, Any]:
        return {"batches_sent": self.batches_sent, "bytes_sent": self.bytes_sent,
                "queued": self.queued, "backpressure_s": round(self.blocked_s, 3)}

    def close(self) -> None:
        for s in self._dealers.values():
            s.close()
        if self._router is not None:
            self._router.close()
        else:
            self._router_sock.close(0)
        self._auth.stop()
        self._ctx.term()
