"""LocalEngine.process: every data kind and function kind, order, output types, errors."""

from __future__ import annotations

import asyncio
import sys
import time

import cloudpickle
import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pytest
import sabot
import sabot_test_nodes as nodes
from sabot.config import load_config
from sabot.engine import LocalEngine
from sabot.errors import ProcessingError, UnknownProcessorError

# Functions below travel to worker processes by value: pytest's importlib mode gives this
# module a name a fresh interpreter cannot import.
cloudpickle.register_pickle_by_value(sys.modules[__name__])


def square(x):
    return x * x


def run(coro):
    return asyncio.run(coro)


def make_engine(**kw) -> LocalEngine:
    return LocalEngine(load_config(env={}, max_workers=2), **kw)


@pytest.fixture
def engine():
    e = make_engine()
    yield e
    e.close_sync()


DATA_KINDS = {
    "list": lambda n: list(range(n)),
    "tuple": lambda n: tuple(range(n)),
    "range": lambda n: range(n),
    "generator": lambda n: (i for i in range(n)),
    "numpy": lambda n: np.arange(n, dtype=np.int64),
    "arrow-array": lambda n: pa.array(range(n), type=pa.int64()),
    "arrow-chunked": lambda n: pa.chunked_array([pa.array(range(n // 2), pa.int64()),
                                                  pa.array(range(n // 2, n), pa.int64())]),
}


@pytest.mark.parametrize("kind", sorted(DATA_KINDS))
@pytest.mark.parametrize("n", [0, 1, 7, 5000])
def test_per_item_function_over_every_sequence_kind(engine, kind, n):
    out = run(engine.process(DATA_KINDS[kind](n), square))
    expected = [i * i for i in range(n)]
    if kind == "numpy":
        assert isinstance(out, np.ndarray)
        assert out.tolist() == expected
    elif kind == "arrow-array":
        assert isinstance(out, pa.Array)
        assert out.to_pylist() == expected
    elif kind == "arrow-chunked":
        assert isinstance(out, pa.ChunkedArray)
        assert out.to_pylist() == expected
        assert [len(c) for c in out.chunks] == [n // 2, n - n // 2]
    else:
        assert out == expected


def test_tabular_inputs_give_rows_as_dicts_and_arrow_back(engine):
    table = pa.table({"a": [1, 2, 3], "b": ["x", "y", "z"]})
    out = run(engine.process(table, lambda r: {"a2": r["a"] * 2, "b": r["b"].upper()}))
    assert isinstance(out, pa.Table)
    assert out.to_pylist() == [{"a2": 2, "b": "X"}, {"a2": 4, "b": "Y"}, {"a2": 6, "b": "Z"}]
    batch = table.to_batches()[0]
    out = run(engine.process(batch, lambda r: r["a"] + 1))
    assert isinstance(out, pa.Array) and out.to_pylist() == [2, 3, 4]
    reader = pa.RecordBatchReader.from_batches(table.schema, table.to_batches())
    out = run(engine.process(reader, lambda r: r["b"]))
    assert isinstance(out, pa.ChunkedArray) and out.to_pylist() == ["x", "y", "z"]


def test_lambdas_closures_and_named_processors(engine):
    k = 3
    assert run(engine.process([1, 2], lambda x: x * k)) == [3, 6]
    for name, expected in [("square", [1, 4, 9]), ("double", [2, 4, 6]), ("negate", [-1, -2, -3]),
                           ("identity", [1, 2, 3])]:
        assert run(engine.process([1, 2, 3], name)) == expected
    assert run(engine.process(["ab", "c"], "len")) == [2, 1]
    with pytest.raises(UnknownProcessorError, match="registered processors: .*square"):
        run(engine.process([1], "no-such-processor"))


def test_async_def_function_runs_with_bounded_concurrency(engine):
    active = 0
    peak = 0

    async def slow_double(x):
        nonlocal active, peak
        active += 1
        peak = max(peak, active)
        await asyncio.sleep(0.001)
        active -= 1
        return x * 2

    out = run(engine.process(list(range(600)), slow_double))
    assert out == [x * 2 for x in range(600)]
    from sabot.engine.local_engine import ASYNC_CONCURRENCY

    assert 1 < peak <= ASYNC_CONCURRENCY


def test_batch_functions_get_morsels_of_the_input_kind(engine):
    seen = []

    def numpy_batch(a):
        seen.append(type(a))
        return np.sqrt(a)

    data = np.arange(100_000, dtype=np.float64)
    out = run(engine.process(data, sabot.batch(numpy_batch)))
    assert isinstance(out, np.ndarray) and np.allclose(out, np.sqrt(data))
    assert set(seen) == {np.ndarray} and len(seen) > 1  # several morsels (64 KB each)

    out = run(engine.process(list(range(10)), sabot.batch(lambda xs: [x + 1 for x in xs])))
    assert out == list(range(1, 11))

    table = pa.table({"v": list(range(1000))})
    out = run(engine.process(table, sabot.batch(lambda rb: pc.multiply(rb.column("v"), 2))))
    assert out.to_pylist() == [v * 2 for v in range(1000)]


def test_batch_function_returning_wrong_length_is_an_error(engine):
    with pytest.raises(ProcessingError, match="returned 1 .* one result per item"):
        run(engine.process(list(range(10)), sabot.batch(lambda xs: [0])))


def test_arrow_expression_runs_natively(engine):
    table = pa.table({"a": [1, 2, 3], "b": [10, 20, 30]})
    out = run(engine.process(table, pc.field("a") + pc.field("b")))
    assert out.to_pylist() == [11, 22, 33]


def test_bad_inputs_say_what_is_accepted(engine):
    with pytest.raises(TypeError, match="accepted: list, tuple, range"):
        run(engine.process(42, square))
    with pytest.raises(TypeError, match="func must be a callable"):
        run(engine.process([1], 42))
    with pytest.raises(ValueError, match="executor='gpu' is invalid"):
        make_engine(executor="gpu")


def test_failure_names_the_item_and_keeps_the_original(engine):
    def inverse(x):
        return 1 / (x - 1234)

    with pytest.raises(ProcessingError) as info:
        run(engine.process(list(range(5000)), inverse))
    err = info.value
    assert err.index == 1234
    assert isinstance(err.original, ZeroDivisionError)
    assert "inverse" in err.remote_traceback and "ZeroDivisionError" in err.remote_traceback
    assert "item 1234" in str(err)
    # the engine keeps working and counted the error
    assert run(engine.process([1, 2], square)) == [1, 4]
    assert engine.get_stats()["errors"] == 1


def test_stop_iteration_in_user_code_is_not_a_silent_end(engine):
    def stops(x):
        if x == 3:
            raise StopIteration
        return x

    with pytest.raises(ProcessingError) as info:
        run(engine.process(list(range(10)), stops))
    assert info.value.index == 3


def test_results_arrive_in_order_from_processes():
    engine = make_engine(executor="processes")
    try:
        data = list(range(20_000))
        out = run(engine.process(data, lambda x: (x * 7) % 1000))
        assert out == [(x * 7) % 1000 for x in data]
        ctl = engine.get_stats()["controller"]
        assert ctl["executor"] == "processes"
        assert len(ctl["pool_pids"]) >= 1
    finally:
        engine.close_sync()


def test_error_in_worker_process_carries_index_and_traceback_and_pool_survives():
    engine = make_engine(executor="processes")
    try:
        def fails_at(x):
            if x == 15_000:
                raise KeyError(f"bad item {x}")
            return x

        with pytest.raises(ProcessingError) as info:
            run(engine.process(list(range(20_000)), fails_at))
        err = info.value
        assert err.index == 15_000
        assert isinstance(err.original, KeyError)
        assert "fails_at" in err.remote_traceback
        pids = engine.get_stats()["controller"]["pool_pids"]
        out = run(engine.process(list(range(20_000)), square))
        assert out == [x * x for x in range(20_000)]
        assert engine.get_stats()["controller"]["pool_pids"] == pids  # same workers
    finally:
        engine.close_sync()


@pytest.mark.parametrize("how", ["exit", "segfault"])
def test_worker_that_dies_fails_the_call_clearly_then_the_pool_recovers(how):
    engine = LocalEngine(load_config(env={}, max_workers=2, max_attempts=2),
                         executor="processes")
    try:
        def dies(x):
            if x == 12_345:
                if how == "exit":
                    import os

                    os._exit(7)
                import ctypes

                ctypes.string_at(0)  # SIGSEGV in "user code"
            return x

        t = time.monotonic()
        with pytest.raises(sabot.WorkerLostError) as info:
            run(engine.process(list(range(20_000)), dies))
        assert time.monotonic() - t < 60
        text = str(info.value)
        assert "died" in text and "gave up after 2 attempt(s)" in text
        assert ("exit code 7" in text) if how == "exit" else ("SIGSEGV" in text)
        assert engine.get_stats()["controller"]["workers_lost"] == 2
        assert run(engine.process(list(range(20_000)), square))[-1] == 19_999 ** 2
    finally:
        engine.close_sync()


def test_unpicklable_function_falls_back_to_inline():
    import threading

    lock = threading.Lock()
    engine = make_engine(executor="processes")
    try:
        def uses_lock(x):
            with lock:
                return x + 1

        assert run(engine.process(list(range(5000)), uses_lock)) == list(range(1, 5001))
        assert engine.get_stats()["controller"]["executor"] == "inline"
    finally:
        engine.close_sync()


def test_stats_shape(engine):
    run(engine.process(list(range(100)), square))
    stats = engine.get_stats()
    assert stats["items_processed"] == 100 and stats["calls"] == 1
    assert stats["morsels_processed"] >= 1
    assert isinstance(stats["cython_optimization"], bool)
    for key in ("executor", "workers", "utilization", "per_item_cost_s", "reason"):
        assert key in stats["controller"]
    assert stats["controller"]["executor"] == "inline"
    res = stats["system_resources"]
    assert res["cpu_count"] >= 1 and res["memory_total_bytes"] > 0 and len(res["load_average"]) == 3


def test_closed_engine_refuses_work():
    e = make_engine()
    e.close_sync()
    with pytest.raises(RuntimeError, match="closed"):
        run(e.process([1], square))


def test_numpy_morsels_travel_as_arrays_to_worker_processes():
    engine = make_engine(executor="processes")
    try:
        arr = np.arange(50_000, dtype=np.int64)
        out = run(engine.process(arr, square))
        assert isinstance(out, np.ndarray) and out.dtype == np.int64
        assert np.array_equal(out, arr * arr)
        assert engine.get_stats()["controller"]["executor"] == "processes"
        floats = np.linspace(0, 1, 30_000)
        out = run(engine.process(floats, lambda x: x > 0.5))
        assert out.dtype == np.bool_ and int(out.sum()) == int((floats > 0.5).sum())

        def bad(x):
            if x == 45_678:
                raise ArithmeticError("bad")
            return x

        with pytest.raises(ProcessingError) as info:
            run(engine.process(arr, bad))
        assert info.value.index == 45_678
    finally:
        engine.close_sync()


def assert_fails_at(engine: LocalEngine, data, index: int, executor: str) -> None:
    """A function failing on item ``index`` fails the call with that index."""
    def bad(x):
        value = x["a"] if isinstance(x, dict) else x
        if value == index:
            raise ArithmeticError("bad")
        return 1

    with pytest.raises(ProcessingError) as info:
        run(engine.process(data, bad))
    assert info.value.index == index
    assert engine.get_stats()["controller"]["executor"] == executor


def test_numpy_inline_in_pieces_matches_one_conversion_of_all_results():
    """Inline numpy runs convert and join cache-sized pieces; the output must equal converting
    every result at once: dtype promoted across pieces, ragged results as objects, and a failure
    names the item's index in the whole input."""
    engine = make_engine(executor="inline")
    try:
        arr = np.arange(200_000, dtype=np.int64)  # several pieces of 65536

        def late_float(x):
            return x / 2 if x >= 150_000 else x

        out = run(engine.process(arr, late_float))
        expected = np.array([late_float(x) for x in arr.tolist()])
        assert out.dtype == expected.dtype == np.float64
        assert np.array_equal(out, expected)

        for late in (lambda x: x > 10 if x >= 150_000 else x,          # bools after ints
                     lambda x: 2 ** 70 if x == 199_998 else x,         # beyond int64
                     lambda x: None if x == 180_000 else x):           # a None
            out = run(engine.process(arr, late))
            expected = np.array([late(x) for x in arr.tolist()])
            assert out.dtype == expected.dtype
            assert out.tolist() == expected.tolist()
        out = run(engine.process(arr, square))
        out[0] = -1  # the output is an ordinary, writable array
        assert out.dtype == np.int64 and out[1] == 1

        def late_ragged(x):
            return (x, x) if x == 199_999 else (x,)

        out = run(engine.process(arr, late_ragged))
        assert out.dtype == object and out[0] == (0,) and out[-1] == (199_999, 199_999)

        assert_fails_at(engine, arr, 170_001, "inline")
    finally:
        engine.close_sync()


def test_arrow_inline_in_pieces_matches_one_conversion_of_all_results():
    engine = make_engine(executor="inline")
    try:
        n = 150_000  # three pieces
        table = pa.table({"a": pa.array(range(n)), "s": pa.array([str(i % 7) for i in range(n)])})

        def late_float(row):
            return row["a"] / 2 if row["a"] >= 140_000 else row["a"]

        out = run(engine.process(table, late_float))
        expected = pa.array([late_float(r) for r in table.to_pylist()])
        assert isinstance(out, pa.ChunkedArray) and out.type == expected.type == pa.float64()
        assert out.to_pylist() == expected.to_pylist()

        out = run(engine.process(table, lambda row: {"k": row["s"], "v": row["a"] * 2}))
        assert isinstance(out, pa.Table) and out.num_rows == n
        assert out.slice(n - 1).to_pylist() == [{"k": str((n - 1) % 7), "v": (n - 1) * 2}]

        chunked = pa.chunked_array([pa.array(range(0, 70_000)), pa.array(range(70_000, n))])
        out = run(engine.process(chunked, lambda x: x + 1))
        assert [len(c) for c in out.chunks] == [70_000, n - 70_000]
        assert out.to_pylist() == list(range(1, n + 1))

        assert_fails_at(engine, table, 131_077, "inline")
    finally:
        engine.close_sync()


def test_arrow_morsels_travel_as_ipc_to_worker_processes():
    engine = make_engine(executor="processes")
    try:
        n = 30_000
        table = pa.table({"a": list(range(n)), "s": [str(i) for i in range(n)]})
        out = run(engine.process(table, lambda r: {"a": r["a"] + 1, "t": r["s"] + "!"}))
        assert isinstance(out, pa.Table) and out.num_rows == n
        assert out.column("a").to_pylist() == list(range(1, n + 1))
        assert out.column("t")[n - 1].as_py() == f"{n - 1}!"
        assert engine.get_stats()["controller"]["executor"] == "processes"

        chunked = pa.chunked_array([pa.array(range(10_000)), pa.array(range(10_000, n))])
        out = run(engine.process(chunked, square))
        assert isinstance(out, pa.ChunkedArray)
        assert [len(c) for c in out.chunks] == [10_000, n - 10_000]
        assert out.to_pylist() == [x * x for x in range(n)]

        arr = pa.array(range(n))
        out = run(engine.process(arr, lambda x: None if x % 2 else x))  # nulls in some parts
        assert isinstance(out, pa.Array)
        assert out.to_pylist() == [None if x % 2 else x for x in range(n)]

        def bad(r):
            if r["a"] == 25_001:
                raise LookupError("row")
            return r["a"]

        with pytest.raises(ProcessingError) as info:
            run(engine.process(table, bad))
        assert info.value.index == 25_001 and isinstance(info.value.original, LookupError)
    finally:
        engine.close_sync()


def test_cpu_bound_async_function_runs_on_worker_processes():
    engine = make_engine(executor="processes")
    try:
        async def process_item(item):  # the README's shape: computes, never waits
            return sum(range(item % 200)) + item

        data = list(range(20_000))
        out = run(engine.process(data, process_item))
        assert out == [sum(range(x % 200)) + x for x in data]
        ctl = engine.get_stats()["controller"]
        assert ctl["executor"] == "processes" and "never waits" in ctl["reason"]

        async def fails(item):
            if item == 19_000:
                raise ValueError("19000")
            return item

        with pytest.raises(ProcessingError) as info:
            run(engine.process(data, fails))
        assert info.value.index == 19_000

        async def waits(item):  # really waits (I/O-like): stays on the event loop
            await asyncio.sleep(0.002)
            return item

        assert run(engine.process(data[:300], waits)) == data[:300]
        assert engine.get_stats()["controller"]["executor"] == "async"
    finally:
        engine.close_sync()


def test_a_morsel_running_past_the_timeout_is_ended():
    engine = LocalEngine(load_config(env={}, max_workers=2, max_attempts=1,
                                     morsel_timeout_s=0.5), executor="processes")
    try:
        def hangs(x):
            if x == 9_000:
                time.sleep(60)
            return x

        t = time.monotonic()
        with pytest.raises(ProcessingError, match="SABOT_MORSEL_TIMEOUT_S=0.5") as info:
            run(engine.process(list(range(10_000)), hangs))
        assert time.monotonic() - t < 30
        assert isinstance(info.value.original, TimeoutError)
        assert run(engine.process(list(range(10_000)), square))[-1] == 9_999 ** 2
    finally:
        engine.close_sync()


def test_cancelling_a_call_drops_its_queued_morsels_and_the_pool_stays_usable():
    engine = make_engine(executor="processes")
    try:
        def slow(x):
            time.sleep(0.002)
            return x

        async def main():
            task = asyncio.ensure_future(engine.process(list(range(20_000)), slow))
            await asyncio.sleep(0.5)
            task.cancel()
            with pytest.raises(asyncio.CancelledError):
                await task
            t = time.monotonic()
            out = await engine.process(list(range(20_000)), square)
            return out, time.monotonic() - t

        out, seconds = run(main())
        assert out[-1] == 19_999 ** 2
        assert seconds < 20  # not stuck behind the cancelled call's ~40 s of work
        assert engine.runtime.pool.tasks.qsize() == 0
    finally:
        engine.close_sync()


def test_an_engine_dropped_without_close_stops_its_workers():
    import gc

    import psutil

    engine = make_engine(executor="processes")
    run(engine.process(list(range(10_000)), square))
    procs = [psutil.Process(pid) for pid in engine.get_stats()["controller"]["pool_pids"]]
    assert procs
    del engine
    gc.collect()
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline and any(
            p.is_running() and p.status() != psutil.STATUS_ZOMBIE for p in procs):
        time.sleep(0.05)
    assert not any(p.is_running() and p.status() != psutil.STATUS_ZOMBIE for p in procs)


@pytest.mark.skipif(__import__("sabot.system").system.usable_cores() < 2,
                    reason="needs two usable cores")
def test_items_that_get_costly_after_the_sample_move_to_processes():
    engine = make_engine()
    try:
        def late_cost(x):
            if x >= 4_000:  # the sample sees only cheap items
                end = time.perf_counter() + 300e-6
                while time.perf_counter() < end:
                    pass
            return x

        out = run(engine.process(list(range(12_000)), late_cost))
        assert out == list(range(12_000))
        ctl = engine.get_stats()["controller"]
        assert ctl["executor"] == "processes" and "re-planned after" in ctl["reason"]
    finally:
        engine.close_sync()


@pytest.mark.parametrize("how", ["exit", "segfault"])
def test_isolated_engine_survives_functions_that_kill_their_process(how):
    engine = LocalEngine(load_config(env={}, max_workers=2, max_attempts=2), isolate=True)
    try:
        def dies(x):
            if x == 3:  # in the first items: an engine that samples here would die itself
                if how == "exit":
                    import os

                    os._exit(3)
                import ctypes

                ctypes.string_at(0)
            return x

        with pytest.raises(sabot.WorkerLostError):
            run(engine.process(list(range(100)), dies))
        # the caller is alive and every kind of function still works, in the workers
        assert run(engine.process([1, 2, 3], square)) == [1, 4, 9]
        out = run(engine.process(np.arange(5), square))
        assert out.dtype == np.int64 and out.tolist() == [0, 1, 4, 9, 16]
        assert run(engine.process(pa.array([1, 2]), "double")).to_pylist() == [2, 4]

        async def plus(x):
            return x + 1

        assert run(engine.process(range(4), plus)) == [1, 2, 3, 4]
        out = run(engine.process(np.arange(10.0), sabot.batch(np.sqrt)))
        assert np.allclose(out, np.sqrt(np.arange(10.0)))
        assert run(engine.process([], square)) == []
        ctl = engine.get_stats()["controller"]
        assert ctl["executor"] == "processes" and "isolate" in ctl["reason"]
    finally:
        engine.close_sync()


def test_encoded_morsels_are_decoded_run_and_encoded_in_the_workers():
    """process_encoded (a cluster worker's bulk morsels): each morsel travels as its bytes, a
    worker process decodes, runs and encodes it; results per morsel in order, a failure names
    its morsel and the item within it, undecodable bytes and lost processes are errors; a
    batch function gets each whole morsel, and an Arrow expression is refused."""
    from sabot.cluster.protocol import payload

    engine = LocalEngine(load_config(env={}, max_workers=2, max_attempts=1), isolate=True)
    codec = (payload.decode_value, payload.encode_items)
    try:
        morsels = [payload.encode_items(list(range(i, i + 1000))) for i in (0, 1000, 2000)]
        morsels.append(payload.encode_items([(1, "a"), (2, "b")]))  # pickle: tuples
        out = run(engine.process_encoded([(e, b, 1) for e, b in morsels],
                                         lambda x: (x, x) if isinstance(x, int) else x[::-1],
                                         *codec))
        assert [n for n, _, _ in out] == [1000, 1000, 1000, 2]
        assert [enc for _, enc, _ in out] == ["pickle"] * 4
        got = [payload.decode_value(enc, blob) for _, enc, blob in out]
        assert got[:3] == [[(x, x) for x in range(i, i + 1000)] for i in (0, 1000, 2000)]
        assert got[3] == [("a", 1), ("b", 2)]
        plain = run(engine.process_encoded([(e, b, 1000) for e, b in morsels[:2]], square,
                                           *codec))
        assert [payload.decode_value(enc, blob) for _, enc, blob in plain] == \
            [[x * x for x in range(i, i + 1000)] for i in (0, 1000)]
        assert plain[0][1] == "msgpack"
        assert engine.get_stats()["controller"]["transport"]["encoded_tasks"] == 6

        with pytest.raises(sabot.ProcessingError) as err:
            run(engine.process_encoded([(e, b, 1000) for e, b in morsels[:3]],
                                       lambda x: 1 // (x - 1500), *codec))
        assert err.value.morsel == 1 and err.value.index == 500
        assert isinstance(err.value.original, ZeroDivisionError)
        with pytest.raises(sabot.ProcessingError, match="cannot decode a msgpack payload"):
            run(engine.process_encoded([("msgpack", b"\xc1", 1)], square, *codec))

        def dies(x):
            import os

            os._exit(5)

        with pytest.raises(sabot.WorkerLostError):
            run(engine.process_encoded([(*morsels[0], 1000)], dies, *codec))
        # a batch function gets each whole morsel, decoded; what it returns is encoded
        whole = run(engine.process_encoded([(*morsels[0], 1000), (*morsels[3], 2)],
                                           sabot.batch(lambda xs: xs[::-1]),
                                           payload.decode_value, payload.encode_value))
        assert [(n, payload.decode_value(enc, blob)) for n, enc, blob in whole] == \
            [(1000, list(range(999, -1, -1))), (2, [(2, "b"), (1, "a")])]
        with pytest.raises(sabot.ProcessingError, match="returned 1 results for a morsel"):
            run(engine.process_encoded([(*morsels[0], 1000)], sabot.batch(lambda xs: xs[:1]),
                                       payload.decode_value, payload.encode_value))
        import pyarrow.compute as pc

        with pytest.raises(TypeError, match="per-item or batch function"):
            run(engine.process_encoded([(*morsels[0], 1000)], pc.field("x") > 1, *codec))
        assert run(engine.process_encoded([], square, *codec)) == []
    finally:
        engine.close_sync()


def test_small_isolated_calls_of_a_function_known_to_be_cheap_run_as_one_task(monkeypatch):
    """A small call is split over the pool's processes until the function's cost is known;
    once its items are seen to be cheap, a small call is one task (one process round trip),
    while a costly function's small calls stay spread over the processes."""
    from sabot.engine import isolated

    # 10 items under 30 ms: square even on a loaded machine, never 10 x 5 ms of sleep
    monkeypatch.setattr(isolated, "ONE_TASK_S", 0.03)
    engine = LocalEngine(load_config(env={}, max_workers=2), isolate=True)

    def tasks() -> int:
        return engine.get_stats()["controller"]["transport"]["pipe_tasks"]

    try:
        assert run(engine.process(list(range(10)), square)) == [x * x for x in range(10)]
        assert tasks() == 2  # cost unknown: one task per process
        # (a fresh process's first task pays for its imports: it teaches nothing)
        assert run(engine.process(list(range(10)), square)) == [x * x for x in range(10)]
        assert tasks() == 4
        assert run(engine.process(list(range(10)), square)) == [x * x for x in range(10)]
        assert tasks() == 5
        assert "one task" in engine.get_stats()["controller"]["reason"]
        slow = lambda x: time.sleep(0.005) or x  # noqa: E731
        for _ in range(3):
            before = tasks()
            assert run(engine.process(list(range(10)), slow)) == list(range(10))
            assert tasks() - before == 2
    finally:
        engine.close_sync()


def test_isolated_pool_keeps_its_spare_process_between_calls(monkeypatch):
    """Calls whose concurrency comes and goes (a cluster worker's morsels) must not start and
    retire a process each time: the spare stays for SPARE_KEEP_S after it was needed."""
    from sabot.engine import runtime

    engine = LocalEngine(load_config(env={}, max_workers=1), isolate=True)

    async def two_then_one():
        slow = lambda x: time.sleep(0.05) or x  # noqa: E731
        await asyncio.gather(engine.process(list(range(4)), slow),
                             engine.process(list(range(4)), slow))
        grown = sorted(engine.get_stats()["controller"]["pool_pids"])
        for _ in range(3):
            assert await engine.process([1, 2], square) == [1, 4]
        return grown, sorted(engine.get_stats()["controller"]["pool_pids"])

    try:
        grown, after = run(two_then_one())
        assert len(grown) == 2  # one worker + the spare for the second concurrent call
        assert after == grown    # the same processes: nothing retired, nothing restarted
        # as if SPARE_KEEP_S had passed since the spare was last needed
        monkeypatch.setattr(runtime, "SPARE_KEEP_S", 0.0)
        engine.runtime.spare_until = 0.0
        assert run(engine.process([3], square)) == [9]
        deadline = time.monotonic() + 10
        while len(engine.get_stats()["controller"]["pool_pids"]) != 1:
            assert time.monotonic() < deadline, "the spare was never retired"
            time.sleep(0.05)
    finally:
        engine.close_sync()


def test_functions_are_shipped_once_but_never_stale(monkeypatch):
    """The same function (same pickled bytes) shares one token, so a worker that has it is not
    sent it again; a function whose captured values changed is a new one; a worker keeps a
    bounded number of functions and gets a forgotten one again when it is used again."""
    from sabot.engine import processes

    def scale(k):
        return lambda x: x * k

    f = scale(3)
    assert processes.ShippedFunction(f, batch=False).token == \
        processes.ShippedFunction(f, batch=False).token
    assert processes.ShippedFunction(scale(4), batch=False).token != \
        processes.ShippedFunction(f, batch=False).token

    monkeypatch.setattr(processes, "WORKER_FUNCTIONS", 4)
    engine = LocalEngine(load_config(env={}, max_workers=1), isolate=True)
    try:
        data = list(range(50))
        for k in [*range(10), 0, 1, 9]:  # 0 and 1 were forgotten by then, 9 was not
            assert run(engine.process(data, scale(k))) == [x * k for x in data]
    finally:
        engine.close_sync()


def _sabot_segments() -> set[str]:
    import os

    return {f for f in os.listdir("/dev/shm") if f.startswith("sabot-")} \
        if os.path.isdir("/dev/shm") else set()


@pytest.mark.skipif(not __import__("os").path.isdir("/dev/shm"), reason="no /dev/shm")
def test_large_numpy_and_arrow_inputs_reach_workers_through_shared_memory():
    """Inputs over 1 MiB travel to worker processes as shared-memory descriptors, results of
    the expected type come back the same way; results are the same as over the pipes, failures
    name the item, and no shared file is left behind."""
    before = _sabot_segments()
    engine = make_engine(executor="processes")
    try:
        arr = np.arange(400_000, dtype=np.int64)  # 3.2 MB
        out = run(engine.process(arr, square))
        assert isinstance(out, np.ndarray) and out.dtype == np.int64
        assert np.array_equal(out, arr * arr)
        transport = engine.get_stats()["controller"]["transport"]
        assert transport["shared_memory_tasks"] > 0
        kept = out  # the result may live in the shared output: it must outlive the call

        def late_float(x):  # results change type after the sample: they come back by pipe
            return x / 2 if x >= 300_000 else x

        out = run(engine.process(arr, late_float))
        assert np.array_equal(out, np.array([late_float(x) for x in arr.tolist()]))
        assert out.dtype == np.float64

        assert_fails_at(engine, arr, 345_678, "processes")

        table = pa.table({"a": pa.array(range(200_000)), "b": pa.array([1.5] * 200_000)})
        shared = engine.get_stats()["controller"]["transport"]["shared_memory_tasks"]
        out = run(engine.process(table, lambda row: row["a"] * 2 + row["b"]))
        assert isinstance(out, pa.ChunkedArray)
        assert out.to_pylist() == [a * 2 + 1.5 for a in range(200_000)]
        assert engine.get_stats()["controller"]["transport"]["shared_memory_tasks"] > shared
    finally:
        engine.close_sync()
    assert _sabot_segments() - before == set()  # files gone, even while `kept` maps one
    kept[0] = -5  # an ordinary writable array, valid after the engine closed
    assert kept[0] == -5 and np.array_equal(kept[1:], (arr * arr)[1:])


@pytest.mark.skipif(not __import__("os").path.isdir("/dev/shm"), reason="no /dev/shm")
def test_shared_memory_left_by_a_killed_process_is_removed_by_the_next_one():
    import os

    # a process that makes a segment and is killed before it can remove it
    child = nodes.python_child("import sys\n"
                               "from sabot.engine import shm\n"
                               "seg = shm.Segment(4096)\n"
                               "print(seg.path, flush=True)\n"
                               "sys.stdin.read()\n")
    try:
        path = child.stdout.readline().strip()
        assert os.path.exists(path)
    finally:
        nodes.end_child(child, kill=True)
    assert os.path.exists(path)  # SIGKILL left it behind
    from sabot.engine import shm

    assert shm.sweep_stale() >= 1
    assert not os.path.exists(path)


def test_a_full_dev_shm_falls_back_to_the_pipes(monkeypatch):
    """posix_fallocate fails with ENOSPC when /dev/shm has no room (64 MiB in a default Docker
    container): the call still completes, over the pipes, with the same results."""
    import errno

    from sabot.engine import shm

    def no_room(self, size):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(shm.Segment, "__init__", no_room)
    engine = make_engine(executor="processes")
    try:
        arr = np.arange(400_000, dtype=np.int64)
        out = run(engine.process(arr, square))
        assert np.array_equal(out, arr * arr)
        table = pa.table({"a": pa.array(range(200_000))})
        out = run(engine.process(table, lambda row: row["a"] + 1))
        assert out.to_pylist() == list(range(1, 200_001))
        transport = engine.get_stats()["controller"]["transport"]
        assert transport["shared_memory_tasks"] == 0 and transport["pipe_tasks"] > 0
    finally:
        engine.close_sync()


def test_a_function_given_with_its_pickle_is_shipped_as_those_bytes():
    """use_pickle: the isolated pool's processes get the bytes a function was unpickled from
    (what a cluster worker received), not a new pickle of the local copy: a change made to the
    local copy after it was loaded does not travel, the bytes do."""
    import cloudpickle

    def scale(x):
        return x * 3

    data = cloudpickle.dumps(scale)
    func = cloudpickle.loads(data)
    eng = make_engine(isolate=True)

    async def go():
        try:
            eng.use_pickle(func, data)
            func.__code__ = (lambda x: -x).__code__  # the local copy changes; the bytes do not
            assert await eng.process([1, 2, 3], func) == [3, 6, 9]
            eng.use_pickle(len, b"not weakly referable: ignored")  # a builtin: no error
            other = cloudpickle.loads(cloudpickle.dumps(scale))
            other.__code__ = (lambda x: -x).__code__  # no pickle given: pickled per call
            assert await eng.process([1, 2, 3], other) == [-1, -2, -3]
        finally:
            await eng.close()

    run(go())


def test_a_one_task_isolated_call_is_run_by_the_event_loop_and_its_failures_by_the_queue(
        tmp_path):
    """A call of one small task goes from the engine's event loop straight to an idle pool
    process, without a dispatch thread (counted in transport.loop_tasks). A child that dies
    there is replaced and the task retried on the queue; a timeout there is retried and then
    fails as on the queue; a call cancelled there leaves a pool that still works."""
    engine = LocalEngine(load_config(env={}, max_workers=1, max_attempts=2, morsel_timeout_s=1.0),
                         isolate=True)
    marker = tmp_path / "died"

    def dies_once(x):
        if not marker.exists():
            marker.write_text("died")
            import os

            os._exit(4)
        return x * 2

    def hangs(x):
        time.sleep(60)
        return x

    def loop_tasks():
        return engine.get_stats()["controller"]["transport"]["loop_tasks"]

    async def main():
        assert await engine.process([1, 2, 3], square) == [1, 4, 9]  # the pool starts
        for _ in range(50):  # (see the next test)
            if loop_tasks():
                break
            assert await engine.process([1, 2, 3], square) == [1, 4, 9]
        before = loop_tasks()
        assert before > 0
        assert await engine.process([1, 2, 3], square) == [1, 4, 9]
        assert loop_tasks() == before + 1
        lost = engine.runtime.pool.workers_lost
        assert await engine.process([5], dies_once) == [10]
        assert marker.exists() and engine.runtime.pool.workers_lost == lost + 1
        t = time.monotonic()
        with pytest.raises(ProcessingError, match=r"SABOT_MORSEL_TIMEOUT_S=1s.*2 attempt") as info:
            await engine.process([1], hangs)
        assert isinstance(info.value.original, TimeoutError) and time.monotonic() - t < 30
        call = asyncio.ensure_future(engine.process([2], hangs))
        await asyncio.sleep(0.3)
        call.cancel()
        with pytest.raises(asyncio.CancelledError):
            await call
        assert await engine.process([7], square) == [49]
        assert await engine.process([8], square) == [64]
        assert loop_tasks() > before + 1

    try:
        run(main())
    finally:
        engine.close_sync()


def test_closing_the_engine_ends_a_call_its_event_loop_is_exchanging():
    """pool.close() kills a process the loop is talking to directly: the call ends with a
    clear error instead of waiting for a wake-up that a closed socket never gives."""
    engine = LocalEngine(load_config(env={}, max_workers=1), isolate=True)

    def hangs(x):
        time.sleep(60)
        return x

    async def main():
        assert await engine.process([1], square) == [1]  # the pool starts
        # (a call right after one on the queue may find the process not yet released by its
        # dispatch thread; after a call on the loop it is free)
        for _ in range(50):
            if engine.get_stats()["controller"]["transport"]["loop_tasks"]:
                break
            assert await engine.process([2], square) == [4]
        before = engine.get_stats()["controller"]["transport"]["loop_tasks"]
        assert before > 0
        call = asyncio.ensure_future(engine.process([3], hangs))
        await asyncio.sleep(0.5)
        assert engine.get_stats()["controller"]["transport"]["loop_tasks"] == before + 1
        await engine.close()
        with pytest.raises(sabot.WorkerLostError, match="closed"):
            await asyncio.wait_for(call, 30)

    run(main())


def test_a_call_is_not_held_up_behind_a_process_the_event_loop_is_talking_to():
    """A process leased by the loop for a slow one-task call is not a place the next call's
    tasks wait: its dispatch thread hands them back to the other processes."""
    engine = LocalEngine(load_config(env={}, max_workers=2), isolate=True)

    def hangs(x):
        time.sleep(60)
        return x

    async def main():
        assert await engine.process(list(range(100)), square) == [x * x for x in range(100)]
        for _ in range(50):
            if engine.get_stats()["controller"]["transport"]["loop_tasks"]:
                break
            assert await engine.process([2], square) == [4]
        slow = asyncio.ensure_future(engine.process([1], hangs))
        await asyncio.sleep(0.5)
        try:
            for _ in range(5):  # each time both processes' threads look at the queue
                out = await asyncio.wait_for(engine.process(list(range(100)), square), 30)
                assert out == [x * x for x in range(100)]
        finally:
            slow.cancel()
            with pytest.raises(asyncio.CancelledError):
                await slow

    try:
        run(main())
    finally:
        engine.close_sync()


def test_a_function_that_cannot_be_pickled_is_named_in_a_warning_once(engine):
    """Enough work for the pool, but the function holds a lock (it cannot be pickled): it runs
    inline, with one PerformanceWarning saying why and how to fix it — once per function."""
    import warnings

    from sabot.errors import PerformanceWarning

    lock = __import__("threading").Lock()

    def holds_a_lock(x):
        with lock:
            time.sleep(0.0002)
            return x + 1

    with pytest.warns(PerformanceWarning) as caught:
        assert run(engine.process(list(range(2000)), holds_a_lock)) == list(range(1, 2001))
    (warning,) = caught
    text = str(warning.message)
    assert "holds_a_lock runs inline on one core" in text
    assert "cannot be pickled" in text and "lock" in text.lower() and "module level" in text
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert run(engine.process(list(range(2000)), holds_a_lock))[-1] == 2000
    # A small call of such a function is not worth a warning.
    small = [0]

    def tiny(x, _lock=lock):
        return x

    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert run(engine.process(small, tiny)) == [0]
