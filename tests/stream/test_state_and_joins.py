"""Keyed process functions with state, TTL and timers; union; interval, window and lookup joins,
against DuckDB over the same events."""

from __future__ import annotations

import asyncio

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pytest
from sabot import stream as st
from sabot.errors import ProcessingError


def clicks(n: int = 2000, keys: int = 6, seed: int = 9) -> pa.Table:
    rng = np.random.default_rng(seed)
    t = np.sort(rng.integers(0, 60_000, n))
    return pa.table({"user": rng.integers(0, keys, n), "page": rng.integers(0, 5, n),
                     "amount": rng.integers(1, 100, n), "t": t})


def test_process_with_value_list_and_map_state(sql, same_rows):
    data = clicks()

    def track(key, batch, ctx):
        total = ctx.state("total")
        total.update(total.value() + pc.sum(batch.column("amount")).as_py())
        pages = ctx.state("pages")
        for p in pc.unique(batch.column("page")).to_pylist():
            pages.put(p, pages.get(p, 0) + 1)
        ctx.state("sizes").add(batch.num_rows)
        return [{"user": key, "total": total.value(), "distinct_pages": len(pages),
                 "batches": len(ctx.state("sizes"))}]

    env = st.StreamEnv()
    out = (env.from_collection(data, timestamp="t", batch_size=97).key_by("user")
              .process(track, state={"total": st.ValueState(default=0), "pages": st.MapState(),
                                     "sizes": st.ListState()})).collect()
    last = sql("SELECT user, last(total ORDER BY i) AS total, last(distinct_pages ORDER BY i) AS dp "
               "FROM (SELECT *, row_number() OVER () AS i FROM out) GROUP BY user", out=out)
    expected = sql("SELECT user, sum(amount) AS total, count(DISTINCT page) AS dp FROM data GROUP BY user",
                   data=data)
    same_rows(last, expected)
    assert out.num_rows > 6  # one row per key and batch


def test_event_time_timers_fire_when_the_watermark_passes(sql, same_rows):
    # "inactivity": one row per user 5 s after the last click of each burst
    data = clicks(n=60, keys=4)

    def on_click(key, batch, ctx):
        last = ctx.state("last")
        t = pc.max(batch.column("t")).as_py()
        if last.value() is not None and t <= last.value() + 5000:
            ctx.timers.delete_event_time_timer(last.value() + 5000)  # the burst goes on
        last.update(t)
        ctx.timers.register_event_time_timer(t + 5000)

    def on_timer(key, ts, ctx):
        return [{"user": key, "idle_since": ts - 5000}]

    env = st.StreamEnv()
    out = (env.from_collection(data, timestamp="t", batch_size=1).key_by("user")
              .process(on_click, on_timer=on_timer, state={"last": st.ValueState()})).collect()
    expected = sql("""
        WITH o AS (SELECT user, t, lead(t) OVER (PARTITION BY user ORDER BY t, rowid) AS nxt
                   FROM (SELECT *, row_number() OVER () AS rowid FROM data))
        SELECT user, t AS idle_since FROM o WHERE nxt IS NULL OR nxt > t + 5000""", data=data)
    assert expected.num_rows > 10
    same_rows(out, expected)


def test_state_ttl_in_event_time_forgets_quiet_keys():
    rows = [{"k": "a", "t": 0}, {"k": "a", "t": 100}, {"k": "b", "t": 9000}, {"k": "a", "t": 9100}]

    def count(key, batch, ctx):
        c = ctx.state("c")
        c.update(c.value() + batch.num_rows)
        return [{"k": key, "count": c.value()}]

    for ttl, expected in ((None, 3), ("2s", 1)):
        env = st.StreamEnv()
        out = (env.from_collection(rows, timestamp="t", batch_size=1).key_by("k")
                  .process(count, state={"c": st.ValueState(default=0, ttl=ttl)})).collect()
        a = [r["count"] for r in out.to_pylist() if r["k"] == "a"]
        assert a[-1] == expected


def test_processing_time_timers_fire_while_the_job_runs():
    async def slow():
        yield {"k": 1, "t": 0}
        await asyncio.sleep(0.4)
        yield {"k": 1, "t": 1}

    def on_event(key, batch, ctx):
        ctx.timers.register_processing_time_timer(ctx.processing_time + 50)

    def on_timer(key, ts, ctx):
        return [{"k": key, "fired": True}]

    env = st.StreamEnv(tick="10ms")
    out = (env.from_collection(slow(), timestamp="t", batch_size=1).key_by("k")
              .process(on_event, on_timer=on_timer)).collect()
    assert out.num_rows >= 1 and out.column("fired").to_pylist()[0] is True


def test_a_failing_process_function_names_the_key():
    env = st.StreamEnv()

    def bad(key, batch, ctx):
        raise KeyError("nope")

    with pytest.raises(ProcessingError, match=r"process\(bad\).*key \d+ on a batch"):
        env.from_collection(clicks(n=50), timestamp="t").key_by("user").process(bad).collect()


