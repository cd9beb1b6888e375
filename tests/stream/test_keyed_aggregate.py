"""Keyed aggregation without windows: ``keyed_agg`` (an updating result per key) and
``agg_until`` (one row per key when the watermark reaches its group's end), against DuckDB;
their state through a savepoint and a restore (Nexmark q4's two stages)."""

from __future__ import annotations

import asyncio
import os
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
import pytest
from sabot import stream as st
from sabot.errors import ConfigError
from sabot.stream.keyed_aggregate import agg_until, keyed_agg
from sabot.stream.nexmark.queries import SQL


def orders(n: int = 3000, seed: int = 5) -> pa.Table:
    rng = np.random.default_rng(seed)
    t = np.sort(rng.integers(0, 100_000, n))
    shop = pa.array(rng.integers(0, 7, n)).to_pylist()
    for i in range(0, n, 97):
        shop[i] = None  # null keys group together
    amount = pa.array(rng.integers(1, 500, n), mask=rng.random(n) < 0.05)
    return pa.table({"shop": pa.array(shop, pa.int64()), "kind": rng.choice(["a", "b"], n),
                     "amount": amount, "t": t, "due": t - t % 10_000 + 10_000})


@pytest.mark.parametrize("parallelism", [1, 2])
def test_keyed_agg_is_an_updating_result_whose_last_rows_are_the_group_by(parallelism, sql, same_rows):
    data = orders()
    env = st.StreamEnv(parallelism=parallelism)
    s = env.from_collection(data, timestamp="t", batch_size=250)
    out = keyed_agg(s.key_by("shop", "kind"), n=st.count(), total=st.sum("amount"),
                    lo=st.min("amount"), hi=st.max("amount"), avg=st.mean("amount")).collect()
    last = sql("SELECT shop, kind, last(n ORDER BY i) AS n, last(total ORDER BY i) AS total, "
               "last(lo ORDER BY i) AS lo, last(hi ORDER BY i) AS hi, last(avg ORDER BY i) AS avg "
               "FROM (SELECT *, row_number() OVER () AS i FROM out) GROUP BY shop, kind", out=out)
    expected = sql("SELECT shop, kind, count(*) AS n, sum(amount) AS total, min(amount) AS lo, "
                   "max(amount) AS hi, avg(amount) AS avg FROM data GROUP BY shop, kind", data=data)
    same_rows(last, expected)
    # one row per key a batch changed, not one per event
    per_batch = sql("SELECT count(*) AS n FROM (SELECT DISTINCT shop, kind, i // 250 AS b FROM "
                    "(SELECT *, row_number() OVER () - 1 AS i FROM data))", data=data)
    assert out.num_rows == per_batch.column("n")[0].as_py()


@pytest.mark.parametrize("parallelism", [1, 2])
def test_agg_until_emits_each_group_once_when_the_watermark_reaches_its_end(parallelism, sql, same_rows):
    data = orders()
    env = st.StreamEnv(parallelism=parallelism)
    s = env.from_collection(data, timestamp="t", batch_size=250)
    out = agg_until(s.key_by("shop", "due"), "due", n=st.count(), hi=st.max("amount")).collect()
    expected = sql("SELECT shop, due, count(*) AS n, max(amount) AS hi FROM data GROUP BY shop, due",
                   data=data)
    same_rows(out, expected)
    dues = out.column("due").to_pylist()
    assert dues == sorted(dues)  # released in the order of their ends


def test_agg_until_releases_a_group_only_once_the_watermark_passes_its_end():
    rows = [{"k": "a", "v": 1, "t": 0, "end": 5_000}, {"k": "b", "v": 2, "t": 1_000, "end": 2_000},
            {"k": "a", "v": 3, "t": 2_500, "end": 5_000}, {"k": "b", "v": 9, "t": 4_000, "end": 2_000},
            {"k": "c", "v": 4, "t": 6_000, "end": None}]
    env = st.StreamEnv()
    s = env.from_collection(rows, timestamp="t", batch_size=1)
    got: list[tuple[int, list[dict]]] = []
    op_inputs: list[int] = []

    def watch(batch: pa.RecordBatch) -> pa.RecordBatch:
        op_inputs.append(pc.max(batch.column("t")).as_py())
        return batch

    agg_until(s.map(watch).key_by("k"), "end", total=st.sum("v")).to_callable(
        lambda b: got.append((op_inputs[-1], b.to_pylist())))
    env.execute()
    # b closes at 2 s (released by the watermark after the 2.5 s row); the 4 s row for b comes
    # after b's group closed: a new group, released by the next watermark; a at 5 s; c (no end)
    # at the end of the input
    assert got == [(2_500, [{"k": "b", "total": 2}]), (4_000, [{"k": "b", "total": 9}]),
                   (6_000, [{"k": "a", "total": 4}]), (6_000, [{"k": "c", "total": 4}])]


