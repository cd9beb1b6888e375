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
from .error_codes import FATAL_REFUSALS, ErrorCode, exception_for, refusal_error, reply_or_raise
from .messages import *
from .messages import REGISTRY, Message
from .version import HEADER, MAGIC, PROTOCOL_VERSION

__all__ = [
           "FATAL_REFUSALS",
           "HEADER",
           "MAX_FRAMES",
           "MAGIC",
           "PROTOCOL_VERSION",
           "REGISTRY",
           "Envelope",
           "ErrorCode",
           "Message",
           "ReplayGuard",
           "Sender",
           "check_frames",
           "decode",
           "decode_frame",
           "decode_header",
           "encode",
           "exception_for",
           "refusal_error",
           "reply_or_raise",
]
