"""The README's own "Performance Benchmarks" table, measured: items/s, latency, CPU usage.

The original README claims 1000 items/s at 10 ms and 80% CPU for a single node, and 3000 items/s
at 8 ms and 75% CPU for a 3-node cluster. This benchmark runs the README's single-node example as
written (a started launcher, ``await launcher.process_data(data, process_item)`` with an
``async def process_item``), the same with a plain ``def``, and the README's distributed API on
a coordinator and two workers (three nodes, here on one machine). Latency is one small request
(10 items) from call to results; CPU usage is the CPU time of this process and its child
processes (the pool, or the cluster's nodes) over the wall time of the throughput runs, as a
share of the usable cores.
"""

from __future__ import annotations

import sys
import time
from typing import Any

from .cluster import SabotClusterEngine
from .engines import SabotLauncherEngine, SerialEngine
from .harness import (OK, Case, Engine, open_engines, run_case, run_latency_case,
                      usable_cores)
from .workloads import checksum, square, square_async

TITLE = "the README's performance table: items/s, latency, CPU usage"
TIMED_THROUGHPUT = ("one call over the input on a started node: process_data (single node), or"
                    " submit_distributed_job + get_distributed_job_result (cluster)")
TIMED_LATENCY = "one call of 10 items on a started node, call to results"


class _CpuMeter:
    """CPU seconds used by this process (all threads) and its children (the launcher's workers).

    A child that exits during a run takes its CPU time with it: the pools measured here live as
    long as the launcher, so none does.
    """

    def __init__(self) -> None:
        import psutil

        self._proc = psutil.Process()

    def cpu_seconds(self) -> float:
        import psutil

        total = time.process_time()  # this process, to the nanosecond (psutil has 10 ms ticks)
        try:
            procs = self._proc.children(recursive=True)
        except psutil.Error:
            procs = []
        for p in procs:
            try:
                t = p.cpu_times()
                total += t.user + t.system
            except psutil.Error:
                pass
        return total


class _Metered(Engine):
    """Wraps an engine and adds up the CPU time and wall time of its timed runs."""

    def __init__(self, inner: Engine) -> None:
        super().__init__(inner.name)
        self.inner = inner
        self.params = inner.params
        self.cpu = 0.0
        self.wall = 0.0

    def availability(self) -> tuple[bool, str]:
        return self.inner.availability()

    def setup(self) -> None:
        if self.inner.setup_error:
            raise RuntimeError(self.inner.setup_error)
        if not self.inner.ready:
            self.inner.setup()

    def prepare(self) -> None:
        self.inner.prepare()

    def run(self) -> Any:
        meter = _CpuMeter()
        c0, t0 = meter.cpu_seconds(), time.perf_counter()
        out = self.inner.run()
        self.cpu += meter.cpu_seconds() - c0
        self.wall += time.perf_counter() - t0
        return out

    def teardown(self) -> None:
        if not self.inner.ready:
            self.inner.teardown()

    def describe(self) -> dict[str, Any]:
        return self.inner.describe()


def _throughput_rows(label: str, sabot: Engine, data: list[int], func: Any, repeats: int,
                     quick: bool, claim: str) -> list[dict[str, Any]]:
    metered = _Metered(sabot)
    n = len(data)
    case = Case(name=f"{label}, {n:,} items", engines=[metered, SerialEngine().bind(data, square)],
                work=n, metric="items/s", answer=checksum, timed=TIMED_THROUGHPUT,
                params={"items": n, "readme_claim": claim})
    rows = run_case("readme_table", case, repeats, warmup=not quick)
    if metered.wall > 0:
        cores = usable_cores()
        rows.append({"case": case.name, "engine": "sabot", "metric": "CPU usage (%)",
                     "higher_is_better": True, "status": OK,
                     "samples": [100.0 * metered.cpu / (metered.wall * cores)],
                     "answer": rows[0].get("answer"), "timed": TIMED_THROUGHPUT,
                     "params": {"usable_cores": cores}})
    return rows


