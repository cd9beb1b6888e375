"""The cluster wire protocol: version, messages, codec and data encodings (docs/protocol.md)."""

from __future__ import annotations

from .codec import Envelope, ReplayGuard, Sender, decode, decode_header, encode
from .messages import *  # noqa: F401,F403  (one class per message)
from .messages import REGISTRY, Message
from .version import HEADER, MAGIC, PROTOCOL_VERSION

__all__ = ["PROTOCOL_VERSION", "MAGIC", "HEADER", "Envelope", "ReplayGuard", "Sender",
           "decode", "decode_header", "encode", "REGISTRY", "Message"]
