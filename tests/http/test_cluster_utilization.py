"""The status page's headline figures on a real cluster. The coordinator's utilization (its /metrics gauge, the status page's headline figure) is the
CPU its workers report, the figure of the per-node rows, not the share of worker slots holding a
morsel: a job of items that only sleep fills every slot while the CPUs idle."""

from __future__ import annotations

import time
from typing import Any, Iterator

import pytest
from prometheus_client.parser import text_string_to_metric_families

import sabot_test_nodes as nodes

make_items = nodes.chaos_procs().make_items


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    c = nodes.Cluster(tmp_path_factory.mktemp("utilization"),
                      {**nodes.CHAOS_SETTINGS, "SABOT_HEARTBEAT_S": "0.2", "MAX_WORKERS": "2"})
    try:
        c.start_coordinator()
        c.add_worker()
        c.wait_workers(1)
        yield c
    finally:
        c.stop()


def _gauge(text: str, name: str) -> float:
    values = [s.value for f in text_string_to_metric_families(text) for s in f.samples
              if s.name == name]
    assert len(values) == 1, (name, values)
    return values[0]


def test_the_throughput_history_adds_up_to_the_items_done(cluster: Any) -> None:
    """The status page's chart (/history): a large job that finishes within a sample or two
    shows all its items, at the rate of the interval they finished in — the samples' items add
    up to the job's, instead of a 5 s average smeared over the samples that follow."""
    def items_so_far() -> int:
        return sum(s["items"] for s in cluster.coordinator.request("GET", "/history").json["samples"])

    before = items_so_far()
    n = 400_000
    job = cluster.coordinator.wait_job(cluster.coordinator.submit(list(range(n))), timeout=120)
    assert job["status"] == "completed"
    deadline = time.monotonic() + 30
    while items_so_far() - before < n and time.monotonic() < deadline:
        time.sleep(0.5)
    samples = cluster.coordinator.request("GET", "/history").json["samples"]
    assert items_so_far() - before == n, samples
    # Each sample's rate is its own items over the interval they took.
    interval = cluster.coordinator.request("GET", "/history").json["interval_s"]
    busiest = max(samples, key=lambda s: s["items"])
    assert busiest["items_per_second"] >= busiest["items"] / (interval * 2), samples


def test_utilization_is_the_workers_cpu_not_their_slots(cluster: Any) -> None:
    job_id = cluster.coordinator.submit(make_items(600, pad=4000), "chaos_slow")
    readings = []
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline and len(readings) < 5:
        stats = cluster.coordinator.request("GET", "/stats").json
        slots = stats["slots"]
        if slots["total"] and slots["busy"] >= slots["total"]:  # every slot holds a morsel
            text = cluster.coordinator.request("GET", "/metrics").body.decode()
            nodes_cpu = [n["utilization_percent"] for n in cluster.alive_workers()]
            readings.append((_gauge(text, "sabot_worker_utilization_percent"), nodes_cpu))
        time.sleep(0.3)
    cluster.coordinator.request("DELETE", f"/job/{job_id}")
    assert readings, "the job never filled the worker's slots"
    # Sleeping items: the slots are full, the CPU is not. (A slot count would read 100 every
    # time; one reading may catch the pool processes starting, so the median is judged.)
    figures = sorted(f for f, _ in readings)
    assert figures[len(figures) // 2] < 60, readings
    for coordinator_figure, nodes_cpu in readings:
        assert coordinator_figure <= max(nodes_cpu) + 25, readings
