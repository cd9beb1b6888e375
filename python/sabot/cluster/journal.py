"""The coordinator's durable journal: jobs, morsels and results in SQLite (WAL) under
SABOT_DATA_DIR.

The coordinator's core thread is the only user of the connection. It makes a whole batch of
changes (submits, results, state changes) and calls :meth:`Journal.commit` once before it sends
any reply that depends on them, so a submit is durable before it is acknowledged and a result
is stored before its job is reported complete, without a commit per morsel. The changes wait in
memory until that commit writes them in one transaction (reads see what is written only).

A write that fails (``database or disk is full``, an I/O error) loses nothing: the transaction
is rolled back, the changes stay pending and the journal is *unwritable*
(:class:`~sabot.states.JournalState`) until :meth:`Journal.retry` writes them; the coordinator
keeps serving from memory meanwhile, refuses new submits (a submit whose own insert did not fit
is taken back with :meth:`Journal.drop_insert`) and retries on a timer and on each submit. With
``SABOT_JOURNAL_SYNC=normal`` a commit survives a process crash (WAL, synchronous=NORMAL); with
``full`` it also survives power loss (synchronous=FULL).
"""

from __future__ import annotations

import contextlib
import logging
import os
import sqlite3
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..errors import ConfigError, JournalError
from ..states import ACTIVE_JOB_STATES, JobState, JournalState, check_journal_transition
from .data_dir_lock import DataDirLock

#: A file beside the database that says this dir holds a journal: a database found missing or
#: empty next to it was lost, not never made.
MARKER_NAME = "coordinator.journal"
#: 2: jobs.digest (a submit's content, for idempotent resubmits). 3: results may live in files
#: beside the journal (morsels.result_size, result_crc, result_file) and expired jobs leave a
#: tombstone (expired_jobs). An older journal is migrated when opened.
SCHEMA_VERSION = 3
#: Tombstones of expired jobs kept (the newest), so that asking for one answers "expired".
TOMBSTONES_KEPT = 100_000
#: While the journal cannot be written, the pending changes are tried again this often
#: (seconds), and a submit tries them again when the last try is at least this old.
RETRY_S = 1.0
RETRY_ON_SUBMIT_S = 0.1
#: After a submit was refused for want of space, the journal is writable again only once the
#: disk has twice that submit's size free (its WAL frames, then their checkpoint into the
#: database file), but never more than this share of the disk.
ROOM_SHARE_OF_DISK = 0.1
#: Least time between two WAL checkpoints.
_CHECKPOINT_EVERY_S = 0.2
#: WAL frames (pages) past which the checkpointer also rewinds and truncates the WAL file.
#: Passive checkpoints copy the WAL into the database but never rewind it while commits keep
#: coming, so without this the file grew with the history of jobs (13-45 MB over a soak of
#: small jobs) instead of staying bounded by what the retention keeps.
_TRUNCATE_WAL_FRAMES = 1024
#: A WAL file bigger than this after a commit is truncated by the committing thread itself
#: (it waits for that): the hard bound when commits come too fast for the checkpointer.
WAL_LIMIT_BYTES = 64 << 20

log = logging.getLogger(__name__)

_SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS jobs (
    job_id TEXT PRIMARY KEY,
    seq INTEGER NOT NULL,
    status TEXT NOT NULL,
    priority INTEGER NOT NULL,
    func_name TEXT NOT NULL,
    func_pickle BLOB,
    result_kind TEXT NOT NULL,
    total_morsels INTEGER NOT NULL,
    total_items INTEGER NOT NULL,
    error TEXT,
    created_at REAL NOT NULL,
    started_at REAL,
    finished_at REAL,
    digest TEXT
);
CREATE INDEX IF NOT EXISTS jobs_finished ON jobs (finished_at);
CREATE TABLE IF NOT EXISTS morsels (
    job_id TEXT NOT NULL,
    idx INTEGER NOT NULL,
    offset INTEGER NOT NULL,
    items INTEGER NOT NULL,
    encoding TEXT NOT NULL,
    data BLOB,
    attempts INTEGER NOT NULL DEFAULT 0,
    done INTEGER NOT NULL DEFAULT 0,
    result_encoding TEXT,
    result BLOB,
    result_items INTEGER,
    result_size INTEGER,
    result_crc INTEGER,
    result_file INTEGER NOT NULL DEFAULT 0,
    PRIMARY KEY (job_id, idx)
);
CREATE TABLE IF NOT EXISTS expired_jobs (
    job_id TEXT PRIMARY KEY,
    expired_at REAL NOT NULL,
    reason TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS expired_at ON expired_jobs (expired_at);
"""

#: Columns each migration adds, from the schema it starts at.
_MIGRATIONS = {
    1: ("ALTER TABLE jobs ADD COLUMN digest TEXT",),
    2: ("ALTER TABLE morsels ADD COLUMN result_size INTEGER",
        "ALTER TABLE morsels ADD COLUMN result_crc INTEGER",
        "ALTER TABLE morsels ADD COLUMN result_file INTEGER NOT NULL DEFAULT 0"),
}


@dataclass
class JobRow:
    job_id: str
    seq: int
    status: JobState
    priority: int
    func_name: str
    func_pickle: bytes | None
    result_kind: str
    total_morsels: int
    total_items: int
    error: str | None
    created_at: float
    started_at: float | None
    finished_at: float | None
    #: What the submit held (:func:`~sabot.cluster.protocol.payload.submit_digest`); None for
    #: jobs of a schema-1 journal.
    digest: str | None = None


@dataclass
class MorselRow:
    idx: int
    offset: int
    items: int
    encoding: str
    data: bytes | None
    attempts: int
    done: bool


@dataclass(frozen=True, slots=True)
class StoredResult:
    """A done morsel's result as the journal holds it: its bytes (``data``), or None when they
    are in its result file (``size`` bytes, CRC-32 ``crc``)."""

    idx: int
    encoding: str
    items: int
    data: bytes | None
    size: int
    crc: int


def _job_row(row: tuple[Any, ...]) -> JobRow:
    """A row of ``SELECT * FROM jobs`` (its status parsed: a bad name is an error, not data)."""
    return JobRow(row[0], row[1], JobState(row[2]), *row[3:])


class Journal:
    """SQLite journal at ``<data_dir>/coordinator.sqlite3``."""

    def __init__(self, data_dir: Path, sync: str = "normal", *,
                 owner: str = "a coordinator") -> None:
        """``owner`` names this coordinator in the message a second one on the same data dir
        gets (the journal is locked while open: see data_dir_lock.py)."""
        try:
            data_dir.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise ConfigError("SABOT_DATA_DIR", str(data_dir),
                              f"a directory Sabot can create and write ({exc.strerror})") from exc
        self._lock = DataDirLock(data_dir)
        self._lock.acquire(owner)
        try:
            self._open(data_dir, sync)
        except BaseException:
            self._lock.release()
            raise

    def _open(self, data_dir: Path, sync: str) -> None:
        self.path = data_dir / "coordinator.sqlite3"
        self._wal = data_dir / "coordinator.sqlite3-wal"
        marker = data_dir / MARKER_NAME
        had_journal = marker.exists()
        if had_journal and (not self.path.exists() or self.path.stat().st_size == 0):
            # The dir held a journal (its marker says so) and the database is gone or empty:
            # starting afresh would answer 404 for every acknowledged job.
            raise JournalError(
                f"journal {self.path} is {'missing' if not self.path.exists() else 'empty'}, but "
                f"{marker} shows this data dir held a journal: its jobs and results are lost. "
                f"Restore the file from a backup; or, to start with no jobs, remove {marker} "
                "(or point SABOT_DATA_DIR at a new directory)")
        # Owner-only: the journal holds every job's input and results (and pickled functions).
        # SQLite creates the -wal and -shm files with the database file's mode, so creating
        # (or tightening) that one first covers all three.
        os.close(os.open(self.path, os.O_RDWR | os.O_CREAT, 0o600))
        for f in (self.path, self._wal, data_dir / "coordinator.sqlite3-shm"):
            with contextlib.suppress(FileNotFoundError):
                if f.stat().st_mode & 0o077:
                    f.chmod(0o600)
        # check_same_thread=False: opened by the thread that starts the coordinator, then used
        # by its core thread alone.
        self._db = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False)
        try:
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute(f"PRAGMA synchronous={'FULL' if sync == 'full' else 'NORMAL'}")
            self._db.execute("PRAGMA foreign_keys=OFF")
            # Freed pages (a finished job's input) are zeroed only where that costs no extra
            # write: builds with SQLITE_SECURE_DELETE (Debian's) otherwise write every freed
            # page again, doubling the WAL a job costs (and what a nearly full disk must hold).
            self._db.execute("PRAGMA secure_delete=FAST")
            problems = [r[0] for r in self._db.execute("PRAGMA quick_check(5)")]
            if problems != ["ok"]:
                raise sqlite3.DatabaseError("; ".join(problems))
            self._db.executescript(_SCHEMA)
        except sqlite3.DatabaseError as exc:
            self._db.close()
            raise JournalError(
                f"journal {self.path} is damaged ({exc}): the coordinator cannot trust the jobs "
                "it holds. Restore it from a backup (with its -wal file), or move it aside to "
                f"start with no jobs (and remove {marker}), or point SABOT_DATA_DIR at a new "
                "directory") from None
        if not had_journal:
            fd = os.open(marker, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
            with os.fdopen(fd, "w") as f:
                f.write("this data dir holds a Sabot coordinator journal (coordinator.sqlite3); "
                        "see docs/reliability.md\n")
        row = self._db.execute("SELECT value FROM meta WHERE key='schema'").fetchone()
        if row is None:
            self._db.execute("INSERT INTO meta VALUES ('schema', ?)", (str(SCHEMA_VERSION),))
        elif int(row[0]) in _MIGRATIONS:
            # Schema 1 had no digest: its jobs keep None (a resubmit of one is not compared).
            # Schema 2 held every result in its row (result_file 0; its size is its length).
            self._db.execute("BEGIN")
            for version in range(int(row[0]), SCHEMA_VERSION):
                for sql in _MIGRATIONS[version]:
                    self._db.execute(sql)
            self._db.execute("UPDATE meta SET value=? WHERE key='schema'",
                             (str(SCHEMA_VERSION),))
            self._db.execute("COMMIT")
        elif int(row[0]) != SCHEMA_VERSION:
            self._db.close()
            raise RuntimeError(
                f"journal {self.path} has schema {row[0]}, this Sabot writes {SCHEMA_VERSION}: "
                "point SABOT_DATA_DIR at another directory or remove the file")
        self._data_dir = data_dir
        #: Changes not written yet: (sql, parameters, executemany?, job id of an insert).
        self._ops: list[tuple[str, Any, bool, str | None]] = []
        self._unwritten: set[str] = set()  # jobs with changes among them
        self._inserts: set[str] = set()  # jobs whose insert is among them
        self.state = JournalState.WRITABLE
        #: Why the journal cannot be written (None while it can): the error, the file, the
        #: data dir and its free space.
        self.problem: str | None = None
        self.unwritable_since: float | None = None  # UNIX time
        self._room_needed = 0
        self._last_try = 0.0
        # Checkpoints (copying the WAL into the database file, with an fsync under
        # synchronous=NORMAL) run on a thread of their own, so the core thread's commits only
        # append to the WAL; they cost it most of the time a big job's journal took.
        self._db.execute("PRAGMA wal_autocheckpoint=0")
        self._checkpointer = _Checkpointer(self.path)

    # -- transactions -----------------------------------------------------------------------
    def commit(self) -> bool:
        """Write the changes made since the last commit, in one transaction. True once they
        are written (or there were none). False when the journal cannot be written: they stay
        pending, nothing is lost, and only :meth:`retry` writes again."""
        if self.state is JournalState.UNWRITABLE:
            return False
        return self._write()

    def _write(self) -> bool:
        ops = self._ops
        if not ops:
            return True
        db = self._db
        try:
            db.execute("BEGIN")
            for sql, params, many, _ in ops:
                if many:
                    db.executemany(sql, params)
                else:
                    db.execute(sql, params)
            db.execute("COMMIT")
        except sqlite3.Error as exc:
            # (a full disk may have rolled it back already)
            if db.in_transaction:
                with contextlib.suppress(sqlite3.Error):
                    db.execute("ROLLBACK")
            self._cannot_write(exc)
            return False
        self._ops = []
        self._unwritten.clear()
        self._inserts.clear()
        try:
            wal_bytes = self._wal.stat().st_size
        except OSError:
            wal_bytes = 0
        if wal_bytes > WAL_LIMIT_BYTES:
            # (busy while the checkpointer's own checkpoint runs: the next commit retries; on
            # a full disk it fails and the WAL stays as it is)
            try:
                db.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchone()
            except sqlite3.Error as exc:
                log.debug("journal checkpoint failed: %s", exc)
        self._checkpointer.poke()
        return True

    def _move(self, new: JournalState) -> None:
        """The one place the journal's state changes."""
        check_journal_transition(self.state, new)
        self.state = new
        if new is JournalState.WRITABLE:
            log.warning("the journal %s can be written again after %.1f s: submits are accepted "
                        "again", self.path, time.time() - (self.unwritable_since or time.time()))
            self.problem = None
            self.unwritable_since = None
        else:
            self.unwritable_since = time.time()
            log.error("the journal cannot be written: %s. New submits are refused (HTTP 507, "
                      "journal_unwritable) until it can; jobs, results and states are kept in "
                      "memory and written then (retried every %g s)", self.problem, RETRY_S)

    def _cannot_write(self, exc: sqlite3.Error) -> None:
        free, total = self.disk_space()
        self.problem = (f"{exc}: journal {self.path} under SABOT_DATA_DIR={self._data_dir} "
                        f"({_mb(free)} free of {_mb(total)})")
        if self.state is JournalState.WRITABLE:
            self._move(JournalState.UNWRITABLE)

    def retry_due(self, now: float, *, soon: bool = False) -> bool:
        """Whether an unwritable journal is due for another try (``now``: monotonic)."""
        return self.state is JournalState.UNWRITABLE and \
            now - self._last_try >= (RETRY_ON_SUBMIT_S if soon else RETRY_S)

    def retry(self) -> bool:
        """Write the pending changes of an unwritable journal, with a small write of its own so
        that a try with nothing pending proves the disk takes writes again. After a submit was
        refused for want of room, nothing is tried until the disk has that room (so the
        journal does not flap between writable and not while the disk stays as full). True,
        and writable again, once everything is written."""
        self._last_try = time.monotonic()
        free, total = self.disk_space()
        if free < self._room_needed:
            self.problem = (f"a submit did not fit: journal {self.path} under SABOT_DATA_DIR="
                            f"{self._data_dir} has {_mb(free)} free of {_mb(total)}, "
                            f"{_mb(self._room_needed)} needed to accept submits again")
            return False
        probe = ("INSERT OR REPLACE INTO meta VALUES ('last_write', ?)", (str(time.time()),),
                 False, None)
        self._ops.append(probe)
        if not self._write():
            with contextlib.suppress(ValueError):
                self._ops.remove(probe)
            return False
        self._room_needed = 0
        if self.state is JournalState.UNWRITABLE:
            self._move(JournalState.WRITABLE)
        return True

    def insert_pending(self, job_id: str) -> bool:
        """Whether ``job_id``'s insert is still waiting to be written."""
        return job_id in self._inserts

    def unwritten(self, job_id: str) -> bool:
        """Whether changes to ``job_id`` wait to be written (its reads would miss them)."""
        return job_id in self._unwritten

    def drop_insert(self, job_id: str) -> None:
        """Take back a submit whose insert could not be written (it is refused, never
        acknowledged); the disk must have room for it before the journal is writable again."""
        if job_id not in self._inserts:
            return
        self._inserts.discard(job_id)
        size = sum(_row_bytes(op[1]) for op in self._ops if op[3] == job_id)
        self._ops = [op for op in self._ops if op[3] != job_id]
        _, total = self.disk_space()
        self._room_needed = max(self._room_needed,
                                int(min(2 * size, ROOM_SHARE_OF_DISK * total)))

    def disk_space(self) -> tuple[int, int]:
        """(bytes free to this process, bytes in all) of the file system under the data dir."""
        try:
            st = os.statvfs(self._data_dir)
        except OSError:
            return 0, 0
        return st.f_bavail * st.f_frsize, st.f_blocks * st.f_frsize

    def status(self) -> dict[str, Any]:
        """The journal's state for /stats."""
        free, total = self.disk_space()
        return {"path": str(self.path), "state": self.state.value, "problem": self.problem,
                "unwritable_since": self.unwritable_since, "changes_pending": len(self._ops),
                "disk_free_bytes": free, "disk_total_bytes": total}

    def close(self) -> None:
        try:
            if self._ops and not self._write():
                log.error("the journal could not be written at shutdown (%s): %d change(s) are "
                          "lost (acknowledged jobs are not: the morsels whose results were not "
                          "written run again after a restart)", self.problem, len(self._ops))
            self._checkpointer.stop()
            self._db.close()
        finally:
            self._lock.release()

    # -- writes (written by the next commit) ----------------------------------------------------
    def insert_job(self, job: JobRow, morsels: list[MorselRow]) -> None:
        job_id = job.job_id
        self._ops.append((
            "INSERT INTO jobs VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?)",
            (job_id, job.seq, JobState(job.status).value, job.priority, job.func_name,
             job.func_pickle, job.result_kind, job.total_morsels, job.total_items, job.error,
             job.created_at, job.started_at, job.finished_at, job.digest), False, job_id))
        self._ops.append((
            "INSERT INTO morsels (job_id, idx, offset, items, encoding, data) "
            "VALUES (?,?,?,?,?,?)",
            [(job_id, m.idx, m.offset, m.items, m.encoding, m.data) for m in morsels], True,
            job_id))
        self._inserts.add(job_id)
        self._unwritten.add(job_id)

    def store_results(self, rows: list[tuple[str, bytes | None, int, int, int, int, int, str,
                                              int]]) -> None:
        """rows: (result_encoding, result, result_items, attempts, size, crc, in_file, job_id,
        idx); ``result`` is None for one in a file (see result_files.py)."""
        rows = list(rows)  # (the caller reuses its list)
        self._ops.append((
            "UPDATE morsels SET done=1, data=NULL, result_encoding=?, result=?, result_items=?, "
            "attempts=?, result_size=?, result_crc=?, result_file=? WHERE job_id=? AND idx=?",
            rows, True, None))
        self._unwritten.update(row[7] for row in rows)

    def set_attempts(self, job_id: str, idx: int, attempts: int) -> None:
        self._ops.append(("UPDATE morsels SET attempts=? WHERE job_id=? AND idx=?",
                          (attempts, job_id, idx), False, None))
        self._unwritten.add(job_id)

    def set_job_state(self, job_id: str, status: JobState, *, error: str | None = None,
                      started_at: float | None = None, finished_at: float | None = None) -> None:
        status = JobState(status)  # a state's name is accepted too
        self._ops.append((
            "UPDATE jobs SET status=?, error=?, started_at=COALESCE(?, started_at), "
            "finished_at=? WHERE job_id=?",
            (status.value, error, started_at, finished_at, job_id), False, None))
        if finished_at is not None and status is not JobState.COMPLETED:
            # Inputs are no longer needed once a job is over (a completed job's went with its
            # results); results stay until the TTL.
            self._ops.append(("UPDATE morsels SET data=NULL WHERE job_id=? AND data IS NOT NULL",
                              (job_id,), False, None))
        self._unwritten.add(job_id)

    def expire(self, expired: list[tuple[str, str]], wall: float) -> None:
        """Delete finished jobs and their results; each leaves a tombstone saying why
        (``expired``: (job id, reason)), of which the newest TOMBSTONES_KEPT are kept."""
        if not expired:
            return
        ids = [(job_id,) for job_id, _ in expired]
        self._ops.append(("DELETE FROM morsels WHERE job_id=?", ids, True, None))
        self._ops.append(("DELETE FROM jobs WHERE job_id=?", ids, True, None))
        self._ops.append(("INSERT OR REPLACE INTO expired_jobs VALUES (?,?,?)",
                          [(job_id, wall, reason) for job_id, reason in expired], True, None))
        self._ops.append((
            "DELETE FROM expired_jobs WHERE job_id IN (SELECT job_id FROM expired_jobs "
            "ORDER BY expired_at DESC LIMIT -1 OFFSET ?)", (TOMBSTONES_KEPT,), False, None))
        self._unwritten.update(job_id for job_id, _ in expired)

    # -- reads --------------------------------------------------------------------------------
    def max_seq(self) -> int:
        row = self._db.execute("SELECT COALESCE(MAX(seq), 0) FROM jobs").fetchone()
        return int(row[0])

    def unfinished_jobs(self) -> Iterator[tuple[JobRow, list[MorselRow]]]:
        """Jobs still pending or running, with their morsels (inputs of those not done)."""
        active = sorted(state.value for state in ACTIVE_JOB_STATES)
        jobs = [_job_row(r) for r in self._db.execute(
            f"SELECT * FROM jobs WHERE status IN ({', '.join('?' * len(active))}) ORDER BY seq",
            active)]
        for job in jobs:
            morsels = [MorselRow(r[0], r[1], r[2], r[3], r[4], r[5], bool(r[6]))
                       for r in self._db.execute(
                           "SELECT idx, offset, items, encoding, "
                           "CASE WHEN done THEN NULL ELSE data END, attempts, done "
                           "FROM morsels WHERE job_id=? ORDER BY idx", (job.job_id,))]
            yield job, morsels

    def job(self, job_id: str) -> JobRow | None:
        row = self._db.execute("SELECT * FROM jobs WHERE job_id=?", (job_id,)).fetchone()
        return _job_row(row) if row else None

    def done_counts(self, job_id: str) -> tuple[int, int]:
        row = self._db.execute(
            "SELECT COUNT(*), COALESCE(SUM(items), 0) FROM morsels WHERE job_id=? AND done=1",
            (job_id,)).fetchone()
        return int(row[0]), int(row[1])

    def results(self, job_id: str, start: int, max_bytes: int, *,
                count_files: bool = True) -> list[StoredResult]:
        """Consecutive done results from morsel ``start`` (at least one when available), up to
        ``max_bytes`` of them (those in a file count only with ``count_files``); those in a
        file come without their bytes (read them with result_files.read_result)."""
        out: list[StoredResult] = []
        size = 0
        expected = start
        for idx, enc, items, blob, nbytes, crc, in_file in self._db.execute(
                "SELECT idx, result_encoding, result_items, result, "
                "COALESCE(result_size, LENGTH(result)), result_crc, result_file FROM morsels "
                "WHERE job_id=? AND idx>=? AND done=1 ORDER BY idx", (job_id, start)):
            counted = nbytes if count_files or not in_file else 0
            if idx != expected or (out and size + counted > max_bytes):
                break
            out.append(StoredResult(idx, enc, items, None if in_file else blob, nbytes,
                                    crc or 0))
            size += counted
            expected += 1
        return out

    def finished_result_bytes(self) -> list[tuple[str, float, int]]:
        """(job id, finished_at, bytes of its stored results) of every finished job, the
        earliest finished first (for the retention)."""
        return [(r[0], float(r[1]), int(r[2])) for r in self._db.execute(
            "SELECT j.job_id, j.finished_at, COALESCE(SUM(COALESCE(m.result_size, "
            "LENGTH(m.result))), 0) FROM jobs j LEFT JOIN morsels m ON m.job_id=j.job_id "
            "AND m.done=1 WHERE j.finished_at IS NOT NULL GROUP BY j.job_id "
            "ORDER BY j.finished_at, j.seq")]

    def result_bytes(self, job_id: str) -> int:
        """Bytes of the results stored for ``job_id``."""
        row = self._db.execute(
            "SELECT COALESCE(SUM(COALESCE(result_size, LENGTH(result))), 0) FROM morsels "
            "WHERE job_id=? AND done=1", (job_id,)).fetchone()
        return int(row[0])

    def job_ids(self) -> list[str]:
        return [r[0] for r in self._db.execute("SELECT job_id FROM jobs")]

    def expired(self, job_id: str) -> tuple[float, str] | None:
        """(when, why) a job expired, while its tombstone is kept; None otherwise."""
        row = self._db.execute("SELECT expired_at, reason FROM expired_jobs WHERE job_id=?",
                               (job_id,)).fetchone()
        return (float(row[0]), str(row[1])) if row else None

    def recent_jobs(self, limit: int) -> list[JobRow]:
        return [_job_row(r) for r in self._db.execute(
            "SELECT * FROM jobs ORDER BY seq DESC LIMIT ?", (limit,))]


def _mb(n: int) -> str:
    return f"{n / (1 << 20):.1f} MB"


def _row_bytes(params: Any) -> int:
    """Bytes of the blobs in one write's parameters (a row, or a list of rows)."""
    rows = params if isinstance(params, list) else [params]
    return sum(len(v) for row in rows for v in row if isinstance(v, (bytes, bytearray)))


class _Checkpointer:
    """A thread with its own connection that checkpoints the WAL after commits (at most every
    _CHECKPOINT_EVERY_S). PASSIVE checkpoints never block the writer; a commit is durable once
    it is in the WAL, so when checkpoints run changes nothing a reader or a restart sees."""

    def __init__(self, path: Path) -> None:
        self._path = path
        self._wake = threading.Event()
        self._stopping = threading.Event()
        self._thread = threading.Thread(target=self._run, name="sabot-journal-checkpoint",
                                        daemon=True)
        self._thread.start()

    def poke(self) -> None:
        self._wake.set()

    def stop(self) -> None:
        self._stopping.set()
        self._wake.set()
        self._thread.join()

    def _run(self) -> None:
        db = sqlite3.connect(self._path, isolation_level=None, check_same_thread=False)
        try:
            while True:
                self._wake.wait()
                if self._stopping.is_set():
                    return
                self._wake.clear()
                try:
                    _, frames, _ = db.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchone()
                    if frames >= _TRUNCATE_WAL_FRAMES:
                        # Writers wait (their busy timeout) while the rest is copied and the
                        # file truncated: rare, and most frames are already copied by now.
                        db.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchone()
                except sqlite3.Error as exc:  # the next commit pokes again
                    log.debug("journal checkpoint failed: %s", exc)
                self._stopping.wait(_CHECKPOINT_EVERY_S)
        finally:
            db.close()


__all__ = ["RETRY_S", "SCHEMA_VERSION", "TOMBSTONES_KEPT", "JobRow", "Journal", "MorselRow",
           "StoredResult"]
