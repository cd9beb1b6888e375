"""Files (bounded and followed while another process writes), a TCP socket fed by a real client
process, file sinks, and flat memory with backpressure on an endless source."""

from __future__ import annotations

import asyncio
import json
import os
import socket
import subprocess
import sys
import textwrap

import numpy as np
import psutil
import pyarrow as pa
import pyarrow.csv as pacsv
import pyarrow.parquet as pq
import pytest
from sabot import stream as st

ROWS = [{"k": i % 4, "v": i, "t": 100 * i} for i in range(500)]


def _sums(table: pa.Table) -> dict[int, int]:
    out: dict[int, int] = {}
    for k, s in zip(table.column("k").to_pylist(), table.column("s").to_pylist()):
        out[k] = out.get(k, 0) + s
    return out


def _write(dir_, fmt: str) -> None:
    table = pa.Table.from_pylist(ROWS)
    for i in range(3):
        part = table.slice(i * 200, 200)
        path = os.path.join(dir_, f"in-{i}.{fmt}")
        if fmt == "jsonl":
            with open(path, "w") as f:
                f.writelines(json.dumps(r) + "\n" for r in part.to_pylist())
        elif fmt == "csv":
            pacsv.write_csv(part, path)
        else:
            pq.write_table(part, path)


@pytest.mark.parametrize("fmt", ["jsonl", "csv", "parquet"])
def test_from_files_reads_every_format(tmp_path, fmt):
    _write(tmp_path, fmt)
    env = st.StreamEnv()
    out = (env.from_files(str(tmp_path / f"*.{fmt}"), format=fmt, timestamp="t")
              .key_by("k").window(st.tumbling("5s")).agg(s=st.sum("v"))).collect()
    expected: dict[int, int] = {}
    for r in ROWS:
        expected[r["k"]] = expected.get(r["k"], 0) + r["v"]
    assert _sums(out) == expected


WRITER = textwrap.dedent("""
    import json, sys, time
    d, n = sys.argv[1], int(sys.argv[2])
    for f in range(3):
        with open(f"{d}/log-{f}.jsonl", "a") as out:
            for i in range(n):
                out.write(json.dumps({"f": f, "i": i, "t": (f * n + i) * 10}) + "\\n")
                if i % 50 == 0:
                    out.flush()
                    time.sleep(0.02)
""")


def test_a_json_lines_file_larger_than_a_block_is_read_in_blocks(tmp_path, monkeypatch):
    """The file is read a block at a time (memory bounded by the block, not the file), every
    line once and in order, also a line longer than the block and a last line without a
    newline; a checkpoint in the middle of a block resumes there."""
    from sabot.stream import file_source

    monkeypatch.setattr(file_source, "BLOCK_BYTES", 2048)
    rows = [{"i": i, "t": i, "s": "x" * (5000 if i == 700 else i % 13)} for i in range(3000)]
    text = "".join(json.dumps(r) + "\n" for r in rows).rstrip("\n")  # no final newline
    (tmp_path / "big.jsonl").write_text(text)
    reads = []
    real = file_source.FileSource._jsonl

    def spy(self, path, size):
        items = real(self, path, size)
        reads.append(self._offsets.get(path))
        return items

    monkeypatch.setattr(file_source.FileSource, "_jsonl", spy)
    env = st.StreamEnv()
    got = env.from_files(str(tmp_path / "*.jsonl"), timestamp="t", batch_size=100).collect()
    assert got.column("i").to_pylist() == list(range(3000))
    assert got.column("s").to_pylist()[700] == "x" * 5000
    assert len(reads) > 20 and reads[-1] == len(text.encode())
    # a position part way through a block: the rest of it, then the rest of the file
    src = file_source.FileSource(str(tmp_path / "*.jsonl"), "jsonl", False, None, 100, 10)

    async def first_items(n):
        out, it = [], src.read()
        for _ in range(n):
            out.append(await it.__anext__())
        await it.aclose()
        return out

    asyncio.run(first_items(5))
    pos = src.position()
    assert pos["cursor"] is not None  # inside a block
    again = file_source.FileSource(str(tmp_path / "*.jsonl"), "jsonl", False, None, 100, 10)
    again.seek(pos)

    async def rest():
        return [b async for _, b in again.read()]

    seen_before = sum(b.num_rows for _, b in asyncio.run(_items(str(tmp_path / "*.jsonl"), 5)))
    after = [i for b in asyncio.run(rest()) for i in b.column("i").to_pylist()]
    assert after == list(range(seen_before, 3000))


async def _items(pattern: str, n: int):
    from sabot.stream.file_source import FileSource

    out, it = [], FileSource(pattern, "jsonl", False, None, 100, 10).read()
    for _ in range(n):
        out.append(await it.__anext__())
    await it.aclose()
    return out


