"""Prometheus metrics: one registry per process, the README's names plus the usual counters.

Every metric carries ``cluster`` (CLUSTER_NAME) and ``node`` labels. Call :func:`get_metrics`
once the node knows its name; parts of Sabot record through the returned object:

- whoever runs work calls :meth:`Metrics.record_items` / :meth:`Metrics.record_morsel`, which
  feed the counters and the sliding window behind the throughput gauge;
- whoever owns job and node state calls :meth:`Metrics.record_job` when a job reaches a state
  and registers a *load source* (:meth:`Metrics.set_load_source`): a callable returning the
  live queue depth, utilization and counts by state. The gauges are refreshed from it on every
  scrape, so ``/metrics`` never shows a stale or placeholder value.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections import deque
from collections.abc import Callable, Mapping
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.exposition import CONTENT_TYPE_LATEST

log = logging.getLogger(__name__)

_MORSEL_BUCKETS = (0.0001, 0.0005, 0.001, 0.005, 0.01, 0.05, 0.1, 0.5, 1, 5, 30, 120)
_HTTP_BUCKETS = (0.001, 0.005, 0.01, 0.05, 0.1, 0.5, 1, 5, 30)

#: Seconds of history behind the throughput gauge ("the last few seconds").
THROUGHPUT_WINDOW_S = 5.0

#: What a load source returns (every key optional).
LOAD_KEYS = ("queue_depth", "utilization_percent", "jobs", "nodes", "pipelines")

LoadSource = Callable[[], Mapping[str, Any]]


class _CounterRate:
    """Rate of a counter over the last seconds, from (time, total) samples taken on refresh.

    Computed from the counter itself, like Prometheus's ``rate()``, so it is right whichever
    part of Sabot increments the counter.
    """

    def __init__(self, horizon_s: float = 60.0) -> None:
        self._samples: deque[tuple[float, float]] = deque()
        self._horizon = horizon_s
        self._lock = threading.Lock()

    def rate(self, total: float, window_s: float, now: float | None = None) -> float:
        now = time.monotonic() if now is None else now
        with self._lock:
            samples = self._samples
            while samples and samples[0][0] < now - self._horizon:
                samples.popleft()
            if samples and total < samples[-1][1]:
                samples.clear()  # the counter was reset (metrics renamed)
            # The newest sample at least window_s old, else the oldest there is.
            then = None
            for t, v in samples:
                if t <= now - window_s:
                    then = (t, v)
                else:
                    break
            if then is None and samples:
                then = samples[0]
            samples.append((now, total))
            if then is None:
                return 0.0
            # Never divide by less than the window: a young node would show spikes otherwise.
            return max(0.0, (total - then[1]) / max(now - then[0], window_s))


class Metrics:
    """The metric families of one process, bound to its cluster and node names."""

    def __init__(self, cluster: str, node: str) -> None:
        self.cluster = cluster
        self.node = node
        self.registry = CollectorRegistry()
        self._lock = threading.Lock()
        self._load_source: LoadSource | None = None
        self._items_rate = _CounterRate()
        self._known_states: dict[str, set[str]] = {"jobs": set(), "nodes": set()}
        # Labelled children by (family, extra label values): prometheus_client's labels()
        # takes a lock and validates on every call, which cost a worker node a fifth of its
        # time per tiny morsel. Replaced (not cleared) on rename.
        self._children: dict[tuple[int, tuple[str, ...]], Any] = {}
        r = self.registry
        labels = ["cluster", "node"]
        # The README's three names.
        self.throughput = Gauge(
            "sabot_processing_throughput_items_per_second",
            f"Items processed per second, averaged over the last {THROUGHPUT_WINDOW_S:g} seconds",
            labels, registry=r)
        self.queue_depth = Gauge(
            "sabot_queue_depth", "Morsels waiting to run (queued, not yet assigned)",
            labels, registry=r)
        self.utilization = Gauge(
            "sabot_worker_utilization_percent",
            "Busy share of this node's worker slots (CPU of its processes over its cores), "
            "in percent", labels, registry=r)
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
            "sabot_jobs_by_state", "Jobs currently in each state (finished ones until they expire)",
            labels + ["state"], registry=r)
        self.nodes = Gauge(
            "sabot_nodes", "Worker nodes known to the coordinator, by state",
            labels + ["state"], registry=r)
        self.errors = Counter(
            "sabot_errors_total", "Errors, by kind", labels + ["kind"], registry=r)
        self.results_refused = Counter(
            "sabot_results_refused_total",
            "Morsel results and failures refused because the morsel's current assignment did "
            "not go to the worker that sent them (a late, stray or forged answer)",
            labels, registry=r)
        self.http_requests = Counter(
            "sabot_http_requests_total", "HTTP requests served, by route, method and status",
            labels + ["route", "method", "status"], registry=r)
        self.http_duration = Histogram(
            "sabot_http_request_duration_seconds", "Time to answer one HTTP request",
            labels + ["route"], buckets=_HTTP_BUCKETS, registry=r)
        self.info = Gauge(
            "sabot_node_info", "Constant 1, labelled with this node's role and version",
            labels + ["role", "version"], registry=r)
        self.stream_watermark_lag = Gauge(
            "sabot_stream_watermark_lag_seconds",
            "How far a streaming job's watermark trails the wall clock (event time)",
            labels + ["job"], registry=r)
        self.stream_late_events = Counter(
            "sabot_stream_late_events_total",
            "Events that arrived after their window closed (allowed lateness included); they "
            "go to the operator's late output", labels + ["job", "operator"], registry=r)
        self.stream_events = Counter(
            "sabot_stream_events_total", "Events read by a streaming job's sources",
            labels + ["job"], registry=r)
        self.stream_checkpoints = Counter(
            "sabot_stream_checkpoints_total", "Checkpoints a streaming job committed",
            labels + ["job"], registry=r)
        self.stream_checkpoint_duration = Gauge(
            "sabot_stream_checkpoint_duration_seconds",
            "How long the last checkpoint took, from its start to its commit", labels + ["job"],
            registry=r)
        self.stream_checkpoint_bytes = Gauge(
            "sabot_stream_checkpoint_size_bytes", "Size of the last checkpoint on disk",
            labels + ["job"], registry=r)
        self.stream_checkpoint_time = Gauge(
            "sabot_stream_last_checkpoint_timestamp_seconds",
            "Unix time of the last committed checkpoint", labels + ["job"], registry=r)
        self.stream_restores = Counter(
            "sabot_stream_restores_total", "Times a streaming job was restored from a checkpoint",
            labels + ["job"], registry=r)
        self.stream_records_in = Counter(
            "sabot_stream_operator_records_in_total", "Rows an operator of a streaming job received",
            labels + ["job", "operator"], registry=r)
        self.stream_records_out = Counter(
            "sabot_stream_operator_records_out_total", "Rows an operator of a streaming job emitted",
            labels + ["job", "operator"], registry=r)
        self.stream_kafka_lag = Gauge(
            "sabot_stream_kafka_lag", "Messages a Kafka source partition is behind its high watermark",
            labels + ["job", "topic", "partition"], registry=r)
        pl = labels + ["pipeline"]
        self.pipeline_records_in = Gauge(
            "sabot_pipeline_operator_records_in",
            "Rows an operator of a pipeline on the cluster received, over its instances",
            pl + ["operator"], registry=r)
        self.pipeline_records_out = Gauge(
            "sabot_pipeline_operator_records_out",
            "Rows an operator of a pipeline on the cluster emitted, over its instances",
            pl + ["operator"], registry=r)
        self.pipeline_events = Gauge(
            "sabot_pipeline_events", "Events a pipeline's sources read, over its instances", pl,
            registry=r)
        self.pipeline_watermark_lag = Gauge(
            "sabot_pipeline_watermark_lag_seconds",
            "How far a pipeline's watermark (the minimum over its instances) trails the clock",
            pl, registry=r)
        self.pipeline_checkpoint_duration = Gauge(
            "sabot_pipeline_checkpoint_duration_seconds",
            "The last committed checkpoint: from asking the tasks to the commit", pl, registry=r)
        self.pipeline_state_bytes = Gauge(
            "sabot_pipeline_state_size_bytes",
            "The pipeline's state: the size of its last committed checkpoint, all parts", pl,
            registry=r)
        self.pipeline_backpressure = Gauge(
            "sabot_pipeline_backpressure_seconds",
            "Time the pipeline's sources waited for the exchange to drain, over its instances",
            pl, registry=r)
        self.pipeline_restarts = Gauge(
            "sabot_pipeline_restarts", "Times the pipeline started again from a checkpoint", pl,
            registry=r)
        self.pipeline_kafka_lag = Gauge(
            "sabot_pipeline_kafka_lag",
            "Messages a pipeline's Kafka partition is behind its high watermark",
            pl + ["topic", "partition"], registry=r)
        self._pipeline_families = (
            self.pipeline_records_in, self.pipeline_records_out, self.pipeline_events,
            self.pipeline_watermark_lag, self.pipeline_checkpoint_duration,
            self.pipeline_state_bytes, self.pipeline_backpressure, self.pipeline_restarts,
            self.pipeline_kafka_lag)
        self._families = (
            self.throughput, self.queue_depth, self.utilization, self.items, self.morsels,
            self.morsel_duration, self.jobs, self.jobs_active, self.nodes, self.errors,
            self.results_refused,
            self.http_requests, self.http_duration, self.info, self.stream_watermark_lag,
            self.stream_late_events, self.stream_events, self.stream_checkpoints,
            self.stream_checkpoint_duration, self.stream_checkpoint_bytes,
            self.stream_checkpoint_time, self.stream_restores, self.stream_records_in,
            self.stream_records_out, self.stream_kafka_lag, *self._pipeline_families)
        self._init_gauges()

    def _init_gauges(self) -> None:
        # The README's gauges exist (at 0) from the start, so a scrape always finds them.
        for gauge in (self.throughput, self.queue_depth, self.utilization):
            gauge.labels(**self.lbl()).set(0)

    def rename(self, cluster: str, node: str) -> None:
        """Give this process's metrics their cluster and node names. Series recorded under the
        old names are dropped; objects holding this instance keep working."""
        with self._lock:
            if (cluster, node) == (self.cluster, self.node):
                return
            self.cluster, self.node = cluster, node
            for family in self._families:
                family.clear()
            self._children = {}  # after the clear: a child made meanwhile is not kept
            self._items_rate = _CounterRate()
            self._known_states = {"jobs": set(), "nodes": set()}
            self._init_gauges()

    def lbl(self, **extra: str) -> dict[str, str]:
        return {"cluster": self.cluster, "node": self.node, **extra}

    def _child(self, family: Any, *extra: str) -> Any:
        """``family`` labelled with this node's names and ``extra`` (in label order)."""
        key = (id(family), extra)
        child = self._children.get(key)
        if child is None:
            with self._lock:  # not during a rename (which clears the families)
                child = self._children.get(key)
                if child is None:
                    child = self._children[key] = family.labels(self.cluster, self.node, *extra)
        return child

    # -- recording ----------------------------------------------------------------------------
    def record_items(self, n: int, state: str = "ok") -> None:
        """``n`` items finished with ``state`` (ok, failed); all but failed ones count towards
        the throughput gauge."""
        if n > 0:
            self._child(self.items, state).inc(n)

    def record_morsel(self, duration_s: float, state: str = "ok") -> None:
        self._child(self.morsels, state).inc()
        self._child(self.morsel_duration).observe(max(0.0, duration_s))

    def record_job(self, state: str) -> None:
        self.jobs.labels(**self.lbl(state=state)).inc()

    def record_error(self, kind: str) -> None:
        self.errors.labels(**self.lbl(kind=kind)).inc()

    def record_result_refused(self) -> None:
        self._child(self.results_refused).inc()

    def record_http(self, route: str, method: str, status: int, duration_s: float) -> None:
        self.http_requests.labels(**self.lbl(route=route, method=method, status=str(status))).inc()
        self.http_duration.labels(**self.lbl(route=route)).observe(max(0.0, duration_s))

    def record_stream_late(self, job: str, operator: str, n: int) -> None:
        if n > 0:
            self._child(self.stream_late_events, job, operator).inc(n)

    def record_stream_events(self, job: str, n: int) -> None:
        if n > 0:
            self._child(self.stream_events, job).inc(n)

    def set_stream_watermark_lag(self, job: str, seconds: float) -> None:
        self._child(self.stream_watermark_lag, job).set(seconds)

    def record_stream_checkpoint(self, job: str, duration_s: float, size: int) -> None:
        self._child(self.stream_checkpoints, job).inc()
        self._child(self.stream_checkpoint_duration, job).set(duration_s)
        self._child(self.stream_checkpoint_bytes, job).set(size)
        self._child(self.stream_checkpoint_time, job).set(time.time())

    def record_stream_restore(self, job: str) -> None:
        self._child(self.stream_restores, job).inc()

    def record_stream_rows(self, job: str, operator: str, rows_in: int, rows_out: int) -> None:
        if rows_in > 0:
            self._child(self.stream_records_in, job, operator).inc(rows_in)
        if rows_out > 0:
            self._child(self.stream_records_out, job, operator).inc(rows_out)

    def set_stream_kafka_lag(self, job: str, topic: str, partition: int, lag: int) -> None:
        self._child(self.stream_kafka_lag, job, topic, str(partition)).set(lag)

    def set_role(self, role: str, version: str) -> None:
        self.info.labels(**self.lbl(role=role, version=version)).set(1)

    def set_load_source(self, source: LoadSource | None) -> None:
        """Register the callable the gauges are refreshed from (see :data:`LOAD_KEYS`):
        ``queue_depth`` (int), ``utilization_percent`` (float), ``jobs`` and ``nodes``
        (dicts state -> count)."""
        self._load_source = source

    def clear_load_source(self, source: LoadSource) -> None:
        """Unregister ``source`` if it is the registered one (a stopping backend)."""
        if self._load_source == source:
            self._load_source = None

    def _set_pipelines(self, pipelines: list[dict[str, Any]]) -> None:
        """The pipeline gauges: only the pipelines running now (ended ones leave)."""
        for family in self._pipeline_families:
            family.clear()
        for p in pipelines:
            name = f"{p['pipeline']}/{p['pipeline_id']}"
            for op in p.get("operators") or []:
                self.pipeline_records_in.labels(**self.lbl(pipeline=name,
                                                           operator=op["name"])).set(
                    op["records_in"])
                self.pipeline_records_out.labels(**self.lbl(pipeline=name,
                                                            operator=op["name"])).set(
                    op["records_out"])
            for family, key in ((self.pipeline_events, "events"),
                                (self.pipeline_watermark_lag, "watermark_lag_s"),
                                (self.pipeline_checkpoint_duration, "checkpoint_duration_s"),
                                (self.pipeline_state_bytes, "checkpoint_bytes"),
                                (self.pipeline_backpressure, "backpressure_s"),
                                (self.pipeline_restarts, "restarts")):
                if p.get(key) is not None:
                    family.labels(**self.lbl(pipeline=name)).set(p[key])
            for part, lag in (p.get("kafka_lag") or {}).items():
                topic, _, number = str(part).rpartition("/")
                self.pipeline_kafka_lag.labels(**self.lbl(pipeline=name, topic=topic,
                                                          partition=number)).set(lag)

    # -- reading ------------------------------------------------------------------------------
    def throughput_now(self, window_s: float = THROUGHPUT_WINDOW_S) -> float:
        """Items processed per second over about the last ``window_s`` seconds."""
        return self._items_rate.rate(self.items_completed, window_s)

    @property
    def items_completed(self) -> float:
        """Items processed (any state but failed) on this node since the metrics were named."""
        total = 0.0
        for family in self.items.collect():
            for sample in family.samples:
                if (sample.name.endswith("_total") and sample.labels.get("node") == self.node
                        and sample.labels.get("state") != "failed"):
                    total += sample.value
        return total

    def refresh(self) -> dict[str, Any]:
        """Recompute the gauges from the throughput window and the load source; returns the
        values set (also used by the status page)."""
        values: dict[str, Any] = {"throughput": self.throughput_now()}
        self.throughput.labels(**self.lbl()).set(values["throughput"])
        source = self._load_source
        if source is None:
            return values
        try:
            load = dict(source())
        except Exception:  # a broken source must not break /metrics
            log.exception("metrics load source failed")
            self.record_error("metrics_load_source")
            return values
        if "pipelines" in load:
            self._set_pipelines(load["pipelines"])
        if "queue_depth" in load:
            values["queue_depth"] = load["queue_depth"]
            self.queue_depth.labels(**self.lbl()).set(load["queue_depth"])
        if "utilization_percent" in load:
            values["utilization_percent"] = load["utilization_percent"]
            self.utilization.labels(**self.lbl()).set(load["utilization_percent"])
        for key, gauge in (("jobs", self.jobs_active), ("nodes", self.nodes)):
            counts = load.get(key)
            if counts is None:
                continue
            values[key] = dict(counts)
            # States seen before but absent now go back to 0 rather than keeping old values.
            known = self._known_states[key]
            known.update(counts)
            for state in known:
                gauge.labels(**self.lbl(state=state)).set(counts.get(state, 0))
        return values

    def exposition(self) -> tuple[bytes, str]:
        """The text exposition format and its content type, for GET /metrics."""
        self.refresh()
        return generate_latest(self.registry), CONTENT_TYPE_LATEST


