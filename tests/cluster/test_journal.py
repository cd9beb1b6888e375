"""The SQLite journal: what a restarted coordinator finds, and retention."""

from __future__ import annotations

import time

import pytest
import sabot_test_nodes as nodes
from sabot.cluster import journal
from sabot.errors import ConfigError
from sabot.cluster.journal import JobRow, Journal, MorselRow


def _job(job_id: str, seq: int, morsels: int = 3) -> tuple[JobRow, list[MorselRow]]:
    row = JobRow(job_id, seq, "pending", 0, "square", None, "list", morsels, morsels * 10, None,
                 time.time(), None, None)
    return row, [MorselRow(i, i * 10, 10, "msgpack", b"in%d" % i, 0, False)
                 for i in range(morsels)]


def test_unfinished_jobs_come_back_with_the_inputs_of_undone_morsels(tmp_path):
    j = Journal(tmp_path)
    j.insert_job(*_job("a", 1))
    j.insert_job(*_job("b", 2))
    j.store_results([("msgpack", b"out0", 10, 1, 4, 0, 0, "a", 0)])
    j.set_job_state("b", "completed", finished_at=time.time())
    j.commit()
    j.close()

    j = Journal(tmp_path)
    unfinished = list(j.unfinished_jobs())
    assert [row.job_id for row, _ in unfinished] == ["a"]
    morsels = unfinished[0][1]
    assert [(mo.idx, mo.done, mo.data) for mo in morsels] == [
        (0, True, None), (1, False, b"in1"), (2, False, b"in2")]
    assert j.results("a", 0, 1 << 20) == [journal.StoredResult(0, "msgpack", 10, b"out0", 4, 0)]
    assert j.results("a", 1, 1 << 20) == []
    assert j.max_seq() == 2
    j.close()


def test_uncommitted_changes_are_not_visible_after_a_crash(tmp_path):
    """A coordinator process killed (SIGKILL) with a result stored but not committed: the
    next one finds the committed job and not the result (and can open the dir: the dead
    process's lock went with it)."""
    import signal

    child = nodes.python_child(f"""
import time
from sabot.cluster.journal import JobRow, Journal, MorselRow
row = JobRow("a", 1, "pending", 0, "square", None, "list", 3, 30, None, time.time(), None, None)
j = Journal(__import__("pathlib").Path({str(tmp_path)!r}))
j.insert_job(row, [MorselRow(i, i * 10, 10, "msgpack", b"in%d" % i, 0, False) for i in range(3)])
j.commit()
j.store_results([("msgpack", b"out0", 10, 1, 4, 0, 0, "a", 0)])
print("stored", flush=True)
time.sleep(600)
""")
    try:
        assert child.stdout.readline().strip() == "stored"
        child.send_signal(signal.SIGKILL)
        child.wait(30)
    finally:
        nodes.end_child(child, kill=True)
    other = Journal(tmp_path)
    assert other.job("a") is not None
    assert other.results("a", 0, 1 << 20) == []
    other.close()


def test_a_second_journal_on_an_open_dir_is_refused(tmp_path):
    j = Journal(tmp_path, owner="coordinator one")
    try:
        with pytest.raises(ConfigError, match="coordinator one .*holds it"):
            Journal(tmp_path)
    finally:
        j.close()
    Journal(tmp_path).close()  # closed, the dir is free


def test_an_expired_job_leaves_a_tombstone_saying_why(tmp_path):
    j = Journal(tmp_path)
    j.insert_job(*_job("old", 1))
    j.insert_job(*_job("new", 2))
    j.store_results([("msgpack", b"r" * 10, 10, 1, 10, 0, 0, "old", 0),
                     ("msgpack", None, 10, 1, 5000, 7, 1, "new", 0)])
    j.set_job_state("old", "completed", finished_at=time.time() - 100)
    j.set_job_state("new", "completed", finished_at=time.time())
    j.commit()
    assert [(job_id, n) for job_id, _, n in j.finished_result_bytes()] == [("old", 10),
                                                                            ("new", 5000)]
    j.expire([("old", "it is old")], time.time())
    j.commit()
    assert j.job("old") is None and j.job("new") is not None
    assert j.expired("old")[1] == "it is old" and j.expired("new") is None
    assert j.results("new", 0, 1 << 20) == [journal.StoredResult(0, "msgpack", 10, None, 5000,
                                                                 7)]
    j.close()


def test_a_schema_2_journal_is_migrated_and_keeps_its_results(tmp_path):
    import sqlite3

    j = Journal(tmp_path)
    j.insert_job(*_job("a", 1))
    j.store_results([("msgpack", b"out0", 10, 1, 4, 0, 0, "a", 0)])
    j.commit()
    j.close()
    db = sqlite3.connect(tmp_path / "coordinator.sqlite3")  # make it what schema 2 wrote
    for col in ("result_size", "result_crc", "result_file"):
        db.execute(f"ALTER TABLE morsels DROP COLUMN {col}")
    db.execute("DROP TABLE expired_jobs")
    db.execute("UPDATE meta SET value='2' WHERE key='schema'")
    db.commit()
    db.close()
    j = Journal(tmp_path)
    assert j.results("a", 0, 1 << 20) == [journal.StoredResult(0, "msgpack", 10, b"out0", 4, 0)]
    assert j.result_bytes("a") == 4
    j.close()


