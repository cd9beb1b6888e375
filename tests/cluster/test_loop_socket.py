"""LoopSocket: a plain ZeroMQ socket read on an asyncio loop. ZeroMQ's descriptor is
edge-triggered, so a reader that stops at the first read, or that a send robs of its edge,
leaves messages waiting with nobody woken: these tests would hang (and time out) then."""

from __future__ import annotations

import asyncio
import threading

import pytest
import zmq
from sabot.cluster.loop_socket import LoopSocket


@pytest.fixture
def echo():
    """A ROUTER on another thread that answers every message with a burst of ``n`` copies
    (n = the message's first byte), so that replies pile up behind one another."""
    ctx = zmq.Context()
    router = ctx.socket(zmq.ROUTER)
    # no high-water mark: a ROUTER drops what a full pipe cannot take
    router.setsockopt(zmq.SNDHWM, 0)
    router.setsockopt(zmq.RCVHWM, 0)
    port = router.bind_to_random_port("tcp://127.0.0.1")
    stop = threading.Event()

    def serve() -> None:
        while not stop.is_set():
            if not router.poll(50):
                continue
            peer, body = router.recv_multipart()
            for _ in range(body[0]):
                router.send_multipart([peer, body])

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    yield ctx, f"tcp://127.0.0.1:{port}"
    stop.set()
    thread.join()
    router.close(0)
    ctx.term()


def _dealer(ctx: zmq.Context, endpoint: str) -> zmq.Socket:
    sock = ctx.socket(zmq.DEALER)
    sock.setsockopt(zmq.LINGER, 0)
    sock.setsockopt(zmq.SNDHWM, 0)  # as the cluster's sockets (transport.client_socket)
    sock.setsockopt(zmq.RCVHWM, 0)
    sock.connect(endpoint)
    return sock


def test_every_reply_arrives_however_the_edges_fall(echo) -> None:
    ctx, endpoint = echo

    total = sum(1 + i % 5 for i in range(2000))

    async def go() -> list[bytes]:
        got: list[bytes] = []
        enough = asyncio.Event()

        def on_frames(frames: list[bytes]) -> None:
            got.append(frames[0])
            if len(got) == total:
                enough.set()

        sock = LoopSocket(_dealer(ctx, endpoint), asyncio.get_running_loop(), on_frames)
        try:
            # Sends interleaved with bursts of replies: each send may take the edge of a
            # reply that came meanwhile.
            for i in range(2000):
                await sock.send([bytes([1 + i % 5]) + i.to_bytes(4, "big")])
                if i % 7 == 0:
                    await asyncio.sleep(0)
            try:
                await asyncio.wait_for(enough.wait(), 30)
            except TimeoutError:
                waiting = sock.sock.getsockopt(zmq.EVENTS) & zmq.POLLIN
                raise AssertionError(f"{len(got)} of {total} replies read; a message is "
                                     f"{'still waiting' if waiting else 'not waiting'}")
        finally:
            sock.close()
        return got

    got = asyncio.run(go())
    assert len(got) == total
    # in order, each message's copies together
    assert [int.from_bytes(b[1:], "big") for b in got] == [
        i for i in range(2000) for _ in range(1 + i % 5)]


def test_a_socket_follows_its_caller_to_a_new_event_loop(echo) -> None:
    """A caller that runs each call in a new loop (asyncio.run per call) keeps getting its
    replies: the socket is read on the loop of its latest send."""
    ctx, endpoint = echo
    replies: list[bytes] = []
    waiter: list[asyncio.Future[None]] = []

    def on_frames(frames: list[bytes]) -> None:
        replies.append(frames[0])
        if waiter and not waiter[0].done():
            waiter[0].set_result(None)

    holder: list[LoopSocket] = []

    async def call(n: int) -> None:
        loop = asyncio.get_running_loop()
        waiter[:] = [loop.create_future()]
        if not holder:
            holder.append(LoopSocket(_dealer(ctx, endpoint), loop, on_frames))
        await holder[0].send([bytes([1, n])])
        await asyncio.wait_for(waiter[0], 10)

    try:
        for n in range(5):
            asyncio.run(call(n))
    finally:
        if holder:
            holder[0].close()
    assert replies == [bytes([1, n]) for n in range(5)]


def test_a_closed_socket_refuses_sends() -> None:
    ctx = zmq.Context()

    async def go() -> None:
        sock = LoopSocket(_dealer(ctx, "tcp://127.0.0.1:9"), asyncio.get_running_loop(),
                          lambda frames: None)
        sock.close()
        sock.close()  # twice is fine
        with pytest.raises(zmq.ZMQError):
            await sock.send([b"x"])

    try:
        asyncio.run(go())
    finally:
        ctx.term()
