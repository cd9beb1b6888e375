"""Shared-memory morsels: numpy and Arrow input reaches pool workers without the parent's pickler.

For a call whose input is a numpy array (1-D, numeric) or Arrow data, the parent copies the
input once into a shared-memory file (``/dev/shm``) and sends each worker only a small
descriptor (file, byte range, type). The worker maps just that range, reads it without a copy,
and for numpy writes its results straight into a shared output file when they have the type the
parent expects; otherwise results come back over the pipe as before. The parent's work per task
is then a few hundred bytes, whatever the morsel's size: with many workers it is no longer the
pool's serial part.

Plain ``mmap`` of files in ``/dev/shm`` rather than :mod:`multiprocessing.shared_memory`: the
workers are not ``multiprocessing`` children, and ``SharedMemory`` would start a resource
tracker in each of them that unlinks segments it does not own. Space is reserved with
``posix_fallocate`` before anything is written, so a full ``/dev/shm`` (64 MiB in a default
Docker container) is an ``OSError`` here — the call then uses the pipes — and never a SIGBUS.
"""

from __future__ import annotations

import itertools
import mmap
import os
from dataclasses import dataclass
from typing import Any

from .inline import run_numpy_pieces
from .results import join_parts

#: Inputs smaller than this travel over the pipes: a shared file costs more than it saves.
MIN_SHARED_BYTES = 1 << 20

_DIR = "/dev/shm"
# Map every page at once (one call) instead of one page fault per 4 KiB on first touch.
_POPULATE = getattr(mmap, "MAP_POPULATE", 0)
_names = itertools.count(1)


def shared_dir() -> str | None:
    """Where shared segments live, or None when this system has no usable ``/dev/shm``."""
    if os.path.isdir(_DIR) and os.access(_DIR, os.W_OK | os.X_OK):
        return _DIR
    return None


_swept = False


def _pid_namespace() -> str:
    try:
        return str(os.stat("/proc/self/ns/pid").st_ino)
    except OSError:
        return "0"


#: Segment names carry the PID namespace: a pid is only meaningful inside its own namespace.
_NAMESPACE = _pid_namespace()


def sweep_stale() -> int:
    """Remove segments left by Sabot processes that no longer exist (killed with SIGKILL, or
    crashed, before their call ended). Runs once per process, before its first segment."""
    global _swept
    _swept = True
    where = shared_dir()
    removed = 0
    if where is None:
        return 0
    for name in os.listdir(where):
        parts = name.split("-")
        if len(parts) != 5 or parts[0] != "sabot" or parts[1] != _NAMESPACE:
            continue  # not ours, or made in another PID namespace (a container sharing /dev/shm)
        if not parts[2].isdigit():
            continue
        pid = int(parts[2])
        if pid == os.getpid() or _alive(pid):
            continue
        try:
            os.unlink(os.path.join(where, name))
            removed += 1
        except OSError:
            pass  # another process's cleanup won the race, or not ours to remove
    return removed


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # exists, owned by someone else
    return True


class Segment:
    """A shared-memory file created by this process, mapped read-write."""

    def __init__(self, size: int, *, populate: bool = True) -> None:
        where = shared_dir()
        if where is None:
            raise OSError("no writable /dev/shm on this system")
        if not _swept:
            sweep_stale()
        self.size = max(1, int(size))
        self.path = os.path.join(where, f"sabot-{_NAMESPACE}-{os.getpid()}-{next(_names)}-{os.urandom(4).hex()}")
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_EXCL, 0o600)
        try:
            try:
                os.posix_fallocate(fd, 0, self.size)
            except AttributeError:  # pragma: no cover - non-Linux
                os.ftruncate(fd, self.size)
            # populate: map every page now, when this process is about to write them all
            self.map = mmap.mmap(fd, self.size,
                                 flags=mmap.MAP_SHARED | (_POPULATE if populate else 0))
        except BaseException:
            os.close(fd)
            os.unlink(self.path)
            raise
        os.close(fd)  # the mapping keeps the memory; workers open the file by path

    def buffer(self, offset: int = 0, length: int | None = None) -> memoryview:
        end = self.size if length is None else offset + length
        return memoryview(self.map)[offset:end]

    def close(self) -> None:
        """Unmap and remove the file (workers that still map a range keep it until they unmap)."""
        try:
            self.map.close()
        except BufferError:
            pass  # a view is still exported; the mapping goes with the last reference
        try:
            os.unlink(self.path)
        except FileNotFoundError:
            pass


