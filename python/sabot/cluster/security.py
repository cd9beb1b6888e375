"""The cluster secret and the CURVE keys derived from it.

One 32-byte secret (SABOT_CLUSTER_KEY, or the file SABOT_CLUSTER_KEY_FILE, created 0600 on first
start when absent) gives every node the same two CURVE key pairs: the coordinator's server pair
and the shared client pair that workers and clients present. A peer without the secret can
neither decrypt the coordinator's traffic nor pass its ZAP check. The secret is never logged.
"""

from __future__ import annotations

import binascii
import hashlib
import hmac
import logging
import os
from dataclasses import dataclass, field
from pathlib import Path

import zmq
from zmq.utils import z85

from ..config import Config
from ..errors import ConfigError

log = logging.getLogger(__name__)

SECRET_BYTES = 32


def generate_secret() -> str:
    """A new random cluster secret, Z85-encoded (40 characters); ``sabot-node keygen`` prints it."""
    return z85.encode(os.urandom(SECRET_BYTES)).decode("ascii")


def parse_secret(text: str, source: str) -> bytes:
    """32 bytes from Z85 (40 characters) or hex (64 characters); ConfigError otherwise."""
    value = text.strip()
    accepted = "32 bytes as 40 Z85 characters or 64 hex digits (sabot-node keygen makes one)"
    if len(value) == 40:
        try:
            raw = z85.decode(value.encode("ascii"))
        except (ValueError, UnicodeEncodeError, KeyError):
            raise ConfigError(source, "<hidden>", accepted) from None
    elif len(value) == 64:
        try:
            raw = binascii.unhexlify(value)
        except (ValueError, binascii.Error):
            raise ConfigError(source, "<hidden>", accepted) from None
    else:
        raise ConfigError(source, f"<hidden, {len(value)} characters>", accepted)
    if len(raw) != SECRET_BYTES:
        raise ConfigError(source, "<hidden>", accepted)
    return raw


def load_secret(config: Config, *, create: bool = True) -> bytes:
    """The cluster secret: SABOT_CLUSTER_KEY, else the key file (created when ``create``)."""
    if config.cluster_key is not None:
        return parse_secret(config.cluster_key, "SABOT_CLUSTER_KEY")
    path = Path(config.cluster_key_file)
    if not path.exists():
        if not create:
            raise ConfigError("SABOT_CLUSTER_KEY_FILE", str(path),
                              "an existing key file, or SABOT_CLUSTER_KEY")
        _create_key_file(path)
    try:
        text = path.read_text(encoding="ascii")
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError("SABOT_CLUSTER_KEY_FILE", str(path),
                          f"a readable key file ({exc.__class__.__name__})") from None
    return parse_secret(text, f"SABOT_CLUSTER_KEY_FILE ({path})")


def secret_source(config: Config) -> str:
    """Which setting the cluster secret is read from (for messages about a wrong key)."""
    if config.cluster_key is not None:
        return "SABOT_CLUSTER_KEY"
    return f"SABOT_CLUSTER_KEY_FILE ({Path(config.cluster_key_file)})"


def _create_key_file(path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        # O_EXCL: when two nodes start at once on one machine, one creates it, both read it.
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        return
    with os.fdopen(fd, "w", encoding="ascii") as fh:
        fh.write(generate_secret() + "\n")
    log.info("created a new cluster key file %s (mode 0600); give every node of this cluster "
             "the same key (SABOT_CLUSTER_KEY or SABOT_CLUSTER_KEY_FILE)", path)


def _derive(secret: bytes, label: bytes) -> bytes:
    return hmac.new(secret, b"sabot-curve-v1/" + label, hashlib.sha256).digest()


@dataclass(frozen=True)
class ClusterKeys:
    """The CURVE key pairs of a cluster (Z85 bytes, as libzmq takes them)."""

    server_public: bytes
    server_secret: bytes = field(repr=False)
    client_public: bytes
    client_secret: bytes = field(repr=False)
    #: Where the secret came from, for messages: "SABOT_CLUSTER_KEY" or
    #: "SABOT_CLUSTER_KEY_FILE (<path>)".
    source: str = "a given secret"

    @classmethod
    def from_secret(cls, secret: bytes, source: str = "a given secret") -> ClusterKeys:
        server_secret = z85.encode(_derive(secret, b"server"))
        client_secret = z85.encode(_derive(secret, b"client"))
        return cls(
            server_public=zmq.curve_public(server_secret),
            server_secret=server_secret,
            client_public=zmq.curve_public(client_secret),
            client_secret=client_secret,
            source=source,
        )

    @classmethod
    def from_config(cls, config: Config) -> ClusterKeys:
        return cls.from_secret(load_secret(config), secret_source(config))

    @property
    def fingerprint(self) -> str:
        """A short public digest of the server key, safe to log and to compare between nodes."""
        return hashlib.sha256(self.server_public).hexdigest()[:16]


__all__ = ["SECRET_BYTES", "ClusterKeys", "generate_secret", "load_secret", "parse_secret",
           "secret_source"]
