"""Running a StreamEnv's job on a cluster (``StreamEnv(cluster="HOST:PORT")``).

The client cloudpickles the job's graph (its sinks and everything upstream) and submits it to
the coordinator, which starts one task per instance on the workers (:mod:`.cluster_task`) and
tells the tasks where the others listen. The client then waits for the pipeline's end; what its
``collect()`` sinks gathered comes back from every instance, in instance order.
"""

from __future__ import annotations

import asyncio
import uuid
from typing import Any

import pyarrow as pa

from ..cluster.client import ClusterClient
from ..cluster.protocol import messages as m
from ..cluster.protocol.error_codes import reply_or_raise
from ..config import Config, load_config
from ..errors import ConfigError, PipelineFailedError
from .graph import Node

#: Seconds between two looks at a running pipeline's state.
POLL_S = 0.05
POLL_MAX_S = 0.1


def parse_address(cluster: str) -> tuple[str, int]:
    """``HOST:PORT`` (the coordinator's HTTP address) as (host, port)."""
    if not isinstance(cluster, str) or ":" not in cluster:
        raise ConfigError("cluster", cluster, "the coordinator's HTTP address as HOST:PORT "
                          "(e.g. 127.0.0.1:8080)")
    host, _, port = cluster.rpartition(":")
    host = host.strip("[]")
    if not host or not port.isdigit() or not 1 <= int(port) <= 65535:
        raise ConfigError("cluster", cluster, "HOST:PORT with a port from 1 to 65535")
    return host, int(port)


class ClusterRun:
    """One pipeline submitted to the coordinator at ``address`` and waited for."""

    def __init__(self, address: tuple[str, int], config: Config | None = None,
                 instances: int = 0, key_groups: int = 128,
                 checkpoint: dict[str, Any] | None = None, max_restarts: int = 3) -> None:
        self.address = address
        self.config = config or load_config()
        self.instances = instances
        self.key_groups = key_groups
        self.checkpoint = checkpoint
        self.max_restarts = max_restarts
        self.pipeline_id = f"p-{uuid.uuid4().hex[:12]}"
        self.info: dict[str, Any] = {}

    async def run(self, name: str, sinks: list[Node], threads: int | None, tick_ms: int
                  ) -> dict[str, pa.Table]:
        import cloudpickle

        graph = cloudpickle.dumps((name, sinks, threads, tick_ms), protocol=5)
        host, port = self.address
        client = ClusterClient(self.config, host, port)
        try:
            await client.connect()
            pid = self.pipeline_id
            reply_or_raise(await client.request(lambda rid: m.SubmitPipeline(
                rid, pid, name, graph, self.instances, self.key_groups, self.checkpoint,
                self.max_restarts)))
            delay = POLL_S
            while True:
                st = reply_or_raise(await client.request(lambda rid: m.GetPipeline(rid, pid)))
                assert isinstance(st, m.PipelineStatus)
                self.info = st.pipeline
                state = st.pipeline.get("state")
                if state == "finished":
                    return _tables(st.results)
                if state in ("failed", "cancelled"):
                    raise PipelineFailedError(f"pipeline {pid} ({name}) {state}: "
                                         f"{st.pipeline.get('error')}")
                await asyncio.sleep(delay)
                delay = min(POLL_MAX_S, delay * 1.5)
        finally:
            await client.close()


def _tables(results: list[Any]) -> dict[str, pa.Table]:
    by_sink: dict[str, list[tuple[int, pa.Table]]] = {}
    for sink, instance, data in results:
        table = pa.ipc.open_stream(pa.py_buffer(data)).read_all()
        by_sink.setdefault(str(sink), []).append((int(instance), table))
    out = {}
    for sink, parts in by_sink.items():
        tables = [t for _, t in sorted(parts, key=lambda x: x[0]) if t.num_columns]
        out[sink] = pa.concat_tables(tables, promote_options="permissive") if tables \
            else pa.table({})
    return out
