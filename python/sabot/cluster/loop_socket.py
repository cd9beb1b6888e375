"""A plain ZeroMQ socket read on an asyncio event loop, without pyzmq's per-call futures.

pyzmq's asyncio sockets make a future, a poller registration and a few loop callbacks for
every send and receive; on a small job that was a measurable part of the client's time (see
docs/performance.md). Here the socket's file descriptor is watched with ``loop.add_reader`` and
every message waiting is read in one go and handed to ``on_frames``; sends go out at once
(``NOBLOCK``).

ZeroMQ's descriptor is edge-triggered and tells only that the socket's events *may* have
changed: a read, or a send (which also processes incoming commands), can consume the edge
while a message waits. So reading goes on while ``EVENTS`` says POLLIN, and a read is also
scheduled after every send: no message is left waiting for an edge that already came.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Sequence
from typing import Any, cast

import zmq

log = logging.getLogger(__name__)

#: Messages read per wake-up before the loop gets a turn (the rest are read in the next one).
READ_BATCH = 256
#: Pause between tries of a send the socket cannot take now (a DEALER with no pipe yet).
SEND_RETRY_S = 0.005


class LoopSocket:
    """``sock`` read on ``loop``: each multipart message goes to ``on_frames``. Close with
    :meth:`close` (which also closes the socket)."""

    def __init__(self, sock: zmq.Socket, loop: asyncio.AbstractEventLoop,
                 on_frames: Callable[[list[bytes]], None]) -> None:
        self.sock = sock
        self._on_frames = on_frames
        self._fd = cast(int, sock.getsockopt(zmq.FD))
        self._closed = False
        self._watch(loop)

    def _watch(self, loop: asyncio.AbstractEventLoop) -> None:
        self._loop = loop
        self._read_scheduled = False
        loop.add_reader(self._fd, self._read)
        # Messages may have come before the descriptor was watched.
        self._schedule_read()

    def _schedule_read(self) -> None:
        if not self._read_scheduled and not self._closed:
            self._read_scheduled = True
            self._loop.call_soon(self._read)

    def _read(self) -> None:
        self._read_scheduled = False
        sock = self.sock
        for _ in range(READ_BATCH):
            if self._closed or not cast(int, sock.getsockopt(zmq.EVENTS)) & zmq.POLLIN:
                return
            try:
                frames = sock.recv_multipart(zmq.NOBLOCK)
            except zmq.Again:
                return
            try:
                self._on_frames(frames)
            except Exception:  # a bug in a handler must not stop the reading
                log.exception("a handler of %s failed", sock)
        self._schedule_read()  # more are waiting: after the loop's other work

    async def send(self, frames: Sequence[bytes]) -> None:
        """Send at once; if the socket cannot take it now, try again shortly (a DEALER
        without a connection yet), until it can or the socket is closed. Called from another
        event loop than before (a caller that runs each call in a new loop), the socket is
        read on that one from now on."""
        self.follow(asyncio.get_running_loop())
        while True:
            if self._closed:
                raise zmq.ZMQError(zmq.ENOTSOCK, "the socket is closed")
            try:
                self.sock.send_multipart(frames, zmq.NOBLOCK)
                break
            except zmq.Again:
                await asyncio.sleep(SEND_RETRY_S)
        self._schedule_read()

    def send_nowait(self, frames: Sequence[Any], copy: bool = True) -> bool:
        """Send at once if the socket can take it now (False if not: try again later); a
        read is scheduled after it, as after :meth:`send`."""
        if self._closed:
            raise zmq.ZMQError(zmq.ENOTSOCK, "the socket is closed")
        try:
            self.sock.send_multipart(frames, zmq.NOBLOCK, copy=copy)
        except zmq.Again:
            return False
        finally:
            self._schedule_read()
        return True

    def follow(self, loop: asyncio.AbstractEventLoop) -> None:
        """Be read on ``loop`` from now on (a no-op when it already is)."""
        if loop is not self._loop and not self._closed:
            self._unwatch()
            self._watch(loop)

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        self._unwatch()
        self.sock.close(0)

    def _unwatch(self) -> None:
        try:
            self._loop.remove_reader(self._fd)
        except (ValueError, OSError, RuntimeError):  # the loop is already closed
            pass


__all__ = ["LoopSocket"]
