"""Sabot's cluster: a coordinator and workers that talk ZeroMQ (CURVE-authenticated).

The public entry points live in :mod:`sabot.cluster.api` (re-exported from ``sabot``). The wire
protocol is defined in :mod:`sabot.cluster.protocol` and documented in ``docs/protocol.md``.
"""

from __future__ import annotations
