"""The composition roots: where the HTTP API is wired to the local engine, the coordinator or
the worker. Nothing below this package (engine, cluster, http) imports it."""