def test_follow_picks_up_files_and_lines_another_process_writes(tmp_path):
    n = 300
    writer = subprocess.Popen([sys.executable, "-c", WRITER, str(tmp_path), str(n)])

    async def consume() -> list[tuple[int, int]]:
        env = st.StreamEnv()
        seen: list[tuple[int, int]] = []
        stream = env.from_files(str(tmp_path / "*.jsonl"), follow=True, timestamp="t", poll="20ms")
        async with stream.collect() as batches:
            async for b in batches:
                seen.extend(zip(b.column("f").to_pylist(), b.column("i").to_pylist()))
                if len(seen) >= 3 * n:
                    break
        return seen

    try:
        seen = asyncio.run(asyncio.wait_for(consume(), 60))
    finally:
        writer.wait(30)
    assert sorted(seen) == [(f, i) for f in range(3) for i in range(n)]  # each line exactly once


CLIENT = textwrap.dedent("""
    import json, socket, sys, time
    port, n = int(sys.argv[1]), int(sys.argv[2])
    for attempt in range(200):
        try:
            s = socket.create_connection(("127.0.0.1", port))
            break
        except OSError:
            time.sleep(0.05)
    for i in range(n):
        s.sendall((json.dumps({"k": i % 3, "v": i, "t": i}) + "\\n").encode())
        if i == n // 2:
            s.sendall(b"this is not json\\n")
    s.close()
""")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_from_socket_reads_a_real_tcp_client(tmp_path):
    port, n = _free_port(), 1000

    async def consume() -> tuple[list[int], list[str]]:
        env = st.StreamEnv()
        src = env.from_socket("127.0.0.1", port, timestamp="t", bad_records="dead_letter")
        dead: list[str] = []
        src.dead_letters().to_callable(lambda b: dead.extend(b.column("record").to_pylist()))
        values: list[int] = []
        client = subprocess.Popen([sys.executable, "-c", CLIENT, str(port), str(n)])
        try:
            async with src.collect() as batches:
                async for b in batches:
                    values.extend(b.column("v").to_pylist())
                    if len(values) >= n:
                        break
        finally:
            client.wait(30)
        return values, dead

    values, dead = asyncio.run(asyncio.wait_for(consume(), 60))
    assert sorted(values) == list(range(n))
    assert dead == ["this is not json"]


@pytest.mark.parametrize("fmt", ["parquet", "jsonl"])
def test_to_files_rolls_and_writes_every_row(tmp_path, fmt):
    env = st.StreamEnv()
    env.from_collection(ROWS, timestamp="t", batch_size=60).to_files(str(tmp_path), format=fmt,
                                                                     roll_every=200)
    env.execute()
    files = sorted(p for p in os.listdir(tmp_path) if p.startswith("part-"))
    assert len(files) == 3 and not [p for p in os.listdir(tmp_path) if p.endswith(".inprogress")]
    if fmt == "parquet":
        got = pa.concat_tables([pq.read_table(tmp_path / f) for f in files]).to_pylist()
    else:
        got = [json.loads(line) for f in files for line in (tmp_path / f).read_text().splitlines()]
    assert sorted(r["v"] for r in got) == [r["v"] for r in ROWS]


def test_an_endless_source_at_a_steady_key_count_holds_memory_flat():
    """5M events (120 MB of columns) through a keyed window: RSS must not grow with them."""
    batches, rows = 500, 10_000
    proc = psutil.Process()
    rss: dict[int, int] = {}
    produced = consumed = 0
    ahead: list[int] = []
    rng = np.random.default_rng(0)
    keys = rng.integers(0, 1000, rows)

    async def endless():
        nonlocal produced
        for i in range(batches):
            if i in (100, batches - 1):
                rss[i] = proc.memory_info().rss
            ahead.append(produced - consumed)
            produced += rows
            yield pa.RecordBatch.from_arrays(
                [pa.array(keys), pa.array(np.full(rows, i)), pa.array(i * 1000 + np.arange(rows) // 10)],
                names=["k", "v", "t"])


    env = st.StreamEnv()
    s = env.from_collection(endless(), timestamp="t", watermark=st.bounded_out_of_orderness("1s"))
    s.to_callable(lambda b: None)
    seen = [0]

    def track(b: pa.RecordBatch) -> None:
        nonlocal consumed
        consumed += b.num_rows
        seen[0] += b.num_rows

    s.map(lambda b: b, name="probe").to_callable(track)
    s.key_by("k").window(st.tumbling("1s")).agg(n=st.count(), s=st.sum("v")).discard()
    env.execute("endless")
    growth_mb = (rss[batches - 1] - rss[100]) / 2**20
    data_mb = (batches - 100) * rows * 24 / 2**20
    print(f"RSS growth over {data_mb:.0f} MB of events: {growth_mb:.1f} MB")
    assert growth_mb < 16, f"RSS grew {growth_mb:.1f} MB over {data_mb:.0f} MB of events"
    # backpressure: the source is never more than a few batches ahead of the pipeline
    assert max(ahead) <= 8 * rows
    assert seen[0] == batches * rows
