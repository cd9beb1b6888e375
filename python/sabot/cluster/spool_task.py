"""A bulk morsel that a pool process reads from the spool itself, writing its result there too.

A worker that shares the coordinator's spool (:mod:`sabot.cluster.spool`) would otherwise read
a spooled morsel's file, send its bytes down a pipe to the pool process that runs the user
function, take the encoded result back up the pipe and write it to a spool file: four copies of
every byte in the worker process, which does nothing else with them. Here the pool process gets
only the file's name, size and CRC-32: it reads and checks the file, decodes, runs the function,
encodes, and writes a result of :data:`~sabot.cluster.spool.SPOOL_MIN_BYTES` or more to the
result's spool file (fsynced when the worker's welcome asked for it), returning a reference. A
smaller result, or one the disk refuses, comes back as bytes, and the worker sends (or spools)
it as any other. What the worker posts is the same ``morsel-result`` either way.

Morsels of per-item functions and of batch functions (``sabot.batch``) both run so. A numpy or
Arrow morsel is decoded over the mapped file (no copy of its values into the process), and a
numpy result is written to its file from the array's own memory.

Both callables below run in the pool process and pickle by reference to this module.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import msgpack

from .protocol import payload
from .spool import SPOOL, SPOOL_MIN_BYTES, read_file, ref_bytes, write_file

#: The encoding of a pool task's payload that names a spool file instead of holding bytes.
SPOOL_FILE = "spool-file"


def task_payload(path: Path, encoding: str, size: int, crc: int) -> bytes:
    """What a pool task carries for the spool file ``path`` (its inner encoding, size and
    CRC-32, as the morsel's reference says)."""
    return msgpack.packb([str(path), encoding, size, crc], use_bin_type=True)


def read_task(encoding: str, data: bytes) -> Any:
    """(In the pool process) the items of a task: read from the spool file it names, checked
    against its size and CRC-32 (ResultFileError naming the file otherwise), then decoded (a
    big numpy or Arrow morsel in place over the mapped file, without a copy)."""
    if encoding != SPOOL_FILE:
        return payload.decode_value(encoding, data)
    path, inner, size, crc = msgpack.unpackb(data, raw=False)
    return payload.decode_value(inner, read_file(Path(path), size, crc, mapped=True))


@dataclass(frozen=True)
class ResultWriter:
    """(In the pool process) encodes a morsel's results; a big result goes to the spool file
    ``path`` (fsynced with ``sync``) and a reference comes back in its place."""

    path: str
    sync: bool
    #: Results of at least this many bytes go to the file (the spool's ``min_bytes``).
    min_bytes: int = SPOOL_MIN_BYTES

    def __call__(self, results: Any) -> tuple[str, bytes]:
        """``results``: a per-item function's list, or what a batch function returned (a
        numpy array goes into its file straight from its own memory)."""
        encoding, parts = payload.encode_parts(results)
        size = payload.parts_size(parts)
        if size >= self.min_bytes:
            try:
                crc = write_file(Path(self.path), parts, sync=self.sync)
            except OSError:
                pass  # (a full disk: the bytes go back to the worker, which sends them)
            else:
                return SPOOL, ref_bytes(encoding, size, crc)
        return encoding, payload.joined(parts)


__all__ = ["SPOOL_FILE", "ResultWriter", "read_task", "task_payload"]
