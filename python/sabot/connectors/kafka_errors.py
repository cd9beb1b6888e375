"""The error of the Kafka connectors: the broker or the client refused or failed an operation."""

from __future__ import annotations

from ..errors import SabotError


class KafkaConnectorError(RuntimeError, SabotError):
    """Kafka failed an operation of a source or a sink (a message not delivered, a transaction
    that could not commit, a producer fenced by a newer one, a topic that does not exist).

    ``code`` is the librdkafka error name when the client gave one (``"PRODUCER_FENCED"``,
    ``"_MSG_TIMED_OUT"``, ...), else None; ``fenced`` is True when another producer with the same
    transactional id has taken over, so this one can never commit again.
    """

    def __init__(self, message: str, *, code: str | None = None, fenced: bool = False) -> None:
        self.code = code
        self.fenced = fenced
        super().__init__(message)
