"""Sabot's HTTP API: ``server.HttpApi`` over a ``backend.NodeBackend`` (the composition roots
in :mod:`sabot.node` wire it to the local engine, the coordinator or a worker)."""
