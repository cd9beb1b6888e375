"""Event-time semantics: late events exactly in .late(), allowed lateness, per-partition and idle
watermarks, the metrics; session and count windows against DuckDB."""

from __future__ import annotations

import asyncio
import time

import numpy as np
import pyarrow as pa
import pytest
from sabot import stream as st
from sabot.metrics import get_metrics


def arrivals(n: int = 3000, keys: int = 5, seed: int = 3, late_share: float = 0.03) -> pa.Table:
    """Events in arrival order: times mostly increasing with small disorder, a few very late."""
    rng = np.random.default_rng(seed)
    t = np.arange(n, dtype=np.int64) * 7 + rng.integers(0, 300, n)
    very_late = rng.random(n) < late_share
    t[very_late] -= rng.integers(1500, 6000, very_late.sum())
    t = np.maximum(t, 0)
    return pa.table({"seq": np.arange(n), "k": rng.integers(0, keys, n), "v": rng.integers(0, 100, n),
                     "t": t})


def simulate_late(data: pa.Table, batch: int, delay: int, size: int, lateness: int) -> np.ndarray:
    """The oracle for lateness: the watermark before each batch (max time so far - delay - 1);
    an event is late when its window ended (end - 1) at least ``lateness`` before it."""
    t = data.column("t").to_numpy()
    late = np.zeros(len(t), bool)
    wm = None
    for s in range(0, len(t), batch):
        part = t[s:s + batch]
        if wm is not None:
            end = (part // size) * size + size
            late[s:s + batch] = end - 1 + lateness <= wm
        top = int(part.max()) - delay - 1
        wm = top if wm is None else max(wm, top)
    return late


def _tumbling_sql(sql, data, size):
    return sql(f"SELECT k, (t // {size}) * {size} AS window_start, count(*) AS n, sum(v) AS s "
               "FROM data GROUP BY ALL", data=data)


@pytest.mark.parametrize("lateness", [0, 2000])
def test_late_events_are_exactly_the_late_output(sql, same_rows, lateness):
    data = arrivals()
    late = simulate_late(data, 100, 500, 1000, lateness)
    assert 10 < late.sum() < 200
    env = st.StreamEnv()
    windows = (env.from_collection(data, timestamp="t", batch_size=100,
                                   watermark=st.bounded_out_of_orderness("500ms"))
                  .key_by("k").window(st.tumbling("1s"), allowed_lateness=lateness)
                  .agg(n=st.count(), s=st.sum("v")))
    late_rows: list[pa.RecordBatch] = []
    windows.late().to_callable(late_rows.append)
    out = windows.collect()
    got_late = sorted(pa.Table.from_batches(late_rows).column("seq").to_pylist()) if late_rows else []
    assert got_late == sorted(data.column("seq").to_numpy()[late].tolist())
    assert env.last_result.late_events == late.sum()
    on_time = data.filter(pa.array(~late))
    # the last row per (key, window) is the batch answer over the events that were not late
    last = sql("SELECT k, window_start, last(n ORDER BY i) AS n, last(s ORDER BY i) AS s FROM "
               "(SELECT *, row_number() OVER () AS i FROM out) GROUP BY k, window_start", out=out)
    same_rows(last, _tumbling_sql(sql, on_time, 1000))
    if lateness:
        assert out.num_rows > last.num_rows  # late events within the lateness re-fired windows
    else:
        assert out.num_rows == last.num_rows  # final mode: one row per window


def test_watermarks_per_partition_are_merged_as_the_minimum():
    # partition "slow" runs 5 s behind "fast": as one partition its events would be late
    n = 400
    fast = [{"p": "fast", "k": 1, "t": 10_000 + i * 25} for i in range(n)]
    slow = [{"p": "slow", "k": 1, "t": 5_000 + i * 25} for i in range(n)]
    rows = [r for pair in zip(fast, slow) for r in pair]
    for partition_by, expect_late in ((None, True), ("p", False)):
        env = st.StreamEnv()
        out = (env.from_collection(rows, timestamp="t", batch_size=20, partition_by=partition_by,
                                   watermark=st.bounded_out_of_orderness("100ms"))
                  .key_by("k").window(st.tumbling("1s")).agg(n=st.count())).collect()
        assert (env.last_result.late_events > 0) == expect_late
        if not expect_late:
            assert sum(out.column("n").to_pylist()) == 2 * n


@pytest.mark.parametrize("idle_timeout", [None, "150ms"])
def test_an_idle_partition_stops_holding_the_watermark_back(idle_timeout):
    marks: dict[str, float] = {}

    async def source():
        yield pa.RecordBatch.from_pylist([{"p": 1, "t": 0}])  # partition 1: one event, then silence
        for i in range(30):
            yield pa.RecordBatch.from_pylist([{"p": 0, "t": 1000 * i}])
            await asyncio.sleep(0.03)
        marks["source_done"] = time.monotonic()

    def seen(batch: pa.RecordBatch) -> None:
        marks.setdefault("first_output", time.monotonic())

    env = st.StreamEnv(tick="20ms")
    (env.from_collection(source(), timestamp="t", partition_by="p",
                         watermark=st.bounded_out_of_orderness(0, idle_timeout=idle_timeout))
        .window(st.tumbling("1s")).agg(n=st.count())).to_callable(seen)
    env.execute()
    if idle_timeout is None:
        assert marks["first_output"] >= marks["source_done"]  # held back to the end
    else:
        assert marks["first_output"] < marks["source_done"]  # windows fired while running


def test_watermark_lag_and_late_events_are_metrics():
    env = st.StreamEnv(tick="1ms")
    data = arrivals(n=1000)
    (env.from_collection(data, timestamp="t", batch_size=50,
                         watermark=st.bounded_out_of_orderness("500ms"))
        .key_by("k").window(st.tumbling("1s")).agg(n=st.count())).discard()
    env.execute("metrics-job")
    text = get_metrics().exposition()[0].decode()
    late = [line for line in text.splitlines()
            if line.startswith("sabot_stream_late_events_total{") and 'job="metrics-job"' in line]
    assert late and float(late[0].split()[-1]) == env.last_result.late_events > 0
    lag = [line for line in text.splitlines()
           if line.startswith("sabot_stream_watermark_lag_seconds{") and 'job="metrics-job"' in line]
    assert lag and float(lag[0].split()[-1]) > 1e6  # event times of 1970: decades behind the clock


def test_session_windows_equal_the_batch_answer(sql, same_rows):
    rng = np.random.default_rng(5)
    n = 2000
    t = np.cumsum(rng.choice([50, 100, 400, 2500], n, p=[0.4, 0.3, 0.2, 0.1]))
    arrival = np.argsort(t + rng.integers(0, 800, n), kind="stable")
    data = pa.table({"k": rng.integers(0, 4, n), "v": rng.integers(0, 10, n), "t": t}).take(arrival)
    env = st.StreamEnv()
    out = (env.from_collection(data, timestamp="t", batch_size=64,
                               watermark=st.bounded_out_of_orderness("1s"))
              .key_by("k").window(st.session("1s")).agg(n=st.count(), s=st.sum("v"),
                                                         f=st.first("v"))).collect()
    assert env.last_result.late_events == 0
    expected = sql("""
        WITH o AS (SELECT *, CASE WHEN t - lag(t) OVER (PARTITION BY k ORDER BY t) < 1000
                                  THEN 0 ELSE 1 END AS brk FROM data),
             s AS (SELECT *, sum(brk) OVER (PARTITION BY k ORDER BY t ROWS UNBOUNDED PRECEDING) AS sid
                   FROM o)
        SELECT k, min(t) AS window_start, max(t) + 1000 AS window_end, count(*) AS n, sum(v) AS s
        FROM s GROUP BY k, sid""", data=data)
    same_rows(out, expected, ["k", "window_start", "window_end", "n", "s"])


def test_count_windows_equal_the_batch_answer(sql, same_rows):
    rng = np.random.default_rng(6)
    n = 1000
    data = pa.table({"seq": np.arange(n), "k": rng.integers(0, 6, n), "v": rng.integers(0, 50, n),
                     "t": np.arange(n) * 10})
    env = st.StreamEnv()
    out = (env.from_collection(data, timestamp="t", batch_size=37)
              .key_by("k").window(st.count(7)).agg(n=st.count(), s=st.sum("v"), hi=st.max("v"),
                                                   last=st.last("v"))).collect()
    expected = sql("""
        WITH r AS (SELECT *, (row_number() OVER (PARTITION BY k ORDER BY seq) - 1) // 7 AS w FROM data)
        SELECT k, min(t) AS window_start, count(*) AS n, sum(v) AS s, max(v) AS hi,
               arg_max(v, seq) AS last
        FROM r GROUP BY k, w HAVING count(*) = 7""", data=data)
    same_rows(out, expected, ["k", "window_start", "n", "s", "hi", "last"])
