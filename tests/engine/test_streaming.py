"""process_stream: order, sources, bounded read-ahead, cancellation."""

from __future__ import annotations

import asyncio
import itertools
import sys

import cloudpickle
import pyarrow as pa
import pytest
import sabot
from sabot.config import load_config
from sabot.engine import LocalEngine

cloudpickle.register_pickle_by_value(sys.modules[__name__])


def square(x):
    return x * x


@pytest.fixture
def engine():
    e = LocalEngine(load_config(env={}, max_workers=2))
    yield e
    e.close_sync()


async def collect(agen, limit=None):
    out = []
    async for r in agen:
        out.append(r)
        if limit is not None and len(out) >= limit:
            break
    return out


def test_sync_iterable_in_order(engine):
    out = asyncio.run(collect(engine.process_stream(iter(range(10_000)), square)))
    assert out == [x * x for x in range(10_000)]


def test_async_source_and_async_function(engine):
    async def source():
        for i in range(500):
            if i % 100 == 0:
                await asyncio.sleep(0)
            yield i

    async def plus_one(x):
        await asyncio.sleep(0)
        return x + 1

    out = asyncio.run(collect(engine.process_stream(source(), plus_one, morsel_rows=64)))
    assert out == list(range(1, 501))


def test_arrow_reader_source(engine):
    table = pa.table({"a": list(range(3000))})
    reader = pa.RecordBatchReader.from_batches(table.schema, table.to_batches(max_chunksize=700))
    out = asyncio.run(collect(engine.process_stream(reader, lambda r: r["a"] * 2)))
    assert out == [a * 2 for a in range(3000)]
    # batch functions over Arrow give one Arrow output per morsel
    reader = pa.RecordBatchReader.from_batches(table.schema, table.to_batches(max_chunksize=700))
    parts = asyncio.run(collect(engine.process_stream(
        reader, sabot.batch(lambda rb: rb.column("a")))))
    assert sum(len(p) for p in parts) == 3000
    assert [v for p in parts for v in p.to_pylist()] == list(range(3000))


def test_endless_source_is_read_only_a_bounded_amount_ahead(engine):
    pulled = 0

    def endless():
        nonlocal pulled
        for i in itertools.count():
            pulled += 1
            yield i

    rows, in_flight = 100, 3
    out = asyncio.run(collect(
        engine.process_stream(endless(), square, max_in_flight=in_flight, morsel_rows=rows),
        limit=5000))
    assert out == [x * x for x in range(5000)]
    # what was read = what was consumed + at most the in-flight morsels (and one being cut)
    assert pulled <= 5000 + (in_flight + 1) * rows
    assert engine.get_stats()["streams_active"] == 0


def test_consumer_stopping_closes_the_source(engine):
    closed = False

    def source():
        nonlocal closed
        try:
            yield from range(1_000_000)
        finally:
            closed = True

    async def main():
        agen = engine.process_stream(source(), square, morsel_rows=50)
        got = await collect(agen, limit=120)
        await agen.aclose()
        return got

    got = asyncio.run(main())
    assert got == [x * x for x in range(120)]
    assert closed
    assert engine.get_stats()["streams_active"] == 0


def test_cancelling_the_consumer_task_is_clean(engine):
    async def main():
        started = asyncio.Event()

        async def consume():
            async for _ in engine.process_stream(itertools.count(), square, morsel_rows=10):
                started.set()
                await asyncio.sleep(0.001)

        task = asyncio.ensure_future(consume())
        await started.wait()
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task

    asyncio.run(main())
    assert engine.get_stats()["streams_active"] == 0


def test_errors_in_a_stream_name_the_global_index(engine):
    def fails(x):
        if x == 777:
            raise ValueError("no 777")
        return x

    with pytest.raises(sabot.ProcessingError) as info:
        asyncio.run(collect(engine.process_stream(iter(range(2000)), fails, morsel_rows=100)))
    assert info.value.index == 777
    assert isinstance(info.value.original, ValueError)


def test_stream_on_process_pool_keeps_order():
    engine = LocalEngine(load_config(env={}, max_workers=2), executor="processes")
    try:
        def slowish(x):
            return sum(range(x % 50)) + x

        out = asyncio.run(collect(engine.process_stream(iter(range(6000)), slowish,
                                                        morsel_rows=500)))
        assert out == [slowish(x) for x in range(6000)]
        assert engine.get_stats()["controller"]["executor"] == "processes"
    finally:
        engine.close_sync()
