"""Connectors to external systems: Kafka topics read into and written from Arrow batches.

``KafkaBatchSource``, ``PartitionBatch`` and ``KafkaBatchSink`` need confluent-kafka (``pip
install 'sabot-engine[kafka]'``); they are imported when first used, so importing this package
(or ``BadMessage``) does not. docs/kafka.md describes the API and its guarantees.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from .kafka_decode import BadMessage
from .kafka_errors import KafkaConnectorError

if TYPE_CHECKING:
    from .kafka_sink import KafkaBatchSink
    from .kafka_source import KafkaBatchSource, PartitionBatch

__all__ = ["BadMessage", "KafkaBatchSink", "KafkaBatchSource", "KafkaConnectorError",
           "PartitionBatch"]

_LAZY = {"KafkaBatchSource": "kafka_source", "PartitionBatch": "kafka_source",
         "KafkaBatchSink": "kafka_sink"}


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    import importlib

    value = getattr(importlib.import_module(f"{__name__}.{module}"), name)
    globals()[name] = value
    return value