def _latency_rows(label: str, sabot: Engine, calls: int, claim_ms: float) -> list[dict[str, Any]]:
    small = list(range(10))
    case = Case(name=f"{label}, 10-item request",
                engines=[sabot.bind(small, square), SerialEngine().bind(small, square)],
                answer=checksum, timed=TIMED_LATENCY,
                params={"items": 10, "calls": calls, "readme_claim_ms": claim_ms})
    return run_latency_case("readme_table", case, calls)


def run(quick: bool, threads: list[int], repeat: int | None = None) -> list[dict[str, Any]]:
    rows = _run(quick, repeat)
    for r in rows:
        # the inline loop checks the answers and gives scale; it is not a peer of a node here
        if r["engine"] != "sabot":
            r["scale_reference"] = True
    return rows


def _run(quick: bool, repeat: int | None) -> list[dict[str, Any]]:
    n = 100_000 if quick else 1_000_000
    repeats = repeat or (1 if quick else 3)
    calls = 100 if quick else 1000
    data = list(range(n))
    rows: list[dict[str, Any]] = []
    with open_engines([SabotLauncherEngine()]) as (launcher,):
        rows += _throughput_rows("single node, async def process_item", launcher.bind(
            data, square_async), data, square_async, repeats, quick, "1000 items/s")
        rows += _throughput_rows("single node, def square", launcher.bind(data, square), data,
                                 square, repeats, quick, "1000 items/s")
        rows += _latency_rows("single node", launcher, calls, 10.0)
    # the README's "3-Node Cluster": a coordinator and two workers, here on one machine
    with open_engines([SabotClusterEngine(2)]) as (cluster,):
        rows += _throughput_rows("3-node cluster, def square", cluster.bind(data, square), data,
                                 square, repeats, quick, "3000 items/s")
        rows += _latency_rows("3-node cluster", cluster, calls // 4, 8.0)
    return rows


def summarize(rows: list[dict[str, Any]]) -> str:
    """The README's table beside what this run measured."""
    def get(metric: str, case_prefix: str) -> str:
        for r in rows:
            if (r["engine"] == "sabot" and r["metric"] == metric and r["status"] == OK
                    and r["case"].startswith(case_prefix)):
                v = r["median"]
                return f"{v:,.2f}" if v < 10 else f"{v:,.1f}" if v < 100 else f"{v:,.0f}"
        return "not measured"

    def line(config: str, claim_tp: str, tp: str, claim_lat: str, lat: str, claim_cpu: str,
             cpu: str) -> str:
        lat_cell = (f"{get('latency p50 (ms)', lat)} / {get('latency p99 (ms)', lat)} ms"
                    if lat else "")
        cpu_cell = f"{get('CPU usage (%)', cpu)}%" if cpu else ""
        return (f"| {config} | {claim_tp} | {get('items/s', tp)} items/s | {claim_lat} |"
                f" {lat_cell} | {claim_cpu} | {cpu_cell} |")

    return "\n".join([
        "| Configuration | README: throughput | measured | README: latency |"
        " measured p50 / p99 | README: CPU | measured CPU |",
        "|---|---:|---:|---:|---:|---:|---:|",
        line("Single-Node (`async def process_item`)", "1000 items/s",
             "single node, async", "10ms", "single node, 10-item", "80%", "single node, async"),
        line("Single-Node (`def square`)", "", "single node, def", "", "", "",
             "single node, def"),
        line("3-Node Cluster (coordinator + 2 workers, one machine)", "3000 items/s",
             "3-node cluster, def", "8ms", "3-node cluster, 10-item", "75%",
             "3-node cluster, def"),
        "| 10-Node K8s | 10000 items/s | not measured (needs 10 machines) | 5ms | | 70% | |",
    ])


if __name__ == "__main__":
    for r in run(quick=True, threads=[1]):
        print(r, file=sys.stderr)
