"""The one codec: message <-> ZeroMQ frame.

A message is one frame: the fixed 24-byte header (:data:`~.version.HEADER`) followed by a
msgpack map body. A ZeroMQ message carries one or more such frames (a sender may put several
messages to the same peer into one ZeroMQ message, each frame with its own sequence number);
they are handled in frame order.
Decoding checks the magic, the version, the type code, the frame count and every field, and
raises :class:`~sabot.errors.ProtocolError` (or :class:`~sabot.errors.VersionMismatchError`)
naming what was wrong. Replay is detected per peer by :class:`ReplayGuard`.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Sequence
from dataclasses import dataclass

import msgpack

from ...errors import ProtocolError, VersionMismatchError
from .messages import REGISTRY, Hello, Message, Refused
from .version import HEADER, MAGIC, PROTOCOL_VERSION

log = logging.getLogger(__name__)

#: Peers whose sessions a ReplayGuard remembers.
MAX_PEERS = 65536

#: Most frames (messages) one ZeroMQ message may carry.
MAX_FRAMES = 4096

#: Messages a peer of another protocol version can still decode (their bodies are frozen).
_VERSIONLESS = (Hello.CODE, Refused.CODE)


@dataclass(slots=True)
class Envelope:
    """A decoded message with its header fields."""

    version: int
    session: int
    seq: int
    msg: Message


class Sender:
    """One sending session: a random session id and increasing sequence numbers."""

    __slots__ = ("_seq", "session")

    def __init__(self) -> None:
        self.session = int.from_bytes(os.urandom(8), "big") or 1
        self._seq = 0

    def encode(self, msg: Message, version: int = PROTOCOL_VERSION) -> list[bytes]:
        self._seq += 1
        return encode(msg, self.session, self._seq, version)

    def encode_many(self, msgs: Sequence[Message]) -> list[bytes]:
        """Several messages as the frames of one ZeroMQ message, in order. One that cannot be
        encoded is logged and left out, never the others with it."""
        frames: list[bytes] = []
        for msg in msgs:
            try:
                frames += self.encode(msg)
            except Exception:
                log.exception("cannot encode %s; it is not sent", msg.OP)
        return frames


def encode(msg: Message, session: int, seq: int, version: int = PROTOCOL_VERSION) -> list[bytes]:
    """One ZeroMQ frame: the fixed header followed by the msgpack body."""
    header = HEADER.pack(MAGIC, version, msg.CODE, session, seq)
    return [header + msgpack.packb(msg.to_body(), use_bin_type=True)]


def decode_header(frame: bytes) -> tuple[int, int, int, int]:
    """(version, type code, session, seq) from the start of a message frame."""
    if len(frame) < HEADER.size:
        raise ProtocolError(
            f"message has {len(frame)} bytes, less than its {HEADER.size}-byte header "
            "(truncated or not a Sabot message)")
    magic, version, code, session, seq = HEADER.unpack_from(frame)
    if magic != MAGIC:
        raise ProtocolError(f"bad magic {magic!r}, expected {MAGIC!r} (not a Sabot message)")
    return version, code, session, seq


def decode(frames: Sequence[bytes]) -> Envelope:
    """Decode a ZeroMQ message of exactly one frame (header + body); raises ProtocolError for
    anything malformed. Peers that may batch use :func:`check_frames` and
    :func:`decode_frame`."""
    if len(frames) != 1:
        raise ProtocolError(f"expected one message (1 frame: header + body), got {len(frames)} "
                            "frames")
    return decode_frame(frames[0])


def check_frames(frames: Sequence[bytes]) -> None:
    """Raise ProtocolError for a ZeroMQ message that cannot hold Sabot messages (no frame, or
    more than :data:`MAX_FRAMES`)."""
    if not frames:
        raise ProtocolError("an empty ZeroMQ message (no frame)")
    if len(frames) > MAX_FRAMES:
        raise ProtocolError(f"a ZeroMQ message of {len(frames)} frames; at most {MAX_FRAMES} "
                            "messages travel together")


def decode_frame(frame: bytes) -> Envelope:
    """Decode one message frame (header + body); raises ProtocolError for anything
    malformed."""
    version, code, session, seq = decode_header(frame)
    cls = REGISTRY.get(code)
    if cls is None:
        raise ProtocolError(f"unknown message type {code}")
    if version != PROTOCOL_VERSION and code not in _VERSIONLESS:
        raise VersionMismatchError(
            f"peer speaks protocol version {version}, this node speaks {PROTOCOL_VERSION}")
    if session == 0 or seq == 0:
        raise ProtocolError("session and sequence number must be non-zero")
    try:
        body = msgpack.unpackb(memoryview(frame)[HEADER.size:], raw=False,
                               strict_map_key=False, use_list=True)
    except (ValueError, msgpack.ExtraData, msgpack.FormatError, msgpack.StackError) as exc:
        raise ProtocolError(f"{cls.OP}: body is not valid msgpack ({exc})") from None
    return Envelope(version, session, seq, cls.from_body(body))


class ReplayGuard:
    """Per-peer session tracking: a message must carry the peer's current session and a sequence
    number above the last one seen; anything else is a replay (or a stale session)."""

    __slots__ = ("_last",)

    def __init__(self) -> None:
        self._last: dict[bytes, tuple[int, int]] = {}

    def check(self, peer: bytes, env: Envelope) -> bool:
        """True when the message is accepted; False when it belongs to no known session (the
        peer must say hello first, e.g. after a coordinator restart). Raises ProtocolError for
        a replayed or reordered message."""
        known = self._last.get(peer)
        if known is not None and known[0] == env.session:
            if env.seq <= known[1]:
                raise ProtocolError(
                    f"replayed or reordered message: seq {env.seq} <= last seen {known[1]}")
        elif not isinstance(env.msg, Hello):
            return False
        elif known is None and len(self._last) >= MAX_PEERS:
            # Forget the longest-known peer; should it still be there, it is asked to say
            # hello again, which costs it one round trip.
            self._last.pop(next(iter(self._last)))
        self._last[peer] = (env.session, env.seq)
        return True

    def forget(self, peer: bytes) -> None:
        self._last.pop(peer, None)


__all__ = ["MAX_FRAMES", "Envelope", "ReplayGuard", "Sender", "check_frames", "decode",
           "decode_frame", "decode_header", "encode"]
