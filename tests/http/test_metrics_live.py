"""GET /metrics of a running node: the README's names, moving while a job runs."""

from __future__ import annotations

import asyncio
import time

import pyarrow as pa
import pyarrow.parquet as pq
from prometheus_client.parser import text_string_to_metric_families
from sabot.node.local_node import LocalBackend


def scrape(node) -> dict[str, dict[tuple[tuple[str, str], ...], float]]:
    status, headers, text = node.request("GET", "/metrics")
    assert status == 200 and headers["Content-Type"].startswith("text/plain")
    out: dict[str, dict] = {}
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            out.setdefault(s.name, {})[tuple(sorted(s.labels.items()))] = s.value
    return out


def one(metrics: dict, name: str, node, **labels: str) -> float:
    key = tuple(sorted({"cluster": node.config.cluster_name, "node": node.backend.node_id,
                        **labels}.items()))
    return metrics[name][key]


def test_readme_metrics_move_while_a_job_runs(node_factory) -> None:
    node = node_factory(gated=True, cluster_name="metrics-test")
    before = scrape(node)
    items_before = sum(v for k, v in before.get("sabot_items_processed_total", {}).items()
                       if ("state", "failed") not in k)
    for name in ("sabot_processing_throughput_items_per_second", "sabot_queue_depth",
                 "sabot_worker_utilization_percent"):
        assert one(before, name, node) >= 0  # present with cluster and node labels

    n = 200_000
    job_id = node.submit(list(range(n)))
    chunks = -(-n // max(4096, -(-n // 50)))
    assert one(scrape(node), "sabot_queue_depth", node) == chunks  # all waiting

    node.release(10)
    deadline = time.monotonic() + 60
    while node.request("GET", f"/job/{job_id}")[2]["progress"]["done"] < 10 * 4096:
        assert time.monotonic() < deadline
        time.sleep(0.02)
    during = scrape(node)
    assert one(during, "sabot_queue_depth", node) == chunks - 10
    assert one(during, "sabot_processing_throughput_items_per_second", node) > 0
    assert one(during, "sabot_jobs_by_state", node, state="running") == 1
    items_during = sum(v for k, v in during["sabot_items_processed_total"].items()
                       if ("state", "failed") not in k)
    assert items_during - items_before == 10 * 4096

    node.release(chunks)
    assert node.wait(job_id)["status"] == "completed"
    after = scrape(node)
    assert one(after, "sabot_queue_depth", node) == 0
    assert one(after, "sabot_jobs_by_state", node, state="running") == 0
    assert one(after, "sabot_jobs_by_state", node, state="completed") == 1
    assert one(after, "sabot_node_info", node, role="single-node", version="0.1.0") == 1
    assert sum(after["sabot_http_requests_total"].values()) > 0


def test_utilization_is_higher_while_working_than_idle(node_factory) -> None:
    node = node_factory(cluster_name="util-test")
    pq.write_table(pa.table({"s": [str(i) * 3 for i in range(3_000_000)]}),
                   node.config.data_dir / "strings.parquet")
    scrape(node)
    time.sleep(1.0)
    idle = one(scrape(node), "sabot_worker_utilization_percent", node)
    status, _, body = node.request("POST", "/submit_job",
                                   {"input": {"path": "strings.parquet"}, "processor_func": "len"})
    assert status == 200
    node.wait(body["job_id"])
    busy = one(scrape(node), "sabot_worker_utilization_percent", node)
    assert busy > idle


def test_a_backend_counts_items_itself_when_not_the_engine(node) -> None:
    metrics = node.api.metrics

    async def compute(data, func):  # a process function that is not the LocalEngine
        return [x + 1 for x in data]

    async def run_job() -> tuple[float, dict]:
        backend = LocalBackend(node.config, compute, metrics=metrics)
        before = metrics.items_completed
        job_id = (await backend.submit_job([1, 2, 3], "increment"))["job_id"]
        while (job := await backend.get_job(job_id))["status"] == "running":
            await asyncio.sleep(0.01)
        await backend.close()
        metrics.set_load_source(node.backend.load)
        return metrics.items_completed - before, job

    counted, job = node.run(run_job())
    assert job["result"] == [2, 3, 4] and counted == 3
