"""The cluster wire protocol: version, messages, codec and data encodings (docs/protocol.md)."""

from __future__ import annotations

from .codec import (
    MAX_FRAMES,
    Envelope,
    ReplayGuard,
    Sender,
    check_frames,
    decode,
    decode_frame,
    decode_header,
    encode,
)
from .messages import *
from .messages import REGISTRY, Message
from .version import HEADER, MAGIC, PROTOCOL_VERSION

__all__ = [
           "HEADER",
           "MAX_FRAMES",
           "MAGIC",
           "PROTOCOL_VERSION",
           "REGISTRY",
           "Envelope",
           "Message",
           "ReplayGuard",
           "Sender",
           "check_frames",
           "decode",
           "decode_frame",
           "decode_header",
           "encode",
]
