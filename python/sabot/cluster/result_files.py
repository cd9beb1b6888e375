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

A result that comes in chunks (:mod:`sabot.cluster.coordinator.result_chunks`) is appended
to its temporary file chunk by chunk on the same thread (:meth:`ResultFiles.append`, each
chunk reported back once appended, see :meth:`ResultFiles.take_appended`), then finished
(:meth:`ResultFiles.finish`: fsynced and renamed into place, reported by take_done like a whole
write) or discarded; the core never holds such a result whole.

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
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..crc import crc32
from ..durable import fsync_dir, write_replacing
from ..errors import JournalError
from ..mapped_file import DAMAGED, MISSING, CheckedFileError, read_checked

log = logging.getLogger(__name__)

#: Results of at least this many bytes go to a file of their own; smaller ones stay in their
#: journal row (a file and an fsync each would cost more than the WAL's second copy).
FILE_MIN_BYTES = 256 << 10
DIR_NAME = "results"
_SUFFIX = ".bin"
_TMP = ".tmp"


def result_path(data_dir: Path, job_id: str, idx: int) -> Path:
    """Where morsel ``idx`` of ``job_id`` keeps its result file under ``data_dir``."""
    return data_dir / DIR_NAME / job_id / f"{idx}{_SUFFIX}"


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
        return read_result(self.path, self.size, self.crc)  # type: ignore[return-value]


def read_result(path: Path, size: int, crc: int, *, mapped: bool = False
                ) -> bytes | memoryview:
    """The bytes of a result file, checked against the size and CRC-32 the journal holds;
    ``mapped``: a big one is mapped, not copied (a client decoding it in place)."""
    try:
        return read_checked(path, size, crc, mapped=mapped)
    except CheckedFileError as exc:
        if exc.kind == MISSING:
            raise ResultFileError(f"result file {path} is missing (removed by hand, or the job "
                                  "expired meanwhile)") from None
        if exc.kind == DAMAGED:
            raise ResultFileError(
                f"result file {exc}: restore SABOT_DATA_DIR from a backup, or submit the job "
                "again") from None
        raise ResultFileError(f"result file {exc}") from None


