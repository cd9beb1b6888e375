"""Reading a whole file checked against its size and CRC-32, without copying a big one.

A file of :data:`MAP_MIN_BYTES` or more is mapped privately (copy-on-write) rather than read:
its pages stay the kernel's page cache until someone writes to them, so a numpy array or an
Arrow buffer decoded over the mapping holds the file's bytes in place, and is still writable
(a write copies only the page it touches, never the file). The mapping lives as long as a
value decoded over it; removing or renaming the file meanwhile does not disturb it (the
files read this way are only ever replaced by a rename, never rewritten in place).
"""

from __future__ import annotations

import mmap
import os
from pathlib import Path

from .crc import crc32

#: Files at least this big are mapped; smaller ones are read (a mapping and its page faults
#: cost more than copying a few hundred KiB).
MAP_MIN_BYTES = 1 << 20


#: What :class:`CheckedFileError` found (its ``kind``).
MISSING, UNREADABLE, DAMAGED = "missing", "unreadable", "damaged"


class CheckedFileError(OSError):
    """A file that is missing, unreadable, or not the size and CRC-32 expected (``kind``:
    MISSING, UNREADABLE, DAMAGED); ``why`` says so in words that follow the file's name."""

    def __init__(self, path: Path, kind: str, why: str) -> None:
        super().__init__(f"{path} {why}")
        self.path = path
        self.kind = kind
        self.why = why


def read_checked(path: Path, size: int, crc: int, *, mapped: bool = False
                 ) -> bytes | memoryview:
    """The bytes of ``path`` checked to be ``size`` bytes with CRC-32 ``crc`` (CheckedFileError
    otherwise); with ``mapped``, a big file comes as a writable private mapping (for a value
    decoded in place; bytes for anything that pickles or sends them)."""
    try:
        fd = os.open(path, os.O_RDONLY)
    except FileNotFoundError:
        raise CheckedFileError(path, MISSING, "is missing") from None
    except OSError as exc:
        raise CheckedFileError(path, UNREADABLE,
                               f"cannot be read ({exc.strerror or exc})") from None
    try:
        held = os.fstat(fd).st_size
        if held != size:
            raise CheckedFileError(path, DAMAGED, f"is damaged: it holds {held} bytes, "
                                                  f"{size} were expected")
        if mapped and size >= MAP_MIN_BYTES:
            data: bytes | memoryview = memoryview(mmap.mmap(fd, size, access=mmap.ACCESS_COPY))
        else:
            with os.fdopen(os.dup(fd), "rb") as f:
                data = f.read()
    except OSError as exc:
        if isinstance(exc, CheckedFileError):
            raise
        raise CheckedFileError(path, UNREADABLE,
                               f"cannot be read ({exc.strerror or exc})") from None
    finally:
        os.close(fd)
    held_crc = crc32(data)
    if len(data) != size or held_crc != crc:
        raise CheckedFileError(path, DAMAGED, f"is damaged: {len(data)} bytes with CRC-32 "
                                              f"{held_crc:08x}, {size} bytes with CRC-32 "
                                              f"{crc:08x} were expected")
    return data


__all__ = ["DAMAGED", "MAP_MIN_BYTES", "MISSING", "UNREADABLE", "CheckedFileError", "read_checked"]
