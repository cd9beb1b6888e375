"""Results too big for a journal row: one file each, beside the journal, under
``<SABOT_DATA_DIR>/results/<job id>/<morsel>.bin``.

A result of :data:`FILE_MIN_BYTES` or more is written here once (a temporary name, fsynced,
renamed into place), and the journal row of its morsel records only that it is in a file, its
size and its CRC-32: the bytes never go through SQLite's WAL (where they would be written twice,
and a big one holds the journal's commit for seconds). Writes and removals run in order on a
thread of their own, so the coordinator's core thread never waits for the disk; it hands a
write over and hears back (:meth:`ResultFiles.take_done`) once the file is in place, or that it
could not be written (a full disk): the core then keeps the result in memory and journals it in
its row instead, which the journal keeps pending until it can write.

Reads (:func:`read_result`) work from any thread and check the size and checksum, so a file cut
short or damaged is an error naming it, never a wrong result.
"""

from __future__ import annotations

import contextlib
import logging
import os
import queue
import shutil
import threading
import zlib
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path

from ..durable import fsync_dir
from ..errors import JournalError

log = logging.getLogger(__name__)

#: Results of at least this many bytes go to a file of their own; smaller ones stay in their
#: journal row (a file and an fsync each would cost more than the WAL's second copy).
FILE_MIN_BYTES = 256 << 10
DIR_NAME = "results"
_SUFFIX = ".bin"
_TMP = ".tmp"


class ResultFileError(JournalError):
    """A result file is missing, cut short or damaged; the message names it."""


@dataclass(frozen=True, slots=True)
class Written:
    """A write the thread finished: ``error`` is None once the file is in place."""

    job_id: str
    idx: int
    size: int
    crc: int
    error: str | None


@dataclass(frozen=True, slots=True)
class ResultRef:
    """Where a stored result is: its bytes are read with :meth:`read` (any thread)."""

    path: Path
    size: int
    crc: int

    def read(self) -> bytes:
        return read_result(self.path, self.size, self.crc)


def read_result(path: Path, size: int, crc: int) -> bytes:
    """The bytes of a result file, checked against the size and CRC-32 the journal holds."""
    try:
        with open(path, "rb") as f:
            data = f.read()
    except FileNotFoundError:
        raise ResultFileError(f"result file {path} is missing (removed by hand, or the job "
                              "expired meanwhile)") from None
    except OSError as exc:
        raise ResultFileError(f"result file {path} cannot be read: {exc.strerror}") from None
    if len(data) != size or zlib.crc32(data) != crc:
        raise ResultFileError(
            f"result file {path} is damaged ({len(data)} bytes, the journal recorded {size} "
            "bytes and another checksum): restore SABOT_DATA_DIR from a backup, or submit the "
            "job again")
    return data


class ResultFiles:
    """The result files of one data dir and the thread that writes and removes them.

    ``wake`` is called (from that thread) whenever :meth:`take_done` has news. A file and its
    directory are fsynced before the write counts as done: the journal row that points to it
    must never outlive the bytes."""

    def __init__(self, data_dir: Path, wake: Callable[[], None]) -> None:
        self.root = data_dir / DIR_NAME
        self.root.mkdir(mode=0o700, exist_ok=True)
        self._wake = wake
        self._todo: queue.SimpleQueue[tuple[str, str, int, bytes] | None] = queue.SimpleQueue()
        self._done: list[Written] = []
        self._lock = threading.Lock()
        #: Bytes handed over and not written yet (safe to read from any thread).
        self.queued_bytes = 0
        self._thread = threading.Thread(target=self._run, name="sabot-result-files",
                                        daemon=True)
        self._thread.start()

    def path(self, job_id: str, idx: int) -> Path:
        return self.root / job_id / f"{idx}{_SUFFIX}"

    def ref(self, job_id: str, idx: int, size: int, crc: int) -> ResultRef:
        return ResultRef(self.path(job_id, idx), size, crc)

    # -- the core thread's side ----------------------------------------------------------------
    def write(self, job_id: str, idx: int, data: bytes) -> None:
        """Write ``data`` as morsel ``idx``'s result (in the background; see take_done)."""
        with self._lock:
            self.queued_bytes += len(data)
        self._todo.put(("write", job_id, idx, data))

    def remove_job(self, job_id: str) -> None:
        """Remove a job's files, after any write of them handed over before."""
        self._todo.put(("remove", job_id, 0, b""))

    def take_done(self) -> list[Written]:
        with self._lock:
            done, self._done = self._done, []
        return done

    def sweep(self, keep: Iterable[str]) -> int:
        """At start (before any write): remove the files of jobs the journal does not hold
        (the journal dropped them, then the process died before their files went) and any
        half-written file. Returns how many job directories went."""
        keep = set(keep)
        removed = 0
        for entry in list(os.scandir(self.root)):
            if not entry.is_dir(follow_symlinks=False):
                continue
            if entry.name not in keep:
                shutil.rmtree(entry.path, ignore_errors=True)
                removed += 1
                continue
            for f in os.scandir(entry.path):
                if f.name.endswith(_TMP):
                    with contextlib.suppress(OSError):
                        os.unlink(f.path)
        return removed

    def close(self) -> None:
        """Finish the writes handed over, then stop the thread."""
        self._todo.put(None)
        self._thread.join()

    # -- the thread ------------------------------------------------------------------------------
    def _run(self) -> None:
        while True:
            item = self._todo.get()
            if item is None:
                return
            what, job_id, idx, data = item
            if what == "remove":
                shutil.rmtree(self.root / job_id, ignore_errors=True)
                continue
            try:
                crc = self._write(job_id, idx, data)
                done = Written(job_id, idx, len(data), crc, None)
            except OSError as exc:
                done = Written(job_id, idx, len(data), 0,
                               f"{exc.strerror or exc} ({self.path(job_id, idx)})")
            with self._lock:
                self.queued_bytes -= len(data)
                self._done.append(done)
            self._wake()

    def _write(self, job_id: str, idx: int, data: bytes) -> int:
        folder = self.root / job_id
        new_dir = not folder.exists()
        if new_dir:
            folder.mkdir(mode=0o700, exist_ok=True)
        final = folder / f"{idx}{_SUFFIX}"
        tmp = folder / f"{idx}{_SUFFIX}{_TMP}"
        crc = zlib.crc32(data)
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        try:
            view = memoryview(data)
            while view:
                n = os.write(fd, view)
                view = view[n:]
            os.fsync(fd)
        except BaseException:
            os.close(fd)
            with contextlib.suppress(OSError):
                os.unlink(tmp)
            raise
        os.close(fd)
        os.replace(tmp, final)
        fsync_dir(folder)
        if new_dir:
            fsync_dir(self.root)
        return crc


__all__ = ["DIR_NAME", "FILE_MIN_BYTES", "ResultFileError", "ResultFiles", "ResultRef",
           "Written", "read_result"]
