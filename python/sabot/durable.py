"""Writing files that survive a crash: data fsynced before it counts, and the directory entry
of a new or renamed file fsynced too."""

from __future__ import annotations

import contextlib
import os
from collections.abc import Sequence
from pathlib import Path


def fsync_dir(path: str | Path) -> None:
    """Make the entries of directory ``path`` (files created or renamed in it) durable."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def write_fsynced(path: str | Path, data: bytes | memoryview) -> None:
    """Write ``data`` to ``path`` and fsync it (the directory entry is the caller's)."""
    with open(path, "wb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())


def write_replacing(tmp: str | Path, final: str | Path,
                    data: bytes | memoryview | Sequence[bytes | memoryview], *,
                    sync: bool) -> None:
    """Write ``data`` (bytes, or the parts they are made of, in order) to ``tmp`` (mode 0600;
    fsynced with ``sync``) and rename it to ``final``: a reader sees the whole file or none. A
    failed write leaves no ``tmp`` behind. The directory entry is the caller's to fsync."""
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        for part in (data if isinstance(data, (list, tuple)) else (data,)):
            view = memoryview(part).cast("B")
            while view:
                view = view[os.write(fd, view):]
        if sync:
            os.fsync(fd)
    except BaseException:
        os.close(fd)
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise
    os.close(fd)
    os.replace(tmp, final)
