"""Checkpoints in one process: what is written, kept and read back, damaged checkpoints, a
pipeline of another shape, savepoints, stats and metrics, and the errors for bad settings.
(Crashes of a real process are in test_checkpoint_faults.py.)"""

from __future__ import annotations

import asyncio
import logging
import os
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from sabot import stream as st
from sabot.errors import CheckpointError, ConfigError
from sabot.metrics import get_metrics

ROWS = [{"k": i % 7, "v": i, "t": i * 10} for i in range(20_000)]


def _pipeline(env: st.StreamEnv, out: Path, data=ROWS, batch_size: int = 500) -> None:
    s = env.from_collection(data, timestamp="t", batch_size=batch_size)
    s.key_by("k").window(st.tumbling("2s")).agg(n=st.count(), total=st.sum("v")).to_files(str(out))


def _rows(out: Path) -> list[tuple]:
    files = sorted(f for f in os.listdir(out) if f.startswith("part-"))
    t = pa.concat_tables([pq.read_table(out / f) for f in files])
    return sorted(tuple(r.values()) for r in t.to_pylist())


@pytest.fixture(scope="module")
def reference(tmp_path_factory) -> list[tuple]:
    out = tmp_path_factory.mktemp("ref")
    env = st.StreamEnv()
    _pipeline(env, out)
    env.execute()
    return _rows(out)


def test_checkpoints_are_taken_kept_and_reported(tmp_path, reference):
    env = st.StreamEnv(checkpoint_interval="1ms", state_dir=str(tmp_path / "state"),
                       checkpoints_kept=2)
    _pipeline(env, tmp_path / "out")
    env.execute("kept")
    assert _rows(tmp_path / "out") == reference
    kept = sorted(os.listdir(tmp_path / "state" / "kept"))  # a folder per job
    assert len(kept) == 2 and all(k.startswith("chk-") for k in kept)
    stats = env.get_stats()
    ck = stats["checkpoints"]
    assert ck["count"] >= 3 and ck["last_epoch"] == int(kept[-1][4:]) and ck["last_bytes"] > 0
    assert ck["last_duration_s"] >= 0 and ck["restores"] == 0
    window = next(o for o in stats["operators"] if o["kind"] == "WindowAggregate")
    assert window["records_in"] == len(ROWS) and window["records_out"] == len(reference)
    text = get_metrics().exposition()[0].decode()
    assert 'sabot_stream_checkpoints_total{' in text and 'job="kept"' in text
    assert "sabot_stream_checkpoint_size_bytes{" in text
    assert "sabot_stream_operator_records_in_total{" in text


def test_a_finished_job_restored_adds_no_output(tmp_path, reference):
    for _ in range(2):
        env = st.StreamEnv(checkpoint_interval="5ms", state_dir=str(tmp_path / "state"))
        _pipeline(env, tmp_path / "out")
        env.execute()
    assert env.get_stats()["checkpoints"]["restores"] == 1
    assert _rows(tmp_path / "out") == reference


