"""CRC-32 of bytes, as zlib computes it (the polynomial of zlib, gzip and PNG: the values are
zlib's own, so files checksummed before read back the same), at zlib-ng's speed: it folds with
the CPU's carry-less multiply, about 3x the system zlib on this project's machines. Every
spool file, result file and checkpoint file is checksummed when written and when read, so a
bulk job's bytes pass through this four times."""

from __future__ import annotations

from zlib_ng import zlib_ng

#: ``crc32(data, value=0)``: the CRC-32 of ``data`` (any contiguous buffer), continuing from
#: ``value`` (the CRC of the bytes before it).
crc32 = zlib_ng.crc32

__all__ = ["crc32"]
