"""A real Prometheus server (Debian package ``prometheus``) scrapes a node's /metrics."""

from __future__ import annotations

import json
import shutil
import socket
import subprocess
import time
import urllib.parse
import urllib.request

import pytest

PROMETHEUS = shutil.which("prometheus")
pytestmark = pytest.mark.skipif(
    PROMETHEUS is None, reason="the prometheus binary is absent (apt-get install prometheus)")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def query(port: int, promql: str) -> list[dict]:
    url = f"http://127.0.0.1:{port}/api/v1/query?" + urllib.parse.urlencode({"query": promql})
    with urllib.request.urlopen(url, timeout=10) as resp:
        body = json.load(resp)
    assert body["status"] == "success", body
    return body["data"]["result"]


def test_prometheus_scrapes_a_node(node, tmp_path) -> None:
    job_id = node.submit(list(range(1000)))
    node.wait(job_id)
    port = free_port()
    config = tmp_path / "prometheus.yml"
    config.write_text(
        "global:\n  scrape_interval: 1s\n  evaluation_interval: 1s\n"
        "scrape_configs:\n  - job_name: sabot\n    static_configs:\n"
        f"      - targets: ['127.0.0.1:{node.port}']\n")
    proc = subprocess.Popen(
        [PROMETHEUS, f"--config.file={config}", f"--storage.tsdb.path={tmp_path / 'tsdb'}",
         f"--web.listen-address=127.0.0.1:{port}"],
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        up, depth = [], []
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and not (up and depth):
            time.sleep(0.5)
            assert proc.poll() is None, proc.stderr.read().decode()[-2000:]
            try:
                up = [r for r in query(port, 'up{job="sabot"}') if r["value"][1] == "1"]
                depth = query(port, f'sabot_queue_depth{{node="{node.backend.node_id}",'
                                    f'cluster="{node.config.cluster_name}"}}')
            except OSError:
                continue  # Prometheus is still starting
        assert up, "Prometheus never saw the node up"
        assert depth and depth[0]["value"][1] == "0"
        items = query(port, "sum(sabot_items_processed_total)")
        assert float(items[0]["value"][1]) >= 1000
    finally:
        proc.terminate()
        try:
            proc.wait(20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(10)
        proc.stderr.close()