def test_a_journal_of_another_schema_is_refused(tmp_path):
    j = Journal(tmp_path)
    j._db.execute("UPDATE meta SET value='99' WHERE key='schema'")
    j.close()
    with pytest.raises(RuntimeError, match="schema 99"):
        Journal(tmp_path)


def test_the_wal_stays_bounded_while_commits_keep_coming(tmp_path, monkeypatch):
    """Passive checkpoints never rewind a WAL that is written all the time; past a size it is
    truncated, so the files do not grow with the history of jobs."""
    limit = 2 << 20
    monkeypatch.setattr(journal, "WAL_LIMIT_BYTES", limit)
    j = Journal(tmp_path)
    wal = tmp_path / "coordinator.sqlite3-wal"
    biggest = 0
    try:
        # commits one after the other (as the coordinator's turns do), far more than the limit
        for i in range(1000):
            row, morsels = _job(f"job-{i}", i + 1, morsels=2)
            j.insert_job(row, [MorselRow(mo.idx, mo.offset, mo.items, mo.encoding,
                                         b"x" * 20_000, 0, False) for mo in morsels])
            j.commit()
            j.store_results([("msgpack", b"y" * 100, 10, 1, 100, 0, 0, row.job_id, 0),
                             ("msgpack", b"y" * 100, 10, 1, 100, 0, 0, row.job_id, 1)])
            j.set_job_state(row.job_id, "completed", finished_at=time.time())
            j.commit()
            if wal.exists():
                biggest = max(biggest, wal.stat().st_size)
        assert 1000 * 2 * 20_000 > 15 * limit
        # over the limit by what the commits write while a truncation cannot run (the
        # checkpointer's own checkpoint holds it off; the next commit tries again): a few
        # commits, never the history (without the limit: ~120 MB here)
        assert biggest < 4 * limit, biggest
        # nothing lost to the truncations: every job is there, finished
        assert list(j.unfinished_jobs()) == [] and j.max_seq() == 1000
    finally:
        j.close()


def test_journal_files_are_owner_only(tmp_path):
    import os
    import stat

    old = os.umask(0o022)
    try:
        j = Journal(tmp_path)
        j.insert_job(*_job("a", 1))
        j.commit()
        files = sorted(p.name for p in tmp_path.iterdir())
        assert "coordinator.sqlite3-wal" in files and "coordinator.sqlite3-shm" in files
        for p in tmp_path.iterdir():
            assert stat.S_IMODE(p.stat().st_mode) == 0o600, (p.name, oct(p.stat().st_mode))
        j.close()
        # A journal left world-readable by an older version is tightened when opened.
        (tmp_path / "coordinator.sqlite3").chmod(0o644)
        Journal(tmp_path).close()
        assert stat.S_IMODE((tmp_path / "coordinator.sqlite3").stat().st_mode) == 0o600
    finally:
        os.umask(old)


def _journal_with_a_job(path):
    j = Journal(path)
    j.insert_job(*_job("a", 1, morsels=200))
    j.commit()
    j.close()


@pytest.mark.parametrize("damage", ["emptied", "deleted", "garbage-mid-file", "garbage-header"])
def test_a_damaged_journal_is_refused_naming_the_file(tmp_path, damage):
    """Damage is never a silent empty start: emptied or deleted (the marker shows there was
    one), garbage in the middle (quick_check) or in the header: a JournalError naming the file
    and what to do."""
    from sabot.errors import JournalError

    _journal_with_a_job(tmp_path)
    db = tmp_path / "coordinator.sqlite3"
    if damage == "emptied":
        db.write_bytes(b"")
    elif damage == "deleted":
        db.unlink()
    else:
        data = bytearray(db.read_bytes())
        at = 0 if damage == "garbage-header" else len(data) // 2
        data[at:at + 8192] = b"\xa5" * 8192
        db.write_bytes(bytes(data))
    with pytest.raises(JournalError) as err:
        Journal(tmp_path)
    text = str(err.value)
    assert str(db) in text and "SABOT_DATA_DIR" in text and "backup" in text
    # Refused, the dir is not locked by the failed attempt, and nothing was rewritten.
    with pytest.raises(JournalError):
        Journal(tmp_path)


def test_a_fresh_dir_and_an_old_journal_without_a_marker_open(tmp_path):
    _journal_with_a_job(tmp_path)
    (tmp_path / journal.MARKER_NAME).unlink()  # as an older Sabot left it
    j = Journal(tmp_path)
    assert j.job("a") is not None
    j.close()
    assert (tmp_path / journal.MARKER_NAME).exists()
