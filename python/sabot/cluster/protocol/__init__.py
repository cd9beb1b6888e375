"""The cluster wire protocol: version, messages, codec and data encodings (docs/protocol.md)."""

from __future__ import annotations

from .codec import Envelope, ReplayGuard, Sender, decode, decode_header, encode
from .messages import *
from .messages import REGISTRY, Message
from .version import HEADER, MAGIC, PROTOCOL_VERSION

__all__ = [
           "HEADER",
           "MAGIC",
           "PROTOCOL_VERSION",
           "REGISTRY",
           "Envelope",
           "Message",
           "ReplayGuard",
           "Sender",
           "decode",
           "decode_header",
           "encode",
]
