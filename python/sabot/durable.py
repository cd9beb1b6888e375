"""Writing files that survive a crash: data fsynced before it counts, and the directory entry
of a new or renamed file fsynced too."""

from __future__ import annotations

import os
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
