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
    against its size and CRC-32 (ResultFileError naming the file otherwise), then decoded."""
    if encoding != SPOOL_FILE:
        return payload.decode_value(encoding, data)
    path, inner, size, crc = msgpack.unpackb(data, raw=False)
    return payload.decode_value(inner, read_file(Path(path), size, crc))


@dataclass(frozen=True)
class ResultWriter:
    """(In the pool process) encodes a morsel's results; a big result goes to the spool file
    ``path`` (fsynced with ``sync``) and a reference comes back in its place."""

    path: str
    sync: bool

    def __call__(self, items: list[Any]) -> tuple[str, bytes]:
        encoding, blob = payload.encode_items(items)
        if len(blob) < SPOOL_MIN_BYTES:
            return encoding, blob
        try:
            crc = write_file(Path(self.path), blob, sync=self.sync)
        except OSError:
            # (a full disk: the bytes go back to the worker, which sends them over ZeroMQ)
            return encoding, blob
        return SPOOL, ref_bytes(encoding, len(blob), crc)


__all__ = ["SPOOL_FILE", "ResultWriter", "read_task", "task_payload"]
