"""The Nexmark benchmark on Sabot streams: the event generator and the queries.

``generator`` makes the events (persons, auctions, bids) as Arrow batches, deterministic for a
seed; ``queries`` holds q0-q5, q7 and q8 as functions of the streams, for tests, ``bench/`` and
later harnesses.
"""

from __future__ import annotations

from .generator import AUCTION_SCHEMA, BID_SCHEMA, PERSON_SCHEMA, GeneratorConfig, generate
from .queries import QUERIES

__all__ = ["AUCTION_SCHEMA", "BID_SCHEMA", "PERSON_SCHEMA", "QUERIES", "GeneratorConfig", "generate"]
