"""The exchange of a distributed job, on real ZeroMQ sockets in one process: credits bound what
is in flight, order holds per channel, a sender cannot pose as another; and key groups route
equal keys of differently typed columns alike."""

from __future__ import annotations

import asyncio
from typing import Any

import numpy as np
import pyarrow as pa
import pytest
from sabot.cluster.security import ClusterKeys
from sabot.stream.chunk import Chunk
from sabot.stream.durations import MAX_TIME
from sabot.stream.exchange_channels import CREDITS, ExchangeChannels
from sabot.stream.key_groups import groups_of, instance_of_groups, owners, owners_of_keys

KEYS = ClusterKeys.from_secret(b"k" * 32)


def _chunk(i: int) -> Chunk:
    return Chunk(pa.record_batch({"v": pa.array([i, i], pa.int64())}),
                 np.array([i, i], dtype=np.int64))


async def _until(cond: Any, timeout: float = 10.0) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while not cond():
        assert loop.time() < deadline, "timed out"
        await asyncio.sleep(0.01)


def _pair() -> tuple[ExchangeChannels, ExchangeChannels, list[tuple[Any, ...]]]:
    a = ExchangeChannels(0, 2, 128, KEYS, "127.0.0.1")
    b = ExchangeChannels(1, 2, 128, KEYS, "127.0.0.1")
    a.peers = b.peers = [a.endpoint, b.endpoint]
    got: list[tuple[Any, ...]] = []
    a.register(0)
    b.register(0)
    a.start(lambda *item: None)
    b.start(lambda *item: got.append(item))
    return a, b, got


def test_credits_bound_the_batches_in_flight_and_order_holds() -> None:
    async def run() -> None:
        a, b, got = _pair()
        try:
            for i in range(20):
                a.send_batch(0, 1, _chunk(i))
            a.send_watermark(0, 500)  # behind the batches, though it needs no credit
            await _until(lambda: len(got) >= CREDITS)
            await asyncio.sleep(0.2)
            # the receiver took none through: only CREDITS batches left the sender
            assert len(got) == CREDITS and a.batches_sent == CREDITS
            assert a.queued == 20 - CREDITS + 1
            for _ in range(5):
                b.consumed(0, 0)
            await _until(lambda: len(got) == CREDITS + 5)
            await asyncio.sleep(0.1)
            assert len(got) == CREDITS + 5
            for _ in range(20):
                b.consumed(0, 0)
            await _until(lambda: len(got) == 21)
            batches = [p for (_x, _s, kind, p) in got if kind == "batch"]
            assert [int(c.batch.column("v")[0].as_py()) for c in batches] == list(range(20))
            assert [list(c.ts) for c in batches][3] == [3, 3]  # event times travel too
            assert got[-1][2:] == ("watermark", 500)
            # the end: acknowledged, so the sender may close
            a.send_watermark(0, MAX_TIME)
            assert await a.drain(10)
        finally:
            a.close()
            b.close()

    asyncio.run(run())


def test_a_message_posing_as_another_instance_is_dropped() -> None:
    import struct

    import zmq

    async def run() -> None:
        a, b, got = _pair()
        ctx = zmq.Context()
        rogue = ctx.socket(zmq.DEALER)
        rogue.setsockopt(zmq.IDENTITY, b"1")
        rogue.curve_serverkey = KEYS.server_public
        rogue.curve_publickey = KEYS.client_public
        rogue.curve_secretkey = KEYS.client_secret
        rogue.connect(b.endpoint)
        try:
            # connected as instance 1: a watermark that says it is from instance 0 is dropped,
            # one that says it is its own is taken
            rogue.send_multipart([struct.pack("<BHHq", 2, 0, 0, 7)])
            rogue.send_multipart([struct.pack("<BHHq", 2, 0, 1, 9)])
            await _until(lambda: got)
            await asyncio.sleep(0.2)
            assert got == [(0, 1, "watermark", 9)]
        finally:
            rogue.close(0)
            ctx.term()
            a.close()
            b.close()

    asyncio.run(run())


@pytest.mark.parametrize(("left", "right"), [
    (pa.array([1, 2, 3, 2**40], pa.int64()), pa.array([1, 2, 3, 2**40], pa.int64())),
    (pa.array([1, 2, 3], pa.int32()), pa.array([1, 2, 3], pa.int64())),
    (pa.array(["a", "bb", "ccc"]), pa.array(["a", "bb", "ccc"], pa.large_string())),
    (pa.array([1000, 2000], pa.timestamp("ms")), pa.array([1_000_000, 2_000_000],
                                                           pa.timestamp("us"))),
    (pa.array(["x", "y"]).dictionary_encode(), pa.array(["x", "y"])),
])
def test_equal_keys_of_differently_typed_columns_have_one_owner(left: pa.Array,
                                                                right: pa.Array) -> None:
    for n in (2, 3, 7):
        assert list(owners(pa.record_batch({"k": left}), ["k"], 128, n)) == \
            list(owners(pa.record_batch({"k": right}), ["k"], 128, n))
    # Python values of those keys (as keyed state holds them) hash alike
    assert list(owners_of_keys([(v,) for v in right.to_pylist()], 1, 128, 3)) == \
        list(owners(pa.record_batch({"k": right}), ["k"], 128, 3))


def test_key_groups_are_cut_into_one_contiguous_range_per_instance() -> None:
    for groups in (1, 7, 128):
        for n in (1, 2, 3, 5):
            owner = instance_of_groups(np.arange(groups), groups, n)
            assert sorted(g for i in range(n) for g in groups_of(i, n, groups)) == \
                list(range(groups))
            for i in range(n):
                assert all(owner[g] == i for g in groups_of(i, n, groups))
    keys = pa.record_batch({"k": pa.array(range(10_000), pa.int64())})
    counts = np.bincount(owners(keys, ["k"], 128, 4), minlength=4)
    assert counts.min() > 2000  # the hash spreads the keys