class CpuSampler:
    """Utilization of this process and its children, as a share of the node's cores.

    Non-blocking: each call compares CPU times with the previous call (psutil's
    ``cpu_percent(interval=None)``), so sample it periodically or per scrape.
    """

    def __init__(self, cores: int) -> None:
        import psutil

        self._psutil = psutil
        self._cores = max(1, cores)
        self._me = psutil.Process(os.getpid())
        self._procs: dict[int, Any] = {}
        self._lock = threading.Lock()
        self._me.cpu_percent(interval=None)

    def percent(self) -> float:
        psutil = self._psutil
        with self._lock:
            total = self._me.cpu_percent(interval=None)
            try:
                children = self._me.children(recursive=True)
            except psutil.Error:
                children = []
            alive = {}
            for child in children:
                proc = self._procs.get(child.pid, child)
                try:
                    # A child seen for the first time reports 0 (no previous sample yet).
                    total += proc.cpu_percent(interval=None)
                    alive[child.pid] = proc
                except psutil.Error:
                    continue
            self._procs = alive
        return max(0.0, min(100.0, total / self._cores))


_lock = threading.Lock()
_metrics: Metrics | None = None


def get_metrics(cluster: str | None = None, node: str | None = None) -> Metrics:
    """The process's metrics (always the same object). A call with both names sets them (a
    process serves one node); a call without names reuses whatever is set ("local" at first)."""
    global _metrics
    with _lock:
        if _metrics is None:
            _metrics = Metrics(cluster or "sabot-cluster", node or "local")
        elif cluster is not None and node is not None:
            _metrics.rename(cluster, node)
        return _metrics


__all__ = ["LOAD_KEYS", "THROUGHPUT_WINDOW_S", "CpuSampler", "Metrics", "get_metrics"]
