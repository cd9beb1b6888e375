"""Prometheus metrics: one registry per process, the README's names plus the usual counters.

Every metric carries ``cluster`` (CLUSTER_NAME) and ``node`` labels. Call :func:`get_metrics`
once the node knows its name; parts of Sabot record through the returned object.
"""

from __future__ import annotations

import threading

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.exposition import CONTENT_TYPE_LATEST

_MORSEL_BUCKETS = (0.0001, 0.0005, 0.001, 0.005, 0.01, 0.05, 0.1, 0.5, 1, 5, 30, 120)


class Metrics:
    """The metric families of one process, bound to its cluster and node names."""

    def __init__(self, cluster: str, node: str) -> None:
        self.cluster = cluster
        self.node = node
        self.registry = CollectorRegistry()
        r = self.registry
        labels = ["cluster", "node"]
        # The README's three names.
        self.throughput = Gauge(
            "sabot_processing_throughput_items_per_second",
            "Items processed per second, averaged over the last few seconds",
            labels, registry=r)
        self.queue_depth = Gauge(
            "sabot_queue_depth", "Morsels waiting to run (queued, not yet assigned)",
            labels, registry=r)
        self.utilization = Gauge(
            "sabot_worker_utilization_percent",
            "Busy share of this node's worker slots, in percent", labels, registry=r)
        # What a Prometheus user expects beside them.
        self.items = Counter(
            "sabot_items_processed_total", "Items processed, by outcome",
            labels + ["state"], registry=r)
        self.morsels = Counter(
            "sabot_morsels_processed_total", "Morsels processed, by outcome",
            labels + ["state"], registry=r)
        self.morsel_duration = Histogram(
            "sabot_morsel_duration_seconds", "Time to run one morsel",
            labels, buckets=_MORSEL_BUCKETS, registry=r)
        self.jobs = Counter(
            "sabot_jobs_total", "Jobs that reached a state", labels + ["state"], registry=r)
        self.jobs_active = Gauge(
            "sabot_jobs", "Jobs currently in each state", labels + ["state"], registry=r)
        self.nodes = Gauge(
            "sabot_nodes", "Worker nodes known to the coordinator, by state",
            labels + ["state"], registry=r)
        self.errors = Counter(
            "sabot_errors_total", "Errors, by kind", labels + ["kind"], registry=r)
        self.info = Gauge(
            "sabot_node_info", "Constant 1, labelled with this node's role and version",
            labels + ["role", "version"], registry=r)

    def lbl(self, **extra: str) -> dict[str, str]:
        return {"cluster": self.cluster, "node": self.node, **extra}

    def exposition(self) -> tuple[bytes, str]:
        """The text exposition format and its content type, for GET /metrics."""
        return generate_latest(self.registry), CONTENT_TYPE_LATEST


_lock = threading.Lock()
_metrics: Metrics | None = None


def get_metrics(cluster: str | None = None, node: str | None = None) -> Metrics:
    """The process's metrics. The first call with names fixes them; later calls reuse them."""
    global _metrics
    with _lock:
        if _metrics is None or (
            cluster is not None and node is not None
            and (_metrics.cluster, _metrics.node) != (cluster, node)
        ):
            _metrics = Metrics(cluster or "sabot-cluster", node or "local")
        return _metrics
