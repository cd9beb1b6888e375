"""The frames of the data port: spool files put and got by peers that do not share the data dir.

A request is one ZeroMQ message from a DEALER to the coordinator's data port (a CURVE ROUTER,
the cluster's keys, as the control port):

    [head, op, name, meta, data...]

``head`` is :data:`MAGIC` and the protocol version (u16, network order); ``op`` is ``stat``,
``put`` or ``get``; ``name`` the file's path under the data dir (UTF-8,
:mod:`sabot.cluster.spool_names`); ``meta`` a msgpack map:

- ``put``: ``upload`` (the upload's id, chosen by the sender), ``offset`` (where ``data`` goes),
  ``last`` (true on the upload's last request, which also carries ``size`` and ``crc``: the
  whole file's length and CRC-32, checked before the file takes its name). A request sent again
  (its reply was lost) writes the same bytes at the same place.
- ``get``: ``offset`` and ``length`` (at most :data:`CHUNK_BYTES`).
- ``stat``: nothing.

A reply is ``[b"ok", meta, data...]`` (``stat`` and ``get``: meta ``size``, the file's length;
``get`` carries the bytes) or ``[b"err", code, message]`` with a code of :data:`CODES`.
"""

from __future__ import annotations

import struct
from typing import Any

import msgpack

from ...errors import ProtocolError
from .version import PROTOCOL_VERSION

MAGIC = b"SABD"
_HEAD = struct.Struct("!4sH")
#: The most bytes one request or reply carries; bigger files go in several.
CHUNK_BYTES = 4 << 20
OPS = (b"stat", b"put", b"get")
OK, ERR = b"ok", b"err"
#: Why the data port refused a request.
VERSION, REFUSED, MISSING, DAMAGED, IO = "version", "refused", "missing", "damaged", "io"
CODES = (VERSION, REFUSED, MISSING, DAMAGED, IO)


class DataPortError(ProtocolError):
    """A data-port request refused, or a reply that is not one; ``code`` says why (CODES)."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code


def head() -> bytes:
    return _HEAD.pack(MAGIC, PROTOCOL_VERSION)


def request(op: bytes, name: str, meta: dict[str, Any], *data: Any) -> list[Any]:
    return [head(), op, name.encode(), msgpack.packb(meta), *data]


def ok(meta: dict[str, Any], *data: Any) -> list[Any]:
    return [OK, msgpack.packb(meta), *data]


def err(code: str, message: str) -> list[bytes]:
    return [ERR, code.encode(), message.encode("utf-8", "replace")]


def parse_request(frames: list[Any]) -> tuple[bytes, str, dict[str, Any], list[Any]]:
    """(op, name, meta, data frames) of a request; DataPortError when it is not one this
    version takes."""
    if len(frames) < 4 or len(bytes(frames[0])) != _HEAD.size:
        raise DataPortError(REFUSED, "a data-port request is [head, op, name, meta, data...]")
    magic, version = _HEAD.unpack(bytes(frames[0]))
    if magic != MAGIC:
        raise DataPortError(REFUSED, "not a Sabot data-port request (bad magic)")
    if version != PROTOCOL_VERSION:
        raise DataPortError(VERSION, f"protocol version {version} is not spoken here: this "
                            f"coordinator speaks version {PROTOCOL_VERSION} (upgrade the peer)")
    op = bytes(frames[1])
    if op not in OPS:
        raise DataPortError(REFUSED, f"unknown data-port op {op[:20]!r}: expected stat, put "
                            "or get")
    try:
        name = bytes(frames[2]).decode()
        meta = msgpack.unpackb(bytes(frames[3]), raw=False)
    except (UnicodeDecodeError, ValueError, msgpack.UnpackException):
        raise DataPortError(REFUSED, "a data-port request's name must be UTF-8 and its meta "
                            "a msgpack map") from None
    if not isinstance(meta, dict):
        raise DataPortError(REFUSED, "a data-port request's meta must be a msgpack map")
    return op, name, meta, frames[4:]


def parse_reply(frames: list[Any]) -> tuple[dict[str, Any], list[Any]]:
    """(meta, data frames) of an ``ok`` reply; DataPortError for an ``err`` one (its code) or
    a malformed one (IO)."""
    kind = bytes(frames[0]) if frames else b""
    if kind == ERR and len(frames) >= 3:
        raise DataPortError(bytes(frames[1]).decode("ascii", "replace"),
                            bytes(frames[2]).decode("utf-8", "replace"))
    try:
        meta = msgpack.unpackb(bytes(frames[1]), raw=False) if kind == OK and \
            len(frames) >= 2 else None
    except (ValueError, msgpack.UnpackException):
        meta = None
    if not isinstance(meta, dict):
        raise DataPortError(IO, "the data port answered with something that is not a reply")
    return meta, frames[2:]


def int_field(meta: dict[str, Any], key: str, low: int = 0, high: int = 1 << 62) -> int:
    value = meta.get(key)
    if not isinstance(value, int) or isinstance(value, bool) or not low <= value <= high:
        raise DataPortError(REFUSED, f"data-port meta {key!r} must be an integer from {low} "
                            f"to {high}, got {value!r}")
    return value


__all__ = [
    "CHUNK_BYTES",
    "CODES",
    "DAMAGED",
    "IO",
    "MAGIC",
    "MISSING",
    "REFUSED",
    "VERSION",
    "DataPortError",
    "err",
    "head",
    "int_field",
    "ok",
    "parse_reply",
    "parse_request",
    "request",
]
