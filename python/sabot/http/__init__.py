"""Sabot's HTTP API: ``server.HttpApi`` over a ``backend.NodeBackend``
(``local_backend.LocalBackend`` for a single node; the coordinator and worker bring their own)."""