class Region:
    """A byte range of a shared file mapped into a worker; ``view`` starts at the range."""

    def __init__(self, path: str, offset: int, length: int, *, write: bool = False) -> None:
        start = offset - offset % mmap.ALLOCATIONGRANULARITY
        self._delta = offset - start
        fd = os.open(path, os.O_RDWR if write else os.O_RDONLY)
        try:
            prot = mmap.PROT_READ | (mmap.PROT_WRITE if write else 0)
            self._map = mmap.mmap(fd, self._delta + max(1, length), offset=start,
                                  flags=mmap.MAP_SHARED | _POPULATE, prot=prot)
        finally:
            os.close(fd)
        self.length = length

    def view(self) -> memoryview:
        return memoryview(self._map)[self._delta:self._delta + self.length]

    def close(self) -> None:
        try:
            self._map.close()
        except BufferError:
            # Something still views the mapping (a traceback holding a frame with an array
            # on it): it is unmapped when the last view goes.
            pass

    def __enter__(self) -> Region:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


@dataclass(frozen=True)
class NumpySlice:
    """Rows ``[start, start + rows)`` of a 1-D array in a shared file (whole input, from 0)."""

    path: str
    dtype: str
    start: int
    rows: int
    #: Where the results go when they are an array of ``out_dtype``: (path, dtype) or None.
    out: tuple[str, str] | None = None

    def __len__(self) -> int:
        return self.rows

    def run(self, func: Any, offset: int) -> Any:
        """``func`` over these rows (read in place, in cache-sized pieces): the results, or
        :class:`InShared` once they are stored in the shared output."""
        import numpy as np

        dtype = np.dtype(self.dtype)
        with Region(self.path, self.start * dtype.itemsize, self.rows * dtype.itemsize) as r:
            view = r.view()
            # A private copy (a memcpy, ~1 ns an item against the 50+ ns of a Python call):
            # the mapping closes now, whatever the function does with its items or raises.
            arr = np.frombuffer(view, dtype=dtype, count=self.rows).copy()
            view.release()
        part = join_parts(run_numpy_pieces(func, arr, offset))
        return InShared(self.rows) if self.write_results(part) else part

    def write_results(self, part: Any) -> bool:
        """Store an array of results in the shared output; False when they do not fit it."""
        import numpy as np

        if self.out is None or not isinstance(part, np.ndarray):
            return False
        path, dtype_str = self.out
        dtype = np.dtype(dtype_str)
        if part.dtype != dtype or part.shape != (self.rows,):
            return False
        with Region(path, self.start * dtype.itemsize, self.rows * dtype.itemsize,
                    write=True) as r:
            view = r.view()
            np.frombuffer(view, dtype=dtype, count=self.rows)[:] = part
            view.release()
        return True


@dataclass(frozen=True)
class ArrowSlice:
    """One task's rows of Arrow input as an IPC stream at ``offset`` in a shared file."""

    path: str
    offset: int
    length: int
    rows: int
    column: bool

    def __len__(self) -> int:
        return self.rows

    def read_items(self) -> list[Any]:
        import pyarrow as pa

        with Region(self.path, self.offset, self.length) as r:
            view = r.view()
            batch = pa.ipc.open_stream(pa.py_buffer(view)).read_next_batch()
            items = (batch.column(0) if self.column else batch).to_pylist()
            del batch  # Arrow buffers point into the mapping: gone before it is closed
            view.release()
        return items


#: A worker's reply for a task whose results it wrote into the shared output.
class InShared:
    __slots__ = ("rows",)

    def __init__(self, rows: int) -> None:
        self.rows = rows

    def __reduce__(self) -> tuple[Any, ...]:
        return (InShared, (self.rows,))


__all__ = ["MIN_SHARED_BYTES", "ArrowSlice", "InShared", "NumpySlice", "Region", "Segment",
           "shared_dir", "sweep_stale"]