def test_a_damaged_checkpoint_is_skipped_with_a_warning_naming_the_file(tmp_path, reference, caplog):
    state = tmp_path / "state"
    env = st.StreamEnv(checkpoint_interval="1ms", state_dir=str(state))
    _pipeline(env, tmp_path / "out")
    env.execute()
    jobdir = state / "job"
    previous, newest = sorted(os.listdir(jobdir))[-2:]
    victim = next(p for p in sorted((jobdir / newest).iterdir()) if p.suffix == ".pickle")
    data = bytearray(victim.read_bytes())
    data[len(data) // 2] ^= 0xFF
    victim.write_bytes(bytes(data))
    # an abandoned, uncommitted checkpoint directory is no checkpoint either
    (jobdir / ".chk-99999999.tmp").mkdir()
    env = st.StreamEnv(checkpoint_interval="1ms", state_dir=str(state))
    _pipeline(env, tmp_path / "out")
    with caplog.at_level(logging.WARNING, logger="sabot.stream.checkpoint_store"):
        env.execute()
    assert str(victim) in caplog.text and "damaged" in caplog.text
    assert env.get_stats()["checkpoints"]["restored_from"] == str(jobdir / previous)
    assert _rows(tmp_path / "out") == reference
    assert not (jobdir / ".chk-99999999.tmp").exists()


def test_every_checkpoint_damaged_is_an_error_not_a_silent_fresh_start(tmp_path):
    state = tmp_path / "state"
    env = st.StreamEnv(state_dir=str(state))
    _pipeline(env, tmp_path / "out")
    env.execute()
    for chk in (state / "job").iterdir():
        (chk / "manifest.json").write_text("{")
    env = st.StreamEnv(state_dir=str(state))
    _pipeline(env, tmp_path / "out")
    with pytest.raises(CheckpointError, match="no complete checkpoint"):
        env.execute()


def test_jobs_of_other_names_keep_their_checkpoints_apart(tmp_path, reference):
    state = tmp_path / "state"
    for name in ("first", "second"):
        env = st.StreamEnv(state_dir=str(state))
        if name == "first":
            _pipeline(env, tmp_path / name)
        else:  # another pipeline on the same state_dir, under another name
            env.from_collection(ROWS, timestamp="t").to_files(str(tmp_path / name))
        env.execute(name)
    assert sorted(os.listdir(state)) == ["first", "second"]
    assert _rows(tmp_path / "first") == reference


def test_a_checkpoint_of_another_pipeline_shape_is_refused(tmp_path):
    state = tmp_path / "state"
    env = st.StreamEnv(state_dir=str(state))
    _pipeline(env, tmp_path / "out")
    env.execute()
    env = st.StreamEnv(state_dir=str(state))
    s = env.from_collection(ROWS, timestamp="t")
    s.key_by("k").window(st.sliding("2s", slide="1s")).agg(n=st.count()).to_files(str(tmp_path / "o2"))
    with pytest.raises(CheckpointError, match="another shape") as info:
        env.execute()
    assert str(state) in str(info.value) and "empty state_dir" in str(info.value)


def test_a_savepoint_restores_into_a_new_state_dir(tmp_path, reference):
    async def slow_rows():
        for i in range(0, len(ROWS), 500):
            yield pa.RecordBatch.from_pylist(ROWS[i:i + 500])
            await asyncio.sleep(0.01)

    async def run_and_savepoint() -> tuple[str, list[str]]:
        env = st.StreamEnv(state_dir=str(tmp_path / "s1"))
        _pipeline(env, tmp_path / "o1", data=slow_rows())
        job = asyncio.ensure_future(env.execute_async("sp"))
        await asyncio.sleep(0.15)
        path = await env.savepoint_async(str(tmp_path / "savepoint"))
        # no regular checkpoints: the files there now are the ones the savepoint committed
        committed = sorted(f for f in os.listdir(tmp_path / "o1") if f.startswith("part-"))
        await job
        return path, committed

    path, committed = asyncio.run(run_and_savepoint())
    assert Path(path).parent == tmp_path / "savepoint" and (Path(path) / "manifest.json").exists()
    assert committed, "the savepoint committed no output"
    assert _rows(tmp_path / "o1") == reference
    env = st.StreamEnv(state_dir=str(tmp_path / "s2"))
    _pipeline(env, tmp_path / "o2", data=slow_rows())
    env.execute("sp", restore_from=path)
    assert env.get_stats()["checkpoints"]["restored_from"] == path
    # the restored job writes what came after the savepoint: with the savepoint's output, all
    # rows once
    before = pa.concat_tables([pq.read_table(tmp_path / "o1" / f) for f in committed])
    after = _rows(tmp_path / "o2")
    assert not set(committed) & set(os.listdir(tmp_path / "o2"))
    assert sorted([tuple(r.values()) for r in before.to_pylist()] + after) == reference


def test_bad_checkpoint_settings_say_what_is_accepted(tmp_path):
    with pytest.raises(ConfigError, match="state_dir"):
        st.StreamEnv(checkpoint_interval="5s")
    with pytest.raises(ConfigError, match="positive integer"):
        st.StreamEnv(state_dir=str(tmp_path), checkpoints_kept=0)
    with pytest.raises(ConfigError, match="duration"):
        st.StreamEnv(state_dir=str(tmp_path), checkpoint_interval="soon")
    env = st.StreamEnv()
    _pipeline(env, tmp_path / "out")
    with pytest.raises(ConfigError, match="state_dir"):
        env.execute(restore_from=str(tmp_path))
    env = st.StreamEnv(state_dir=str(tmp_path / "s"))
    _pipeline(env, tmp_path / "out")
    with pytest.raises(CheckpointError, match="no such savepoint"):
        env.execute(restore_from=str(tmp_path / "nowhere"))


def test_state_that_cannot_be_saved_names_the_operator(tmp_path):
    def remember(key, batch, ctx):
        ctx.state("f").update(lambda: key)  # a lambda cannot be pickled

    env = st.StreamEnv(state_dir=str(tmp_path / "state"))
    (env.from_collection(ROWS[:100], timestamp="t").key_by("k")
        .process(remember, state={"f": st.ValueState()}).discard())
    with pytest.raises(CheckpointError, match=r"operator .process\(remember\)#.*cannot be saved.*picklable"):
        env.execute()