def test_bad_arguments_say_what_is_accepted():
    env = st.StreamEnv()
    s = env.from_collection([{"k": 1, "v": 2, "t": 0}], timestamp="t")
    with pytest.raises(ConfigError, match="st.sum"):
        keyed_agg(s.key_by("k"), f=st.first("v"))
    with pytest.raises(ConfigError, match="not a key column"):
        keyed_agg(s.key_by("k"), k=st.sum("v"))
    with pytest.raises(ConfigError, match="column of event times"):
        agg_until(s.key_by("k"), None, n=st.count())
    with pytest.raises(ConfigError, match="key_by"):
        keyed_agg(s, n=st.count())


def _q4(env: st.StreamEnv, out: Path) -> None:
    """Nexmark q4's two stages, each into exactly-once files: the winners and the averages."""
    nx = env.nexmark(events=120_000, seed=7, rate=60_000, batch_size=2_000)
    auctions = nx.auctions.select("id", "category", "date_time", "expires")
    bids = nx.bids.select("auction", "price", "date_time")
    pairs = auctions.interval_join(bids, on=("id", "auction"), lower=0,
                                   upper=nx.max_auction_length_ms)
    valid = pairs.filter(pc.field("date_time_right") <= pc.field("expires"))
    winners = agg_until(valid.key_by("id", "category"), "expires", final=st.max("price"),
                        name="winners")
    winners.to_files(str(out / "winners"))
    keyed_agg(winners.key_by("category"), avg_final=st.mean("final")).to_files(str(out / "avg"))


def _parts(directory: Path) -> list[str]:
    return sorted(f for f in os.listdir(directory) if f.startswith("part-"))


def _read(directory: Path, names: list[str]) -> pa.Table:
    return pa.concat_tables([pq.read_table(directory / f) for f in names])


@pytest.mark.parametrize("parallelism", [1, 2])
def test_q4_state_goes_through_a_savepoint_and_a_restore(parallelism, tmp_path, sql, same_rows):
    async def run_and_savepoint() -> tuple[str, dict[str, list[str]]]:
        env = st.StreamEnv(parallelism=parallelism, state_dir=str(tmp_path / "s1"))
        _q4(env, tmp_path / "o1")
        job = asyncio.ensure_future(env.execute_async("q4"))
        # once some auctions have been decided (the paced events take over 1.6 s in all)
        while not any(o["name"] == "winners" and o["records_out"]
                      for o in env.get_stats().get("operators", [])):
            assert not job.done(), "the job ended before the savepoint"
            await asyncio.sleep(0.01)
        path = await env.savepoint_async(str(tmp_path / "savepoint"))
        committed = {k: _parts(tmp_path / "o1" / k) for k in ("winners", "avg")}
        await job
        return path, committed

    path, committed = asyncio.run(run_and_savepoint())
    assert committed["winners"], "the savepoint committed no winners"
    env = st.StreamEnv(parallelism=parallelism, state_dir=str(tmp_path / "s2"))
    _q4(env, tmp_path / "o2")
    env.execute("q4", restore_from=path)
    assert env.get_stats()["checkpoints"]["restored_from"] == path

    nx = st.StreamEnv().nexmark(events=120_000, seed=7)
    tables = {"auction": nx.auctions.collect(), "bid": nx.bids.collect()}
    # every auction's winner exactly once: the savepoint's files, then the restored job's (an
    # auction open at the savepoint has its bids from before it in the restored state)
    before = _read(tmp_path / "o1" / "winners", committed["winners"])
    after = _read(tmp_path / "o2" / "winners", _parts(tmp_path / "o2" / "winners"))
    assert before.num_rows and after.num_rows
    inner = ("SELECT A.id, A.category, max(B.price) AS final FROM auction A JOIN bid B "
             "ON A.id = B.auction AND B.date_time BETWEEN A.date_time AND A.expires "
             "GROUP BY A.id, A.category")
    same_rows(pa.concat_tables([before, after]), sql(inner, **tables))
    # the averages: the last row per category, in the order the files were written
    avg = pa.concat_tables([_read(tmp_path / "o1" / "avg", committed["avg"]),
                            _read(tmp_path / "o2" / "avg", _parts(tmp_path / "o2" / "avg"))])
    last = sql("SELECT category, last(avg_final ORDER BY i) AS avg_final FROM "
               "(SELECT *, row_number() OVER () AS i FROM avg) GROUP BY category", avg=avg)
    same_rows(last, sql(SQL["q4"], **tables))
