"""One coordinator per data dir: an exclusive lock on ``<SABOT_DATA_DIR>/coordinator.lock``.

Two coordinators on one journal would serve each other's jobs and results and race on their
state. The lock is an ``flock`` held while the journal is open, so the kernel drops it when the
process dies however it dies (no stale lock to clean up after a SIGKILL); the file names the
holder, for the message the next one gets.
"""

from __future__ import annotations

import fcntl
import json
import os
import socket
import time
from pathlib import Path

from ..errors import ConfigError

LOCK_NAME = "coordinator.lock"


class DataDirLock:
    """Held from :meth:`acquire` until :meth:`release` (or the process's end)."""

    def __init__(self, data_dir: Path) -> None:
        self.path = data_dir / LOCK_NAME
        self._fd: int | None = None

    def acquire(self, owner: str) -> None:
        """Take the lock, or raise ConfigError naming the dir, its holder and SABOT_DATA_DIR."""
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = _describe(os.pread(fd, 4096, 0))
            os.close(fd)
            raise ConfigError(
                "SABOT_DATA_DIR", str(self.path.parent),
                f"a data dir no running coordinator uses: {holder} holds it (its lock file "
                f"{self.path}); stop that coordinator, or give this one its own "
                "SABOT_DATA_DIR") from None
        except BaseException:
            os.close(fd)
            raise
        record = json.dumps({"owner": owner, "pid": os.getpid(), "host": socket.gethostname(),
                             "since": time.strftime("%Y-%m-%dT%H:%M:%S%z")}).encode()
        os.ftruncate(fd, 0)
        os.pwrite(fd, record, 0)
        self._fd = fd

    def release(self) -> None:
        fd, self._fd = self._fd, None
        if fd is not None:
            os.ftruncate(fd, 0)
            os.close(fd)  # closing the descriptor drops the flock


def _describe(raw: bytes) -> str:
    try:
        info = json.loads(raw)
        return (f"{info['owner']} (pid {info['pid']} on host {info['host']}, since "
                f"{info['since']})")
    except (ValueError, KeyError, TypeError):
        return "another coordinator"


__all__ = ["LOCK_NAME", "DataDirLock"]
