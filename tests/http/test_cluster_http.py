"""The HTTP API, metrics, status page and ``sabot-node status`` of a real cluster: a
coordinator and two workers as daemons on loopback (tests/nodes.py)."""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
from prometheus_client.parser import text_string_to_metric_families


import sabot_test_nodes as nodes  # registered by tests/conftest.py


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    c = nodes.Cluster(tmp_path_factory.mktemp("cluster-http"),
                      {"CLUSTER_NAME": "http-test", "LOG_LEVEL": "WARNING"})
    try:
        c.start_coordinator()
        c.add_worker()
        c.add_worker()
        c.wait_workers(2)
        yield c
    finally:
        c.stop()


def metric_values(text: str, name: str) -> dict[tuple, float]:
    out = {}
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            if s.name == name:
                out[tuple(sorted(s.labels.items()))] = s.value
    return out


def test_readme_curl_against_the_coordinator(cluster) -> None:
    url = cluster.coordinator.url
    out = subprocess.run(
        ["bash", "-c", f"curl -sS -X POST {url}/submit_job "
         "-H 'Content-Type: application/json' "
         "-d '{\"data\": [1,2,3,4,5], \"processor_func\": \"square\"}'"],
        capture_output=True, text=True, timeout=60)
    job_id = json.loads(out.stdout)["job_id"]
    assert cluster.coordinator.wait_job(job_id)["result"] == [1, 4, 9, 16, 25]


def test_cluster_endpoint_only_on_the_coordinator(cluster) -> None:
    info = cluster.coordinator.request("GET", "/cluster")
    assert info.status == 200 and info.json["cluster_name"] == "http-test"
    worker = cluster.workers[0].request("GET", "/cluster")
    assert worker.status == 404 and "not a coordinator" in worker.json["error"]


def test_nodes_and_metrics_of_the_cluster(cluster) -> None:
    workers = cluster.alive_workers()
    assert len(workers) == 2
    coordinator_metrics = cluster.coordinator.request("GET", "/metrics").body.decode()
    alive = metric_values(coordinator_metrics, "sabot_nodes")
    assert any(dict(k).get("state") == "alive" and v == 2 for k, v in alive.items()), alive
    assert metric_values(coordinator_metrics, "sabot_queue_depth")
    for worker in cluster.workers:
        text = worker.request("GET", "/metrics").body.decode()
        for name in ("sabot_processing_throughput_items_per_second", "sabot_queue_depth",
                     "sabot_worker_utilization_percent"):
            labels = [dict(k) for k in metric_values(text, name)]
            assert labels and labels[0]["cluster"] == "http-test", (name, labels)
            assert labels[0]["node"] != "local"


def test_status_page_shows_the_workers(cluster, dump_dom) -> None:
    job_id = cluster.coordinator.submit(list(range(100)))
    cluster.coordinator.wait_job(job_id)
    dom = dump_dom(cluster.coordinator.url + "/")
    for worker in cluster.alive_workers():
        assert f'class="live" data-node-id="{worker["node_id"]}"' in dom
    assert f'data-job-id="{job_id}"' in dom


@pytest.mark.skipif(shutil.which("sabot-node") is None, reason="sabot-node is not installed")
def test_sabot_node_status_lists_the_workers(cluster) -> None:
    out = subprocess.run(
        ["sabot-node", "status", "--coordinator", f"127.0.0.1:{cluster.coordinator.http_port}"],
        capture_output=True, text=True, timeout=60, env=nodes.child_env())
    assert out.returncode == 0, out.stderr
    for worker in cluster.alive_workers():
        assert worker["node_id"] in out.stdout
    assert "coordinator" in out.stdout


@pytest.fixture(scope="module")
def coordinator_schema(cluster):
    schemathesis = pytest.importorskip("schemathesis")
    return schemathesis.openapi.from_url(cluster.coordinator.url + "/openapi.json")


def _fuzz_schema():
    try:
        import schemathesis
    except ImportError:
        return None
    return schemathesis.pytest.from_fixture("coordinator_schema")


_coordinator = _fuzz_schema()
if _coordinator is not None:
    from hypothesis import HealthCheck, settings
    from schemathesis.checks import positive_data_acceptance

    @_coordinator.parametrize()
    @settings(max_examples=10, deadline=None, derandomize=True,
              suppress_health_check=list(HealthCheck))
    def test_coordinator_api_conforms_to_openapi(case) -> None:
        # A schema-valid request may name a file the node lacks: a 400 by design.
        case.call_and_validate(excluded_checks=[positive_data_acceptance])
