"""from_collection's inputs and time columns, the stateless operators, sinks and the job API."""

from __future__ import annotations

import asyncio
import datetime as dt

import pyarrow as pa
import pyarrow.compute as pc
import pytest
from sabot import stream as st
from sabot.errors import BadRecordError, ConfigError, ProcessingError

ROWS = [{"user": f"u{i % 3}", "amount": i, "ts": 1_000 * i} for i in range(20)]


def _per_window(table: pa.Table) -> dict[tuple[str, int], int]:
    starts = table.column("window_start").cast(pa.int64()).to_pylist()
    return dict(zip(zip(table.column("user").to_pylist(), starts), table.column("total").to_pylist()))


def _windows(source: st.DataStream) -> dict[tuple[str, int], int]:
    out = source.key_by("user").window(st.tumbling("5s")).agg(total=st.sum("amount")).collect()
    return _per_window(out)


EXPECTED = {}
for r in ROWS:
    key = (r["user"], r["ts"] // 5000 * 5000)
    EXPECTED[key] = EXPECTED.get(key, 0) + r["amount"]


def test_every_form_of_collection_gives_the_same_windows():
    table = pa.Table.from_pylist(ROWS)

    def gen():
        yield from ROWS

    async def agen():
        for b in table.to_batches(max_chunksize=6):
            await asyncio.sleep(0)
            yield b

    forms = [ROWS, table, table.to_batches(max_chunksize=7), gen(), agen(),
             (b for b in table.to_batches(max_chunksize=3))]
    for data in forms:
        env = st.StreamEnv()
        assert _windows(env.from_collection(data, timestamp="ts", batch_size=4)) == EXPECTED, type(data)


@pytest.mark.parametrize("make, kwargs", [
    (lambda ms: ms, {}),                                                    # ints: epoch ms
    (lambda ms: ms // 1000, {"timestamp_unit": "s"}),
    (lambda ms: ms * 1000, {"timestamp_unit": "us"}),
    (lambda ms: dt.datetime(1970, 1, 1) + dt.timedelta(milliseconds=ms), {}),  # Arrow timestamps
    (lambda ms: (dt.datetime(1970, 1, 1) + dt.timedelta(milliseconds=ms)).isoformat() + "Z", {}),
    (lambda ms: (dt.datetime(1970, 1, 1) + dt.timedelta(milliseconds=ms)).isoformat(sep=" "), {}),
    (lambda ms: (dt.datetime(1970, 1, 1, 2) + dt.timedelta(milliseconds=ms)).isoformat() + "+02:00", {}),
])
def test_time_columns_of_every_kind(make, kwargs):
    rows = [dict(r, ts=make(r["ts"])) for r in ROWS]
    env = st.StreamEnv()
    assert _windows(env.from_collection(rows, timestamp="ts", **kwargs)) == EXPECTED


def test_filter_select_map_flat_map_run_in_order():
    env = st.StreamEnv(parallelism=2)
    s = env.from_collection(ROWS, timestamp="ts", batch_size=6)
    out = (s.filter(pc.bit_wise_and(pc.field("amount"), 1) == 0)
            .select("user", "ts", double=pc.field("amount") * 2)
            .map(lambda b: b.append_column("one", pa.array([1] * b.num_rows)))
            .flat_map(lambda b: [b, b.slice(0, 1)])).collect()
    evens = [r for r in ROWS if r["amount"] % 2 == 0]
    assert out.num_rows == len(evens) + 4  # 4 batches after the filter, each repeats its first row
    assert sorted(set(out.column("double").to_pylist())) == sorted(2 * r["amount"] for r in evens)
    assert set(out.column_names) == {"user", "ts", "double", "one"}


def test_a_failing_udf_names_its_operator_and_the_input():
    env = st.StreamEnv()

    def explode(batch):
        raise ZeroDivisionError("boom")

    with pytest.raises(ProcessingError, match=r"map\(explode\).*boom") as info:
        env.from_collection(ROWS, timestamp="ts").map(explode).collect()
    assert "'user': 'u0'" in str(info.value)  # the input's first row


def test_sinks_and_execute():
    env = st.StreamEnv()
    seen = []
    s = env.from_collection(ROWS, timestamp="ts", batch_size=5)
    s.to_callable(lambda b: seen.append(b.num_rows))
    s.filter(pc.field("amount") > 100).discard()
    res = env.execute("sinks")
    assert sum(seen) == len(ROWS) and res.events == len(ROWS) and res.name == "sinks"


def test_execute_async_and_print(capsys):
    async def main():
        env = st.StreamEnv()
        env.from_collection(ROWS[:2], timestamp="ts").print()
        return await env.execute_async("printing")

    res = asyncio.run(main())
    assert res.events == 2
    assert "'user': 'u1'" in capsys.readouterr().out


def test_collect_inside_a_running_loop():
    async def main():
        env = st.StreamEnv()
        s = env.from_collection(ROWS, timestamp="ts")
        return s.collect().num_rows, (await env.from_collection(ROWS).collect_async()).num_rows

    assert asyncio.run(main()) == (20, 20)


def test_bad_arguments_say_what_is_accepted():
    env = st.StreamEnv()
    s = env.from_collection(ROWS, timestamp="ts")
    with pytest.raises(ConfigError, match="pyarrow.compute.Expression"):
        s.filter("amount > 3")
    with pytest.raises(ConfigError, match="5s"):
        st.tumbling("five seconds")
    with pytest.raises(ConfigError, match="final or update"):
        s.key_by("user").window(st.tumbling("1s")).agg(n=st.count()).emit("sometimes")
    with pytest.raises(ConfigError, match="st.sum"):
        s.key_by("user").window(st.tumbling("1s")).agg(n=len)
    with pytest.raises(ConfigError, match="a list of dicts"):
        env.from_collection("not data")


def test_bad_records_fail_or_go_to_dead_letters():
    rows = ROWS[:5] + [{"user": "x", "amount": 1}, {"user": "y", "amount": 2, "ts": "yesterday"},
                       {"user": "z", "amount": "lots", "ts": 9}]
    schema = pa.schema([("user", pa.string()), ("amount", pa.int64()), ("ts", pa.string())])
    str_rows = [dict(r, ts=str(r["ts"]) if "ts" in r and isinstance(r["ts"], int) else r.get("ts"))
                for r in rows]
    for r in str_rows:
        if r["ts"] is not None and r["ts"].isdigit():
            r["ts"] = (dt.datetime(1970, 1, 1) + dt.timedelta(milliseconds=int(r["ts"]))).isoformat()
    env = st.StreamEnv()
    with pytest.raises(BadRecordError, match="amount") as info:
        env.from_collection(str_rows, timestamp="ts", schema=schema).collect()
    assert isinstance(info.value, ValueError)

    env = st.StreamEnv()
    src = env.from_collection(str_rows, timestamp="ts", schema=schema, bad_records="dead_letter")
    dead: list[pa.RecordBatch] = []
    src.dead_letters().to_callable(dead.append)
    kept: list[pa.RecordBatch] = []
    src.to_callable(kept.append)
    env.execute()
    bad = pa.Table.from_batches(dead).to_pylist()
    reasons = {b["record"]: b["reason"] for b in bad}
    assert sum(b.num_rows for b in kept) == 5
    assert len(bad) == 3
    assert any("lots" in rec and "schema" in why for rec, why in reasons.items())
    assert any("yesterday" in rec and "timestamp" in why for rec, why in reasons.items())
    assert any('"x"' in rec and "timestamp" in why for rec, why in reasons.items())
