"""Node names (SABOT_NODE_NAME) on real daemons: a worker is known by the name it is given in
/nodes, in its own /health and in the metrics' ``node`` label; a second live worker that claims
the same name is refused for good with a message naming SABOT_NODE_NAME; the first keeps
working. Unset, a node makes its name from the host name."""

from __future__ import annotations

import socket
import subprocess
from typing import Any, Iterator

import pytest

import sabot_test_nodes as nodes


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    c = nodes.Cluster(tmp_path_factory.mktemp("names") / "cluster",
                      {"SABOT_HEARTBEAT_S": "0.2", "SABOT_NODE_TIMEOUT_S": "2"})
    c.start_coordinator(SABOT_NODE_NAME="coord-a")
    yield c
    c.stop()


def test_a_named_worker_is_known_by_its_name_everywhere(cluster: Any) -> None:
    worker = cluster.add_worker(SABOT_NODE_NAME="worker-1")
    cluster.wait_workers(1)
    assert [n["node_id"] for n in cluster.alive_workers()] == ["worker-1"]
    assert worker.request("GET", "/health").json["node_id"] == "worker-1"
    assert cluster.coordinator.request("GET", "/health").json["node_id"] == "coord-a"
    job = cluster.coordinator.wait_job(cluster.coordinator.submit([1, 2, 3]))
    assert job["result"] == [1, 4, 9]
    assert 'node="worker-1"' in worker.request("GET", "/metrics").body.decode()
    assert 'node="coord-a"' in cluster.coordinator.request("GET", "/metrics").body.decode()


def test_a_second_live_worker_with_the_same_name_is_refused(cluster: Any) -> None:
    if not cluster.alive_workers():
        cluster.add_worker(SABOT_NODE_NAME="worker-1")
        cluster.wait_workers(1)
    twin = cluster.add_worker(wait=False, SABOT_NODE_NAME="worker-1")
    try:
        twin.proc.wait(60)  # type: ignore[union-attr]
    except subprocess.TimeoutExpired:
        pass
    text = twin.log_text()
    assert twin.proc is not None and twin.proc.returncode not in (None, 0), text
    assert "node name 'worker-1' is taken" in text and "SABOT_NODE_NAME" in text, text
    assert "Traceback" not in text
    cluster.workers.remove(twin)
    twin.stop()
    # The first worker is still the one of that name, and still works.
    alive = cluster.alive_workers()
    assert [n["node_id"] for n in alive] == ["worker-1"]
    assert alive[0]["pid"] != twin.pid
    job = cluster.coordinator.wait_job(cluster.coordinator.submit([4, 5]))
    assert job["result"] == [16, 25]


def test_an_unnamed_worker_takes_its_name_from_the_host(cluster: Any) -> None:
    worker = cluster.add_worker()
    cluster.wait_workers(2)
    name = worker.request("GET", "/health").json["node_id"]
    assert name.startswith(f"worker-{socket.gethostname()}-")
    assert name in [n["node_id"] for n in cluster.alive_workers()]
