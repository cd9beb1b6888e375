"""The parts of the streaming API that the durability issue delivers (Kafka, checkpoints)."""

from __future__ import annotations

from typing import NoReturn

from ..errors import NotYetSupportedError


def not_yet(what: str) -> NoReturn:
    raise NotYetSupportedError(
        f"{what} is not yet available (streaming durability issue: Kafka connectors, "
        "checkpoints and state directories come with it); this release runs streams on one "
        "node without durable state")
