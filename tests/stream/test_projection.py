"""Projection pushdown into ``from_files`` JSON lines: a source whose every consumer selects
plain columns decodes only those and the event time; the output is the same as without it."""

from __future__ import annotations

import asyncio
import json

import pyarrow as pa
import pyarrow.compute as pc
import pytest
from sabot import stream as st
from sabot.errors import BadRecordError
from sabot.stream import file_source

ROWS = [{"t": 1000 + i, "k": i % 7, "v": i, "s": "x" * (i % 50), "u": f"url-{i}"} for i in range(3000)]


@pytest.fixture
def projected(monkeypatch):
    """The columns each job's file source was told to decode (None: all)."""
    seen: list[frozenset[str] | None] = []
    orig = file_source.FileSource.project

    def spy(self, columns):
        seen.append(columns)
        orig(self, columns)

    monkeypatch.setattr(file_source.FileSource, "project", spy)
    monkeypatch.setattr(file_source, "BLOCK_BYTES", 8 << 10)  # many blocks
    return seen


def _write(tmp_path, rows) -> str:
    (tmp_path / "a.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    return str(tmp_path / "*.jsonl")


def _full(pattern: str, *columns: str) -> list[dict]:
    return st.StreamEnv().from_files(pattern, timestamp="t").collect().select(list(columns)).to_pylist()


def test_a_select_over_the_source_decodes_only_its_columns_and_the_event_time(tmp_path, projected):
    pattern = _write(tmp_path, ROWS)
    env = st.StreamEnv()
    out = env.from_files(pattern, timestamp="t").select("k", "v").collect()
    assert projected == [frozenset({"k", "v", "t"})]
    assert out.column_names == ["k", "v"]
    assert out.to_pylist() == _full(pattern, "k", "v")


def test_a_filter_after_the_select_and_two_selects_read_the_union(tmp_path, projected):
    pattern = _write(tmp_path, ROWS)
    env = st.StreamEnv()
    src = env.from_files(pattern, timestamp="t")
    a = src.select("k", "v").filter(pc.field("k") == 3)
    b = src.select("s", renamed="u")
    got_a: list[pa.RecordBatch] = []
    got_b: list[pa.RecordBatch] = []
    a.to_callable(got_a.append)
    b.to_callable(got_b.append)
    env.execute()
    assert projected == [frozenset({"k", "v", "s", "u", "t"})]
    assert pa.Table.from_batches(got_a).to_pylist() == [
        r for r in _full(pattern, "k", "v") if r["k"] == 3]
    assert pa.Table.from_batches(got_b).to_pylist() == [
        {"s": r["s"], "renamed": r["u"]} for r in ROWS]


@pytest.mark.parametrize("consumer", ["filter", "expression", "dead_letters"])
def test_any_other_consumer_decodes_every_column(tmp_path, projected, consumer):
    pattern = _write(tmp_path, ROWS)
    env = st.StreamEnv()
    src = env.from_files(pattern, timestamp="t", bad_records="dead_letter")
    if consumer == "filter":
        out = src.filter(pc.field("k") == 3).collect()
        assert out.num_rows == sum(1 for r in ROWS if r["k"] == 3)
        assert len(out.column_names) == 5
    elif consumer == "expression":
        out = src.select(w=pc.field("v") * 2).collect()
        assert out.column("w").to_pylist() == [2 * r["v"] for r in ROWS]
    else:
        src.select("k").to_callable(lambda b: None)
        src.dead_letters().to_callable(lambda b: None)
        env.execute()
    assert projected == [None]


@pytest.mark.parametrize("sample", [256, file_source.SAMPLE_BYTES])
def test_a_block_that_does_not_fit_the_first_records_types_is_decoded_whole(
        tmp_path, projected, monkeypatch, sample):
    # v is an integer in the first records (the sample the types come from), then a real
    # number (in the first block, and in a later one), then missing
    monkeypatch.setattr(file_source, "SAMPLE_BYTES", sample)
    rows = [dict(r) for r in ROWS]
    rows[20]["v"] = 1.5
    rows[2000]["v"] = 2.5
    del rows[2500]["v"]
    pattern = _write(tmp_path, rows)
    out = st.StreamEnv().from_files(pattern, timestamp="t").select("k", "v").collect()
    assert projected[0] == frozenset({"k", "v", "t"})
    assert out.to_pylist() == [{"k": r["k"], "v": r.get("v")} for r in rows]
    full = st.StreamEnv().from_files(pattern, timestamp="t").collect()  # no projection
    assert projected[1] is None
    assert out.schema == full.select(["k", "v"]).schema
    assert [type(v) for v in out.column("v").to_pylist()] == [
        type(v) for v in full.column("v").to_pylist()]


def test_a_given_schema_gives_the_columns_types(tmp_path, projected):
    pattern = _write(tmp_path, ROWS)
    schema = pa.schema([("t", pa.int64()), ("k", pa.int32()), ("v", pa.int64()), ("s", pa.string())])
    out = st.StreamEnv().from_files(pattern, timestamp="t", schema=schema).select("k").collect()
    assert projected == [frozenset({"k", "t"})]
    assert out.schema.field("k").type == pa.int32()
    assert out.column("k").to_pylist() == [r["k"] for r in ROWS]


def test_a_bad_line_fails_the_job_as_without_a_projection(tmp_path, projected):
    (tmp_path / "a.jsonl").write_text("".join(json.dumps(r) + "\n" for r in ROWS[:1500])
                                      + "{not json\n"
                                      + "".join(json.dumps(r) + "\n" for r in ROWS[1500:]))
    pattern = str(tmp_path / "*.jsonl")
    with pytest.raises(BadRecordError, match="not JSON"):
        st.StreamEnv().from_files(pattern, timestamp="t").select("v").collect()
    assert projected == [frozenset({"v", "t"})]
    env = st.StreamEnv()
    src = env.from_files(pattern, timestamp="t", bad_records="dead_letter")
    got: list[pa.RecordBatch] = []
    src.select("v").to_callable(got.append)
    dead: list[pa.RecordBatch] = []
    src.dead_letters().to_callable(dead.append)
    env.execute()
    assert pa.Table.from_batches(got).column("v").to_pylist() == [r["v"] for r in ROWS]
    assert pa.Table.from_batches(dead).column("record").to_pylist() == ["{not json"]


def test_a_position_taken_while_the_next_block_is_read_ahead_resumes_at_the_next_record(
        tmp_path, monkeypatch):
    """The block read ahead is not in the position: from the position after any item, a new
    source reads exactly the records after it (projected or not)."""
    monkeypatch.setattr(file_source, "BLOCK_BYTES", 4 << 10)
    pattern = _write(tmp_path, ROWS[:600])
    (tmp_path / "b.jsonl").write_text("".join(json.dumps(r) + "\n" for r in ROWS[600:900]))

    def source(columns):
        src = file_source.FileSource(pattern, "jsonl", False, None, 100, 25)
        src.project(columns)
        return src

    async def cut(columns, n):
        src, got = source(columns), []
        it = src.read()
        for _ in range(n):
            got.extend((await it.__anext__())[1].column("v").to_pylist())
        ahead = src._ahead is not None
        pos = src.position()
        await it.aclose()
        again = source(columns)
        again.seek(pos)
        rest = [v for _, b in [x async for x in again.read()] for v in b.column("v").to_pylist()]
        return got, rest, ahead


    for columns in (None, frozenset({"v", "t"})):
        aheads = 0
        for n in range(1, 36):
            got, rest, ahead = asyncio.run(cut(columns, n))
            aheads += ahead
            assert got + rest == list(range(900)), (columns, n)
        assert aheads > 20  # most cuts were taken with a block read ahead
