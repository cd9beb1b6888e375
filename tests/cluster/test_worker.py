"""A worker node in this process (``sabot.create_worker_node``) against a coordinator in this
process: its HTTP API while it serves and drains, where its morsels run, and a refusal."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import time
import urllib.error
import urllib.request

import pytest
import sabot
from sabot.config import load_config
from sabot.node.worker_node import ServedWorker


def _config(tmp_path):
    # (in this process: one core for the pool, quick heartbeats; every port chosen freely)
    return load_config(env={}, host="127.0.0.1", port=0, zmq_port=0, max_workers=1,
                       data_dir=tmp_path / "data", cluster_key_file=tmp_path / "cluster.key",
                       heartbeat_s=0.2, node_timeout_s=2)


@contextlib.asynccontextmanager
async def _cluster(tmp_path):
    """A started coordinator and one started worker node, both in this process."""
    config = _config(tmp_path)
    coordinator = await sabot.create_distributed_coordinator(config=config).start()
    host, port = coordinator.address
    worker = sabot.create_worker_node(host, port, config=config)
    try:
        await worker.start()
        yield coordinator, worker
    finally:
        await worker.stop()
        await coordinator.stop()


def _get(port: int, path: str) -> tuple[int, dict]:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=5) as r:
            return r.status, json.loads(r.read())
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read() or b"{}")


def test_a_draining_worker_finishes_its_morsel_and_says_it_is_not_ready(tmp_path):
    async def main():
        async with _cluster(tmp_path) as (coordinator, worker):
            http = worker.http_port
            assert (await asyncio.to_thread(_get, http, "/ready"))[0] == 200
            status, health = await asyncio.to_thread(_get, http, "/health")
            assert status == 200 and health["coordinator_connected"] is True
            assert health["draining"] is False

            slow = lambda x: time.sleep(1.0) or x * 3
            job = await coordinator.submit([1, 2], slow)
            deadline = time.monotonic() + 30
            while (await asyncio.to_thread(_get, http, "/health"))[1]["running"] == 0:
                assert time.monotonic() < deadline, "the morsel never started"
                await asyncio.sleep(0.05)
            stopping = asyncio.ensure_future(worker.stop())
            await asyncio.sleep(0.3)
            ready = await asyncio.to_thread(_get, http, "/ready")
            health = (await asyncio.to_thread(_get, http, "/health"))[1]
            await stopping
            result = await coordinator.result(job, timeout=30)
            with pytest.raises(OSError):
                await asyncio.to_thread(_get, http, "/health")
            return ready, health, result

    ready, health, result = asyncio.run(main())
    assert ready[0] == 503  # the drain is under way: no new work for this node
    assert health["draining"] is True and health["running"] == 1
    assert result == [3, 6]  # the running morsel finished and its result was kept


def test_user_functions_run_in_pool_processes_not_in_the_worker(tmp_path):
    async def main():
        async with _cluster(tmp_path) as (coordinator, _):
            pid = lambda x: os.getpid()
            small = await coordinator.result(await coordinator.submit([1, 2, 3], pid), timeout=60)
            big = await coordinator.result(
                await coordinator.submit(list(range(20_000)), pid), timeout=60)
            builtin = await coordinator.result(await coordinator.submit([1, 2, 3], "square"),
                                               timeout=60)
            return small, big, builtin

    small, big, builtin = asyncio.run(main())
    # This process is the worker node: a user's code never ran in it (a crash there would take
    # the node down), tiny morsels and bulk ones alike.
    assert os.getpid() not in set(small) | set(big)
    assert builtin == [1, 4, 9]


def test_a_worker_of_another_cluster_is_refused_and_stops_serving(tmp_path):
    async def main():
        config = _config(tmp_path)
        coordinator = await sabot.create_distributed_coordinator(config=config).start()
        host, port = coordinator.address
        node = ServedWorker(config.replace(cluster_name="another-cluster",
                                           coordinator_host=host, coordinator_port=port))
        try:
            with pytest.raises(sabot.ClusterMismatchError, match="'another-cluster'"):
                await node.start()
            with pytest.raises(OSError):  # its HTTP API went with it
                await asyncio.to_thread(_get, node.http_port, "/health")
            return node.worker.state
        finally:
            await node.stop()
            await coordinator.stop()

    assert asyncio.run(main()) == "stopped"
