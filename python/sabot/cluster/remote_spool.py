"""The spool as a peer on another host uses it: its files reached through the data port.

A peer whose hello proved no shared data dir, but that can reach the coordinator's data port
(welcome ``spool`` :data:`~sabot.cluster.spool.REMOTE`, ``data_port``), uses the same spool
files as a peer on the coordinator's host, through :class:`~sabot.cluster.spool_client
.SpoolClient`:

- :class:`RemoteSpool` (a client): a submit's big inputs are put as their spool files (the
  coordinator then finds them there, as for a client on its host) and results are got from
  their result files; nothing of either crosses the control socket.
- :class:`StagedSpool` (a worker): a local mirror of the files it works on, under its own data
  dir. An assigned morsel's input is got into it before the morsel runs (so the pool process
  reads, and maps, a local file as it would the coordinator's), and a big result written there
  is put to the coordinator before its reference is sent; the local copies go when done.
"""

from __future__ import annotations

import os
import re
import shutil
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from ..errors import ProtocolError
from .protocol import payload
from .result_files import ResultFileError
from .spool import Spool, crc_of, parse_ref, read_file, write_file
from .spool_client import SpoolClient, SpoolTransferError

#: Where a worker keeps its copies of the files it works on, under its data dir.
STAGING_DIR = "staging"
#: Through the data port, a file costs a round trip or two each way on top of its bytes:
#: morsels and results smaller than this go inline (measured: 64 KiB morsels of a 200k-item
#: job ran at 0.64x inline through the port, 600 KiB ones of a 2M-item job at 1.5x).
REMOTE_MIN_BYTES = 128 << 10


def staging_dir(data_dir: Path, owner: str) -> Path:
    """Where the worker ``owner`` (its node id) keeps its local copies under ``data_dir``."""
    return Path(data_dir) / STAGING_DIR / re.sub(r"[^A-Za-z0-9._-]", "_", owner)[:100]


def sweep_staging(data_dir: Path, owner: str, older_than_s: float) -> int:
    """(A worker, at start and stop) remove its own staging directory, and those of other
    workers untouched for ``older_than_s`` (a worker that died leaves its copies); returns
    how many went."""
    root = Path(data_dir) / STAGING_DIR
    mine = staging_dir(data_dir, owner)
    removed = 0
    now = time.time()
    try:
        entries = list(os.scandir(root))
    except OSError:
        return 0
    for entry in entries:
        try:
            old = now - entry.stat(follow_symlinks=False).st_mtime >= older_than_s
        except OSError:
            continue
        if entry.path == str(mine) or old:
            shutil.rmtree(entry.path, ignore_errors=True)
            removed += 1
    return removed


class RemoteSpool(Spool):
    """The coordinator's spool for a client on another host: every file read or written
    through the data port."""

    remote = True
    min_bytes = REMOTE_MIN_BYTES
    check_before_put = False

    def __init__(self, client: SpoolClient) -> None:
        super().__init__(Path("."))
        self.client = client

    def put_inputs(self, job_id: str, morsels: list[Any], *, sync: bool) -> list[Any]:
        # (the coordinator fsyncs what it takes in when its journal is fsynced)
        return super().put_inputs(job_id, morsels, sync=False)

    def _name(self, path: Path) -> str:
        return path.relative_to(self.data_dir).as_posix()

    def check(self, path: Path, size: int) -> str | None:
        try:
            held = self.client.size_of(self._name(path))
        except SpoolTransferError as exc:
            return str(exc)
        if held is None:
            return f"{self._name(path)} is not there"
        return None if held == size else \
            f"{self._name(path)} holds {held} bytes, the reference says {size}"

    def write(self, path: Path, data: bytes | memoryview | Sequence[bytes | memoryview], *,
              sync: bool, crc: int | None = None) -> int:
        parts = data if isinstance(data, (list, tuple)) else (data,)
        if crc is None:
            crc = crc_of(parts)
        self.client.put(self._name(path), parts, payload.parts_size(parts), crc)
        return crc

    def read(self, path: Path, size: int, crc: int) -> bytes:
        try:
            return bytes(self.client.get(self._name(path), size, crc))
        except SpoolTransferError as exc:
            raise ResultFileError(f"spool file {self._name(path)}: {exc}") from None

    def take_result(self, job_id: str, idx: int, ref: bytes) -> tuple[str, Any]:
        try:
            enc, size, crc = parse_ref(ref)
        except ProtocolError as exc:
            raise ResultFileError(f"result {idx} of job {job_id}: {exc}") from None
        name = self._name(self.result_path(job_id, idx))
        try:
            return enc, self.client.get(name, size, crc)
        except SpoolTransferError as exc:
            raise ResultFileError(f"result file {name}: {exc}") from None

    def remove_job(self, job_id: str) -> None:
        """(The coordinator removes a job's files; there are none here.)"""

    def sweep(self, claimed: Any, older_than_s: float, now: float | None = None) -> int:
        return 0


class StagedSpool(Spool):
    """A worker's local copies of the coordinator's spool files (under
    ``<data dir>/staging/<node id>``: workers on one host may share a data dir), got and put
    through the data port."""

    min_bytes = REMOTE_MIN_BYTES

    def __init__(self, data_dir: Path, owner: str, client: SpoolClient) -> None:
        super().__init__(staging_dir(data_dir, owner))
        self.client = client

    def _name(self, path: Path) -> str:
        return path.relative_to(self.data_dir).as_posix()

    def fetch_input(self, job_id: str, idx: int, ref: bytes) -> Path:
        """(In a thread) the local copy of morsel ``idx``'s input, got first unless it is here
        (SpoolTransferError when it cannot be)."""
        _, size, crc = parse_ref(ref)
        path = self.input_path(job_id, idx, crc)
        if self.check(path, size) is None:
            return path
        data = self.client.get(self._name(path), size, crc)
        write_file(path, data, sync=False, crc=crc)
        return path

    def publish(self, job_id: str, idx: int, attempt: int, ref: bytes) -> None:
        """(In a thread) put the local result file of ``(job, idx, attempt)`` to the
        coordinator under the same name, then remove the local one (SpoolTransferError, or
        ResultFileError when the local file is not what its reference says)."""
        _, size, crc = parse_ref(ref)
        path = self.output_path(job_id, idx, attempt)
        try:
            data = read_file(path, size, crc, mapped=True)
        except ResultFileError as exc:
            raise ResultFileError(f"result file {exc}") from None
        self.client.put(self._name(path), (data,), size, crc)
        path.unlink(missing_ok=True)

    def discard_input(self, job_id: str, idx: int, ref: bytes) -> None:
        """Remove the local copy of an input that is done with."""
        try:
            _, _, crc = parse_ref(ref)
        except ProtocolError:
            return
        path = self.input_path(job_id, idx, crc)
        try:
            os.unlink(path)
            path.parent.rmdir()  # (only when it was the last one)
        except OSError:
            pass


__all__ = ["REMOTE_MIN_BYTES", "STAGING_DIR", "RemoteSpool", "StagedSpool", "staging_dir",
           "sweep_staging"]
