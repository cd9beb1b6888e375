"""Tumbling and sliding window aggregation against DuckDB over the same events, out of order."""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pytest
from sabot import stream as st
from sabot.errors import ConfigError, ProcessingError


def events(n: int = 6000, keys: int = 7, seed: int = 1, disorder_ms: int = 900) -> pa.Table:
    """Events roughly in time order, each shuffled by up to ``disorder_ms``, unique times."""
    rng = np.random.default_rng(seed)
    base = np.arange(n, dtype=np.int64) * 10 + 1_700_000_000_000
    t = base + rng.integers(0, disorder_ms // 10, n) * 10 + rng.permutation(n) % 10
    t = np.unique(t)
    rng.shuffle(t)
    order = np.argsort(t + rng.integers(0, disorder_ms, len(t)), kind="stable")
    t = t[order]  # arrival order: by time plus a random delay below disorder_ms
    n = len(t)
    v = rng.integers(-50, 1000, n).astype(np.float64)
    v[rng.random(n) < 0.05] = np.nan
    return pa.table({
        "k": pa.array(rng.integers(0, keys, n)).cast(pa.string()),
        "v": pa.array(v, mask=np.isnan(v)),
        "c": pa.array(rng.integers(0, 20, n)),
        "t": pa.array(t).cast(pa.timestamp("ms")),
    })


AGGS = dict(n=st.count(), nv=st.count("v"), s=st.sum("v"), lo=st.min("v"), hi=st.max("v"),
            avg=st.mean("v"), first=st.first("c"), last=st.last("c"), distinct=st.count_distinct("c"))
SQL_AGGS = """count(*) AS n, count(v) AS nv, sum(v) AS s, min(v) AS lo, max(v) AS hi, avg(v) AS avg,
              arg_min(c, t) AS first, arg_max(c, t) AS last, count(DISTINCT c) AS distinct"""


def _oracle(sql, data: pa.Table, size_ms: int, slide_ms: int) -> pa.Table:
    return sql(f"""
        WITH ev AS (SELECT k, v, c, t, t AS ms FROM data),
             w AS (SELECT *, unnest(generate_series(ms - ms % {slide_ms} - {size_ms} + {slide_ms},
                                                    ms - ms % {slide_ms}, {slide_ms})) AS ws FROM ev)
        SELECT k, ws AS window_start,
               ws + {size_ms} AS window_end, {SQL_AGGS}
        FROM w GROUP BY k, ws""", data=data)


@pytest.mark.parametrize("window, size, slide", [
    (st.tumbling("1s"), 1000, 1000),
    (st.sliding("3s", slide="1s"), 3000, 1000),
    (st.sliding("1s", slide="250ms"), 1000, 250),
])
def test_windows_equal_the_batch_answer_over_out_of_order_events(sql, same_rows, window, size, slide):
    data = events()
    env = st.StreamEnv(parallelism=2)
    out = (env.from_collection(data, timestamp="t", batch_size=500,
                               watermark=st.bounded_out_of_orderness("1s"))
              .key_by("k").window(window).agg(**AGGS)).collect()
    assert env.last_result.late_events == 0
    same_rows(out, _oracle(sql, data, size, slide))


def test_a_sliding_window_whose_slide_does_not_divide_its_size(same_rows):
    # size 1000, slide 400: panes of gcd = 200 ms; checked against a direct computation
    data = events(n=2000, keys=3)
    env = st.StreamEnv()
    out = (env.from_collection(data, timestamp="t", batch_size=300,
                               watermark=st.bounded_out_of_orderness("1s"))
              .key_by("k").window(st.sliding("1s", slide="400ms")).agg(n=st.count(), s=st.sum("c"))).collect()
    ms = data.column("t").cast(pa.int64()).to_numpy()
    keys = data.column("k").to_pylist()
    c = data.column("c").to_numpy()
    expected: dict[tuple[str, int], list[int]] = {}
    for key, t, cv in zip(keys, ms, c):
        ws = (t // 400) * 400
        while ws + 1000 > t:
            acc = expected.setdefault((key, int(ws)), [0, 0])
            acc[0] += 1
            acc[1] += int(cv)
            ws -= 400
    got = {}
    for k, ws, n, s in zip(out.column("k").to_pylist(), out.column("window_start").cast(pa.int64()).to_pylist(),
                           out.column("n").to_pylist(), out.column("s").to_pylist()):
        got[(k, ws)] = [n, s]
    assert got == expected


def test_update_mode_ends_on_the_final_rows(sql, same_rows):
    data = events(n=3000)
    env = st.StreamEnv()
    upd = (env.from_collection(data, timestamp="t", batch_size=250,
                               watermark=st.bounded_out_of_orderness("1s"))
              .key_by("k").window(st.tumbling("1s")).agg(n=st.count(), s=st.sum("v"))
              .emit("update")).collect()
    final = sql("SELECT k, window_start, window_end, last(n ORDER BY rowid) AS n, "
                "last(s ORDER BY rowid) AS s FROM (SELECT *, row_number() OVER () AS rowid FROM upd) "
                "GROUP BY k, window_start, window_end", upd=upd)
    same_rows(final, _oracle(sql, data, 1000, 1000), ["k", "window_start", "window_end", "n", "s"])
    # updates really came early: more rows than windows
    assert upd.num_rows > final.num_rows


def test_a_window_over_the_whole_stream_and_a_filter_before_it(sql, same_rows):
    data = events(n=3000)
    env = st.StreamEnv()
    out = (env.from_collection(data, timestamp="t", watermark=st.bounded_out_of_orderness("1s"),
                               batch_size=700)
              .filter(pc.field("c") > 5)
              .window(st.tumbling("2s")).agg(n=st.count(), hi=st.max("v"))).collect()
    expected = sql("""SELECT (t // 2000) * 2000 AS window_start,
                      count(*) AS n, max(v) AS hi FROM data WHERE c > 5 GROUP BY 1""", data=data)
    same_rows(out, expected, ["window_start", "n", "hi"])


def _top_row(batch):
    import pyarrow.compute as pc

    i = pc.index(batch.column("v"), pc.max(batch.column("v"))).as_py()
    return batch.slice(i, 1).to_pylist()[0]


def test_reduce_folds_each_key_and_sliding_window_like_the_oracle():
    import random
    from collections import defaultdict

    rnd = random.Random(4)
    rows = [{"k": rnd.randrange(5), "v": rnd.randrange(10_000), "t": i * 10 + rnd.randrange(300)}
            for i in range(4000)]
    env = st.StreamEnv()
    got = (env.from_collection(rows, timestamp="t", batch_size=97,
                               watermark=st.bounded_out_of_orderness("300ms"))
              .key_by("k").window(st.sliding("2s", slide="500ms")).reduce(_top_row)).collect()
    want: dict = defaultdict(lambda: -1)
    for r in rows:
        for s in range((r["t"] // 500) * 500, r["t"] - 2000, -500):
            want[(r["k"], s)] = max(want[(r["k"], s)], r["v"])
    out = {(r["k"], int(r["window_start"].timestamp() * 1000)): r for r in got.to_pylist()}
    assert {k: r["v"] for k, r in out.items()} == dict(want)
    # the reduced row is a real input row of that key and window
    assert all(r["window_start"] <= r["window_end"] and (r["k"], r["v"]) in
               {(x["k"], x["v"]) for x in rows} for r in out.values())


def test_reduce_sums_like_agg_with_late_events_and_updates():
    rows = [{"k": i % 3, "v": i, "t": t} for i, t in enumerate(
        [100, 900, 1500, 300, 2500, 1200, 4000, 700, 5200, 1100, 6100, 3900])]

    def pipeline(use_reduce: bool, mode: str):
        env = st.StreamEnv()
        w = (env.from_collection(rows, timestamp="t", batch_size=1,
                                 watermark=st.bounded_out_of_orderness("500ms"))
                .key_by("k").window(st.tumbling("1s"), allowed_lateness="1s"))
        res = (w.reduce(lambda b: {"k": b.column("k")[0].as_py(), "v": pc.sum(b.column("v")).as_py(),
                                   "t": pc.max(b.column("t")).as_py()})
               if use_reduce else w.agg(v=st.sum("v"))).emit(mode)
        late = []
        res.late().to_callable(lambda b: late.extend(b.column("v").to_pylist()))
        table = res.collect()
        return [(r["k"], r["window_start"], r["v"]) for r in table.to_pylist()], sorted(late)

    for mode in ("final", "update"):
        assert pipeline(True, mode) == pipeline(False, mode)
    assert pipeline(True, "final")[1], "the data has late events"


def _sum_and_count(b):
    return {"k": b.column("k")[0].as_py(), "v": pc.sum(b.column("v")).as_py(),
            "n": pc.sum(b.column("n")).as_py(), "t": pc.min(b.column("t")).as_py()}


@pytest.mark.parametrize("spec", ["session", "count"])
@pytest.mark.parametrize("mode", ["final", "update"])
def test_reduce_on_session_and_count_windows_equals_agg(spec, mode):
    import random

    rnd = random.Random(9)
    t = 0
    rows = []
    for i in range(3000):
        t += rnd.choice([10, 20, 40, 900])  # gaps, some longer than the session gap
        rows.append({"k": rnd.randrange(4), "v": rnd.randrange(100), "n": 1,
                     "t": t - rnd.randrange(200)})  # a little out of order

    def pipeline(use_reduce: bool):
        env = st.StreamEnv()
        w = (env.from_collection(rows, timestamp="t", batch_size=61,
                                 watermark=st.bounded_out_of_orderness("100ms"))
                .key_by("k").window(st.session("500ms") if spec == "session" else st.count(25),
                                    allowed_lateness="300ms"))
        res = (w.reduce(_sum_and_count) if use_reduce else w.agg(v=st.sum("v"), n=st.count())).emit(mode)
        late = []
        if spec == "session":
            res.late().to_callable(lambda b: late.extend(b.column("v").to_pylist()))
        table = res.collect()
        out = [(r["k"], r["window_start"], r["window_end"], r["v"], r["n"]) for r in table.to_pylist()]
        return sorted(out), sorted(late)  # update mode: the same updates (order within a batch may differ)

    got, want = pipeline(True), pipeline(False)
    assert got == want
    assert len(got[0]) > 50


def test_reduce_refuses_what_it_cannot_do():
    env = st.StreamEnv()
    s = env.from_collection([{"k": 1, "v": 2, "t": 3}], timestamp="t").key_by("k")
    with pytest.raises(ConfigError, match="RecordBatch"):
        s.window(st.tumbling("1s")).reduce("max")
    bad = s.window(st.tumbling("1s")).reduce(lambda b: 5)
    with pytest.raises(ProcessingError, match="reduce function returned a int"):
        bad.collect()
