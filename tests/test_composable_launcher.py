"""``python -m sabot.composable_launcher`` as a user runs it: refusals are one clean line."""

from __future__ import annotations

from pathlib import Path

from sabot_test_nodes import Cluster  # type: ignore[import-not-found]


def test_a_worker_of_another_cluster_exits_with_one_line(tmp_path: Path) -> None:
    cluster = Cluster(tmp_path)
    try:
        cluster.start_coordinator()
        worker = cluster.add_worker(wait=False, CLUSTER_NAME="other-cluster")
        assert worker.proc is not None and worker.proc.wait(60) == 1
        output = worker.log_tail(200)
        assert "Traceback" not in output, output
        last = [line for line in output.splitlines() if line.strip()][-1]
        assert last.startswith("sabot: error: cluster name mismatch"), last
        assert "CLUSTER_NAME='other-cluster'" in last and "CLUSTER_NAME='sabot-cluster'" in last
    finally:
        cluster.stop()