class ResultFiles:
    """The result files of one data dir and the thread that writes and removes them.

    ``wake`` is called (from that thread) whenever :meth:`take_done` has news. A file and its
    directory are fsynced before the write counts as done: the journal row that points to it
    must never outlive the bytes."""

    def __init__(self, data_dir: Path, wake: Callable[[], None]) -> None:
        self.root = data_dir / DIR_NAME
        self.root.mkdir(mode=0o700, exist_ok=True)
        self._wake = wake
        self._todo: queue.SimpleQueue[_Op | None] = queue.SimpleQueue()
        self._done: list[Written] = []
        self._appended: list[tuple[int, int]] = []  # (partial's token, chunk index)
        # The thread's own: results being appended, by (job id, morsel).
        self._open: dict[tuple[str, int], _Appending] = {}
        self._lock = threading.Lock()
        #: Bytes handed over and not written yet (safe to read from any thread).
        self.queued_bytes = 0
        self._thread = threading.Thread(target=self._run, name="sabot-result-files",
                                        daemon=True)
        self._thread.start()

    def path(self, job_id: str, idx: int) -> Path:
        return result_path(self.root.parent, job_id, idx)

    def ref(self, job_id: str, idx: int, size: int, crc: int) -> ResultRef:
        return ResultRef(self.path(job_id, idx), size, crc)

    # -- the core thread's side ----------------------------------------------------------------
    def write(self, job_id: str, idx: int, data: bytes) -> None:
        """Write ``data`` as morsel ``idx``'s result (in the background; see take_done)."""
        with self._lock:
            self.queued_bytes += len(data)
        self._todo.put(("write", job_id, idx, data, 0, 0))

    def append(self, job_id: str, idx: int, token: int, index: int, data: bytes) -> None:
        """Append chunk ``index`` (from 0) of the result ``token`` of morsel ``idx`` to its
        temporary file; reported by :meth:`take_appended` once done."""
        with self._lock:
            self.queued_bytes += len(data)
        self._todo.put(("append", job_id, idx, data, token, index))

    def finish(self, job_id: str, idx: int, token: int, size: int, crc: int) -> None:
        """The result ``token`` of morsel ``idx`` is whole (``size`` bytes, CRC-32 ``crc``):
        fsync it and put it in place; reported by take_done like a write."""
        self._todo.put(("finish", job_id, idx, b"", token, (size << 32) | crc))

    def discard(self, job_id: str, idx: int, token: int) -> None:
        """Drop the partial file of result ``token`` of morsel ``idx``."""
        self._todo.put(("discard", job_id, idx, b"", token, 0))

    def adopt(self, job_id: str, idx: int, src: Path, size: int, crc: int, *,
              sync: bool) -> None:
        """Put the file ``src`` a worker wrote on the same filesystem in place as morsel
        ``idx``'s result (``size`` bytes, CRC-32 ``crc``), the directory fsynced with
        ``sync`` (the worker fsynced the file then); reported by take_done like a write."""
        self._todo.put(("adopt", job_id, idx, os.fsencode(src), int(sync),
                        (size << 32) | crc))

    def then(self, fn: Callable[[], object]) -> None:
        """Call ``fn`` on the thread once what was handed over before is done (its errors are
        logged)."""
        self._todo.put(("call", "", 0, fn, 0, 0))

    def remove_job(self, job_id: str) -> None:
        """Remove a job's files, after any write of them handed over before."""
        self._todo.put(("remove", job_id, 0, b"", 0, 0))

    def take_done(self) -> list[Written]:
        with self._lock:
            done, self._done = self._done, []
        return done

    def take_appended(self) -> list[tuple[int, int]]:
        """(token, chunk index) of the chunks appended since the last call."""
        if not self._appended:
            return []
        with self._lock:
            done, self._appended = self._appended, []
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
                for cur in self._open.values():  # (unfinished: their morsels run again)
                    cur.close(unlink=True)
                self._open.clear()
                return
            what, job_id, idx, data, token, arg = item
            if what == "call":
                try:
                    data()
                except Exception:
                    log.exception("a task of the result files' thread failed")
                continue
            if what == "remove":
                for key in [k for k in self._open if k[0] == job_id]:
                    self._open.pop(key).close()
                shutil.rmtree(self.root / job_id, ignore_errors=True)
                continue
            if what == "append":
                self._append(job_id, idx, token, arg, data)
                continue
            if what == "discard":
                self._discard(job_id, idx, token)
                continue
            if what == "finish":
                self._finish(job_id, idx, token, arg >> 32, arg & 0xFFFFFFFF)
                continue
            if what == "adopt":
                self._adopt(job_id, idx, Path(os.fsdecode(data)), arg >> 32, arg & 0xFFFFFFFF,
                            bool(token))
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

    def _append(self, job_id: str, idx: int, token: int, index: int, data: bytes) -> None:
        key = (job_id, idx)
        cur = self._open.get(key)
        if cur is not None and (cur.token != token or index == 0):
            self._open.pop(key).close(unlink=True)
            cur = None
        if cur is None:
            cur = self._open[key] = _Appending(token, self._tmp_path(job_id, idx))
        cur.write(data)
        with self._lock:
            self.queued_bytes -= len(data)
            self._appended.append((token, index))
        self._wake()

    def _discard(self, job_id: str, idx: int, token: int) -> None:
        cur = self._open.get((job_id, idx))
        if cur is not None and cur.token == token:
            self._open.pop((job_id, idx)).close(unlink=True)

    def _finish(self, job_id: str, idx: int, token: int, size: int, crc: int) -> None:
        cur = self._open.get((job_id, idx))
        error = None
        if cur is None or cur.token != token:
            error = f"its chunks were not written ({self.path(job_id, idx)})"
        else:
            del self._open[(job_id, idx)]
            error = cur.error
            if error is None and cur.size != size:
                error = f"{cur.size} bytes were written, not {size}"
            if error is None:
                try:
                    os.fsync(cur.fd)
                    cur.close()
                    folder = self.root / job_id
                    os.replace(cur.path, self.path(job_id, idx))
                    fsync_dir(folder)
                except OSError as exc:
                    error = f"{exc.strerror or exc} ({self.path(job_id, idx)})"
            if error is not None:
                cur.close(unlink=True)
        with self._lock:
            self._done.append(Written(job_id, idx, size, crc, error))
        self._wake()

    def _adopt(self, job_id: str, idx: int, src: Path, size: int, crc: int,
               sync: bool) -> None:
        final = self.path(job_id, idx)
        error = None
        try:
            held = src.stat().st_size
            if held != size:
                error = f"{src} holds {held} bytes, not {size}"
            else:
                folder = final.parent
                new_dir = not folder.exists()
                if new_dir:
                    folder.mkdir(mode=0o700, exist_ok=True)
                os.replace(src, final)
                if sync:
                    fsync_dir(folder)
                    if new_dir:
                        fsync_dir(self.root)
        except OSError as exc:
            error = f"{exc.strerror or exc} ({src})"
        if error is not None:
            with contextlib.suppress(OSError):
                os.unlink(src)
        with self._lock:
            self._done.append(Written(job_id, idx, size, crc, error))
        self._wake()

    def _tmp_path(self, job_id: str, idx: int) -> Path:
        folder = self.root / job_id
        if not folder.exists():
            # (a failure shows when the file is opened in it, and is reported at its finish)
            with contextlib.suppress(OSError):
                folder.mkdir(mode=0o700, exist_ok=True)
                fsync_dir(self.root)
        return folder / f"{idx}{_SUFFIX}{_TMP}"

    def _write(self, job_id: str, idx: int, data: bytes) -> int:
        folder = self.root / job_id
        new_dir = not folder.exists()
        if new_dir:
            folder.mkdir(mode=0o700, exist_ok=True)
        final = folder / f"{idx}{_SUFFIX}"
        tmp = folder / f"{idx}{_SUFFIX}{_TMP}"
        crc = crc32(data)
        write_replacing(tmp, final, data, sync=True)
        fsync_dir(folder)
        if new_dir:
            fsync_dir(self.root)
        return crc