def test_union_merges_streams_and_their_watermarks():
    a, b = clicks(n=500, seed=1), clicks(n=700, seed=2)
    env = st.StreamEnv()
    s = env.from_collection(a, timestamp="t").union(env.from_collection(b, timestamp="t"))
    out = s.window(st.tumbling("10s")).agg(n=st.count()).collect()
    assert sum(out.column("n").to_pylist()) == 1200
    assert env.last_result.late_events == 0


def _two_streams(seed: int = 4):
    rng = np.random.default_rng(seed)
    n = 800
    left = pa.table({"id": np.arange(n), "k": rng.integers(0, 20, n),
                     "t": np.sort(rng.integers(0, 100_000, n))})
    right = pa.table({"rid": np.arange(n), "k": rng.integers(0, 20, n),
                      "t": np.sort(rng.integers(0, 100_000, n))})
    return left, right


def test_interval_join_equals_the_batch_join(sql, same_rows):
    left, right = _two_streams()
    env = st.StreamEnv()
    out = (env.from_collection(left, timestamp="t", batch_size=50)
              .interval_join(env.from_collection(right, timestamp="t", batch_size=50),
                             on="k", lower="-2s", upper="1s")).collect()
    expected = sql("SELECT l.id, r.rid FROM l JOIN r ON l.k = r.k AND r.t BETWEEN l.t - 2000 "
                   "AND l.t + 1000", l=left, r=right)
    assert expected.num_rows > 100
    same_rows(out, expected, ["id", "rid"])
    assert set(out.column_names) == {"id", "k", "t", "rid", "t_right"}


def test_window_join_equals_the_batch_join(sql, same_rows):
    left, right = _two_streams(5)
    env = st.StreamEnv()
    out = (env.from_collection(left, timestamp="t", batch_size=64)
              .window_join(env.from_collection(right, timestamp="t", batch_size=64),
                           on="k", window=st.tumbling("5s"))).collect()
    expected = sql("SELECT l.id, r.rid, (l.t // 5000) * 5000 AS window_start FROM l JOIN r "
                   "ON l.k = r.k AND l.t // 5000 = r.t // 5000", l=left, r=right)
    assert expected.num_rows > 100
    same_rows(out, expected, ["id", "rid", "window_start"])


def test_lookup_join_against_a_static_table(sql, same_rows):
    data = clicks(n=300)
    users = pa.table({"user": [0, 1, 2, 3], "name": ["ann", "bo", "cy", "di"]})
    env = st.StreamEnv()
    out = env.from_collection(data, timestamp="t", batch_size=40).lookup_join(users, on="user").collect()
    expected = sql("SELECT d.*, u.name FROM d LEFT JOIN u ON d.user = u.user", d=data, u=users)
    same_rows(out, expected, ["user", "page", "amount", "t", "name"])
    inner = env.from_collection(data, timestamp="t").lookup_join(users, on="user", how="inner").collect()
    assert inner.num_rows == expected.filter(pc.is_valid(expected.column("name"))).num_rows


def test_lookup_join_against_a_changelog_keeps_the_latest_row_per_key():
    updates = [{"user": 1, "name": "old"}, {"user": 2, "name": "two"}, {"user": 1, "name": "new"}]

    async def later():
        await asyncio.sleep(0.3)  # the changelog is read first
        yield {"user": 1, "t": 0}
        yield {"user": 2, "t": 1}
        yield {"user": 3, "t": 2}

    env = st.StreamEnv()
    table = env.from_collection(updates)
    out = env.from_collection(later(), timestamp="t").lookup_join(table, on="user").collect()
    assert out.select(["user", "name"]).to_pylist() == [
        {"user": 1, "name": "new"}, {"user": 2, "name": "two"}, {"user": 3, "name": None}]


def test_null_keys_never_join_but_group_together():
    """SQL semantics, as the batch engines have them: a null key matches nothing in a join,
    and null keys form one group in a keyed window."""
    left = [{"k": None, "a": 1, "t": 0}, {"k": 1, "a": 2, "t": 0}, {"k": None, "a": 5, "t": 5}]
    right = [{"k": None, "b": 3, "t": 10}, {"k": 1, "b": 4, "t": 10}]
    for join in ("interval", "window"):
        env = st.StreamEnv()
        lhs, rhs = env.from_collection(left, timestamp="t"), env.from_collection(right, timestamp="t")
        out = (lhs.interval_join(rhs, on="k", lower="-1s", upper="1s") if join == "interval"
               else lhs.window_join(rhs, on="k", window=st.tumbling("1s"))).collect()
        assert [(r["k"], r["a"], r["b"]) for r in out.to_pylist()] == [(1, 2, 4)], join
    env = st.StreamEnv()
    got = (env.from_collection(left, timestamp="t").key_by("k").window(st.tumbling("1s"))
              .agg(n=st.count())).collect()
    assert sorted((r["k"] is None, r["n"]) for r in got.to_pylist()) == [(False, 1), (True, 2)]
