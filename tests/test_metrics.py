"""sabot.metrics: the exposition a Prometheus server reads, parsed by prometheus_client itself."""

from __future__ import annotations

import subprocess
import sys
import time

from prometheus_client.parser import text_string_to_metric_families
from sabot.metrics import CpuSampler, Metrics, _CounterRate, get_metrics

README_NAMES = ("sabot_processing_throughput_items_per_second", "sabot_queue_depth",
                "sabot_worker_utilization_percent")


def samples(metrics: Metrics) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    body, content_type = metrics.exposition()
    assert content_type.startswith("text/plain")
    out = {}
    for family in text_string_to_metric_families(body.decode()):
        for s in family.samples:
            out[(s.name, tuple(sorted(s.labels.items())))] = s.value
    return out


def value(metrics: Metrics, name: str, **labels: str) -> float | None:
    key = (name, tuple(sorted({"cluster": metrics.cluster, "node": metrics.node,
                               **labels}.items())))
    return samples(metrics).get(key)


def test_readme_names_exist_with_node_and_cluster_labels() -> None:
    m = Metrics("prod-eu", "worker-1")
    for name in README_NAMES:
        assert value(m, name) == 0.0, name


def test_load_source_drives_gauges_and_states_return_to_zero() -> None:
    m = Metrics("c", "n")
    load = {"queue_depth": 7, "utilization_percent": 42.5,
            "jobs": {"running": 2, "pending": 1}, "nodes": {"alive": 3}}
    m.set_load_source(lambda: load)
    assert value(m, "sabot_queue_depth") == 7
    assert value(m, "sabot_worker_utilization_percent") == 42.5
    assert value(m, "sabot_jobs_by_state", state="running") == 2
    assert value(m, "sabot_nodes", state="alive") == 3
    load = {"queue_depth": 0, "jobs": {"completed": 3}}
    assert value(m, "sabot_queue_depth") == 0
    assert value(m, "sabot_jobs_by_state", state="running") == 0
    assert value(m, "sabot_jobs_by_state", state="completed") == 3


def test_broken_load_source_counts_an_error_and_keeps_serving() -> None:
    m = Metrics("c", "n")

    def broken() -> dict:
        raise RuntimeError("boom")

    m.set_load_source(broken)
    assert value(m, "sabot_errors_total", kind="metrics_load_source") == 1
    assert value(m, "sabot_processing_throughput_items_per_second") == 0


def test_throughput_follows_the_items_counter() -> None:
    m = Metrics("c", "n")
    m.refresh()
    m.record_items(500)
    m.items.labels(**m.lbl(state="ok")).inc(500)  # counted by another part directly
    m.record_items(99, "failed")
    assert value(m, "sabot_items_processed_total", state="ok") == 1000
    assert value(m, "sabot_items_processed_total", state="failed") == 99
    assert value(m, "sabot_processing_throughput_items_per_second") > 0
    assert m.items_completed == 1000


def test_counter_rate_window() -> None:
    rate = _CounterRate()
    assert rate.rate(0, 5, now=100.0) == 0.0
    assert rate.rate(100, 5, now=102.0) == 20.0  # young: divided by the whole window
    assert rate.rate(1100, 5, now=110.0) == 1000 / 8  # since the newest sample >= 5 s old
    assert rate.rate(1100, 5, now=120.0) == 0.0  # idle for a window: back to zero


def test_get_metrics_is_one_object_renamed_in_place() -> None:
    first = get_metrics()
    renamed = get_metrics("cluster-x", "node-y")
    assert renamed is first
    assert (first.cluster, first.node) == ("cluster-x", "node-y")
    assert value(first, "sabot_queue_depth") == 0.0
    assert get_metrics() is first


def test_cpu_sampler_sees_busy_children() -> None:
    sampler = CpuSampler(cores=1)
    sampler.percent()
    child = subprocess.Popen([sys.executable, "-c", "import time\nt=time.time()\n"
                              "while time.time() - t < 1.5: pass"])
    try:
        time.sleep(0.3)
        sampler.percent()  # first sight of the child: its baseline
        time.sleep(0.6)
        busy = sampler.percent()
    finally:
        child.wait(10)
    assert 0 < busy <= 100