#: What the thread is told: (what, job id, morsel, bytes, token, index or size and CRC).
_Op = tuple[str, str, int, Any, int, int]


class _Appending:
    """A result file being appended to, chunk by chunk (the thread's own). A write that
    fails (a full disk) is remembered and reported when the result is finished."""

    __slots__ = ("error", "fd", "path", "size", "token")

    def __init__(self, token: int, path: Path) -> None:
        self.token = token
        self.path = path
        self.size = 0
        self.error: str | None = None
        self.fd = -1
        try:
            self.fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        except OSError as exc:
            self.error = f"{exc.strerror or exc} ({path})"

    def write(self, data: bytes) -> None:
        self.size += len(data)
        if self.error is not None:
            return
        try:
            view = memoryview(data)
            while view:
                n = os.write(self.fd, view)
                view = view[n:]
        except OSError as exc:
            self.error = f"{exc.strerror or exc} ({self.path})"

    def close(self, *, unlink: bool = False) -> None:
        if self.fd >= 0:
            with contextlib.suppress(OSError):
                os.close(self.fd)
            self.fd = -1
        if unlink:
            with contextlib.suppress(OSError):
                os.unlink(self.path)


__all__ = ["DIR_NAME", "FILE_MIN_BYTES", "ResultFileError", "ResultFiles", "ResultRef",
           "Written", "read_result", "result_path"]
