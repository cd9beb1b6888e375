"""Sabot's cluster: a coordinator and workers that talk ZeroMQ (CURVE-authenticated).

The public entry points live in :mod:`sabot.distributed` (re-exported from ``sabot``), which
starts a coordinator through :mod:`sabot.node.coordinator_node`. The wire protocol is defined in
:mod:`sabot.cluster.protocol` and documented in ``docs/protocol.md``.
"""

from __future__ import annotations
