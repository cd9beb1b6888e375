"""The Nexmark generator's relations and determinism, and every query equal to its batch answer
(DuckDB over the same generated events)."""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pytest
from sabot import stream as st
from sabot.stream.nexmark.generator import GeneratorConfig, generate
from sabot.stream.nexmark.queries import QUERIES, SQL

EVENTS = 120_000


@pytest.fixture(scope="module")
def tables() -> dict[str, pa.Table]:
    env = st.StreamEnv()
    nx = env.nexmark(events=EVENTS, seed=7)
    return {"person": nx.persons.collect(), "auction": nx.auctions.collect(), "bid": nx.bids.collect()}


def test_proportions_ids_and_times(tables):
    p, a, b = tables["person"], tables["auction"], tables["bid"]
    assert (p.num_rows, a.num_rows, b.num_rows) == (EVENTS // 50, 3 * EVENTS // 50, 46 * EVENTS // 50)
    assert p.column("id").to_pylist() == list(range(1000, 1000 + p.num_rows))
    assert a.column("id").to_pylist() == list(range(1000, 1000 + a.num_rows))
    ms = lambda t, c: t.column(c).cast(pa.int64()).to_numpy()
    for t in (p, a, b):
        assert np.all(np.diff(ms(t, "date_time")) >= 0)  # in event-time order
    # 10,000 events per second of event time: the stream spans EVENTS / 10,000 seconds
    span = (ms(b, "date_time")[-1] - ms(p, "date_time")[0]) / 1000
    assert abs(span - EVENTS / 10_000) < 0.01
    # sellers and bidders are people, bids go to auctions (a few ids ahead, as in Nexmark)
    assert a.column("seller").to_numpy().max() < 1000 + p.num_rows + 10
    assert b.column("auction").to_numpy().max() < 1000 + a.num_rows + 10
    assert set(a.column("category").to_pylist()) == {10, 11, 12, 13, 14}
    assert np.all(ms(a, "expires") > ms(a, "date_time"))
    hot = np.mean(b.column("auction").to_numpy() % 2 == 0)
    assert 0.7 < hot < 0.8  # half hot (even ids), half any in flight


def test_the_generator_is_deterministic_per_seed():
    cfg = GeneratorConfig(seed=3)
    one = pa.Table.from_batches(list(generate(cfg, "bid", 0, 80_000)))
    two = pa.Table.from_batches(list(generate(cfg, "bid", 0, 80_000)))
    part = pa.Table.from_batches(list(generate(cfg, "bid", 50_000, 80_000)))
    other = pa.Table.from_batches(list(generate(GeneratorConfig(seed=4), "bid", 0, 80_000)))
    assert one.equals(two)
    assert part.equals(one.slice(one.num_rows - part.num_rows))  # any start gives the same events
    assert not one.equals(other)


@pytest.mark.parametrize("name", sorted(QUERIES))
def test_each_query_equals_its_batch_answer(name, tables, sql, same_rows):
    env = st.StreamEnv(parallelism=2)
    out = QUERIES[name](env.nexmark(events=EVENTS, seed=7)).collect()
    expected = sql(SQL[name], **tables)
    assert expected.num_rows > 0
    if name == "q4":  # an updating result: the last row per category is the answer
        out = sql("SELECT category, last(avg_final ORDER BY i) AS avg_final FROM "
                  "(SELECT *, row_number() OVER () AS i FROM out) GROUP BY category", out=out)
    same_rows(out, expected, expected.column_names)


def test_q4_at_parallelism_1_with_checkpoints_equals_its_batch_answer(tables, sql, same_rows, tmp_path):
    env = st.StreamEnv(parallelism=1, checkpoint_interval="1ms", state_dir=str(tmp_path))
    out = QUERIES["q4"](env.nexmark(events=EVENTS, seed=7, batch_size=5_000)).collect()
    assert env.get_stats()["checkpoints"]["count"] > 1
    last = sql("SELECT category, last(avg_final ORDER BY i) AS avg_final FROM "
               "(SELECT *, row_number() OVER () AS i FROM out) GROUP BY category", out=out)
    same_rows(last, sql(SQL["q4"], **tables), ["category", "avg_final"])
