"""The README's own "Performance Benchmarks" table, measured: single-node items/s, latency, CPU.

The original README claims, for a single node, 1000 items/s at 10 ms latency and 80% CPU. This
benchmark runs the README's single-node example as written (a started launcher,
``await launcher.process_data(data, process_item)`` with an ``async def process_item``) and a
plain ``def`` for comparison. Latency is one small request (10 items) from call to results, on a
started launcher; CPU usage is the CPU time of the node's processes over the wall time of the
throughput runs, as a share of the usable cores.
"""

from __future__ import annotations

import sys
import time
from typing import Any

from .engines import SabotLauncherEngine, SerialEngine
from .harness import OK, Case, run_case, run_latency_case, usable_cores
from .workloads import checksum, square, square_async

TITLE = "the README's table (single node): items/s, latency, CPU usage"
TIMED_THROUGHPUT = "one process_data call over the input on a started launcher"
TIMED_LATENCY = "one process_data call of 10 items on a started launcher, call to results"

# What the README claims for a single node.
CLAIMS = {"items/s": 1000.0, "latency p50 (ms)": 10.0, "CPU usage (%)": 80.0}


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


class _MeteredSabot(SabotLauncherEngine):
    """The launcher engine, also adding up the CPU time its runs used."""

    def __init__(self) -> None:
        super().__init__()
        self.cpu = 0.0
        self.wall = 0.0

    def run(self) -> Any:
        meter = _CpuMeter()
        c0, t0 = meter.cpu_seconds(), time.perf_counter()
        out = super().run()
        self.cpu += meter.cpu_seconds() - c0
        self.wall += time.perf_counter() - t0
        return out


def _latency_rows(n_calls: int) -> list[dict[str, Any]]:
    """p50/p99 of a 10-item request on a started launcher (and inline, for scale)."""
    small = list(range(10))
    case = Case(name="latency, 10-item request",
                engines=[SabotLauncherEngine().bind(small, square), SerialEngine().bind(small, square)],
                answer=checksum, timed=TIMED_LATENCY,
                params={"items": 10, "calls": n_calls, "readme_claim_ms": CLAIMS["latency p50 (ms)"]})
    return run_latency_case("readme_table", case, n_calls)


def run(quick: bool, threads: list[int], repeat: int | None = None) -> list[dict[str, Any]]:
    n = 100_000 if quick else 1_000_000
    repeats = repeat or (1 if quick else 3)
    rows: list[dict[str, Any]] = []
    data = list(range(n))
    for label, func in (("async def process_item", square_async), ("def square", square)):
        sabot = _MeteredSabot().bind(data, func)
        case = Case(name=f"throughput, {label}, {n:,} items",
                    engines=[sabot, SerialEngine().bind(data, square)], work=n, metric="items/s", answer=checksum,
            params={"items": n, "readme_claim": "1000 items/s"}, timed=TIMED_THROUGHPUT)
        case_rows = run_case("readme_table", case, repeats, warmup=not quick)
        rows.extend(case_rows)
        if sabot.wall > 0:
            cores = usable_cores()
            pct = 100.0 * sabot.cpu / (sabot.wall * cores)
            rows.append({"case": case.name, "engine": "sabot", "metric": "CPU usage (%)",
                         "higher_is_better": True, "samples": [pct], "status": OK,
                         "answer": case_rows[0].get("answer"), "timed": TIMED_THROUGHPUT,
                         "params": {"usable_cores": cores, "readme_claim": "80%"}})
    rows.extend(_latency_rows(100 if quick else 1000))
    return rows


def summarize(rows: list[dict[str, Any]]) -> str:
    """The README's single-node row beside what this run measured."""
    def get(metric: str, case_prefix: str) -> str:
        for r in rows:
            if (r["engine"] == "sabot" and r["metric"] == metric and r["status"] == OK
                    and r["case"].startswith(case_prefix)):
                return f"{r['median']:,.1f}" if r["median"] < 100 else f"{r['median']:,.0f}"
        return "not measured"

    lines = [
        "| Configuration | README claim: throughput | measured | README claim: latency |"
        " measured p50 / p99 | README claim: CPU | measured |",
        "|---|---:|---:|---:|---:|---:|---:|",
        f"| Single-Node (`async def process_item`) | 1000 items/s |"
        f" {get('items/s', 'throughput, async')} items/s | 10 ms |"
        f" {get('latency p50 (ms)', 'latency')} / {get('latency p99 (ms)', 'latency')} ms |"
        f" 80% | {get('CPU usage (%)', 'throughput, async')}% |",
        f"| Single-Node (`def square`) | 1000 items/s | {get('items/s', 'throughput, def')}"
        f" items/s | | | | {get('CPU usage (%)', 'throughput, def')}% |",
    ]
    return "\n".join(lines)


if __name__ == "__main__":
    for r in run(quick=True, threads=[1]):
        print(r, file=sys.stderr)
