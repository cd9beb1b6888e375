"""Scheduler overhead: empty morsels, per-call latency, and a morsel-size sweep (4 KB .. 4 MB).

Measures Sabot's native morsel scheduler alone, at each thread count:

- empty morsels: ParallelFor over N morsels whose body does nothing. Throughput is morsels per
  second of wall time; the per-morsel overhead is wall x threads / N, what scheduling one morsel
  costs a worker (target < 2 us); the per-morsel CPU is the workers' own CPU time / N (from
  /proc schedstat), which other load on the machine does not inflate.
- per-call latency: one ParallelFor of one morsel per thread: the fixed cost of waking the pool
  and joining it, paid once per job.
- morsel-size sweep: a zero-copy sum of an int64 array split into morsels of 4 KB .. 4 MB, to show
  where morsels become small enough for overhead to matter and large enough for imbalance to;
  numpy's single-threaded ``sum`` of the same array is the peer.
"""

from __future__ import annotations

import statistics
import time
from typing import Any

TITLE = "native scheduler overhead and morsel-size sweep"
TIMED = "one ParallelFor call (pool already started), GIL released"

SWEEP_KB = (4, 16, 64, 256, 1024, 4096)


def _core() -> Any:
    from sabot import _native

    core = _native.get_core()
    if core is None:
        raise RuntimeError(f"the native core is not available: {_native.native_status()}")
    return core


def _row(case: str, engine: str, metric: str, samples: list[float], higher: bool,
         params: dict[str, Any], seconds: list[float], items: int, answer: Any = None,
         timed: str = TIMED) -> dict[str, Any]:
    return {
        "benchmark": "scheduler",
        "case": case,
        "engine": engine,
        "metric": metric,
        "samples": samples,
        "higher_is_better": higher,
        "params": params,
        "seconds": statistics.median(seconds),
        "items": items,
        "answer": answer,
        "timed": timed,
    }


def _workers_cpu_ns(core: Any) -> int | None:
    """CPU time the worker threads have run, from /proc/self/task/<tid>/schedstat (ns)."""
    total = 0
    try:
        for tid in core.worker_thread_ids():
            with open(f"/proc/self/task/{tid}/schedstat") as f:
                total += int(f.read().split()[0])
    except (OSError, ValueError, IndexError):
        return None
    return total


def _empty_morsels(core: Any, threads: int, n: int, repeats: int) -> list[dict[str, Any]]:
    core.run_empty(n // 10)  # warm the pool
    walls: list[float] = []
    cpu_ns: list[float] = []
    for _ in range(repeats):
        before = _workers_cpu_ns(core)
        walls.append(core.run_empty(n))
        after = _workers_cpu_ns(core)
        if before is not None and after is not None:
            cpu_ns.append((after - before) / n)
    params = {"threads": threads, "morsels": n}
    throughput = [n / w for w in walls]
    overhead_ns = [w * threads / n * 1e9 for w in walls]
    rows = [
        _row(f"empty morsels, threads={threads}", "sabot", "morsels/s", throughput, True,
             params, walls, n),
        _row(f"empty morsels, threads={threads}", "sabot", "per-morsel overhead (ns)",
             overhead_ns, False, params, walls, n,
             timed="wall time x threads / morsels: includes time the workers were not on a CPU"),
    ]
    if cpu_ns:
        # CPU time the workers actually ran (schedstat): unaffected by other load on the machine,
        # except that the workers' idle spinning between calls is included.
        rows.append(_row(f"empty morsels, threads={threads}", "sabot", "per-morsel CPU (ns)",
                         cpu_ns, False, params, walls, n,
                         timed="worker CPU time (from /proc schedstat) / morsels"))
    return rows


def _call_latency(core: Any, threads: int, calls: int) -> dict[str, Any]:
    samples: list[float] = []
    for _ in range(calls):
        t0 = time.perf_counter()
        core.run_empty(threads)
        samples.append(time.perf_counter() - t0)
    samples.sort()
    p50 = samples[len(samples) // 2]
    return _row(f"ParallelFor call latency, threads={threads}", "sabot", "latency p50 (us)",
                [p50 * 1e6], False, {"threads": threads, "calls": calls}, [p50], threads,
                timed="one ParallelFor of one empty morsel per thread, from Python (includes "
                      "the binding and the GIL release)")


def _sweep(core: Any, threads: int, data: Any, repeats: int) -> list[dict[str, Any]]:
    rows: list[dict[str, Any]] = []
    n = len(data)
    for kb in SWEEP_KB:
        core.scan_sum(data, kb * 1024)  # warm
        walls: list[float] = []
        answer = None
        morsels = 0
        for _ in range(repeats):
            t0 = time.perf_counter()
            answer, morsels = core.scan_sum(data, kb * 1024)
            walls.append(time.perf_counter() - t0)
        rows.append(_row(
            f"sum {n:,} int64, morsel {kb} KB, threads={threads}", "sabot", "rows/s",
            [n / w for w in walls], True,
            {"threads": threads, "morsel_kb": kb, "morsels": morsels, "rows": n}, walls, n,
            answer=int(answer)))
    return rows


def _numpy_peer(data: Any, repeats: int) -> dict[str, Any]:
    walls: list[float] = []
    answer = None
    for _ in range(repeats):
        t0 = time.perf_counter()
        answer = data.sum()
        walls.append(time.perf_counter() - t0)
    n = len(data)
    return _row(f"sum {n:,} int64, numpy (1 thread)", "numpy", "rows/s", [n / w for w in walls],
                True, {"threads": 1, "rows": n}, walls, n, answer=int(answer),
                timed="numpy.ndarray.sum on the same array")


def run(quick: bool, threads: list[int], repeat: int | None = None) -> list[dict[str, Any]]:
    import numpy as np

    core = _core()
    repeats = repeat or (2 if quick else 5)
    n_empty = 200_000 if quick else 5_000_000
    rows_sweep = 2_000_000 if quick else 32_000_000
    data = np.arange(rows_sweep, dtype=np.int64) % 1_000_003
    original = core.num_threads()
    rows: list[dict[str, Any]] = []
    try:
        for t in threads:
            core.set_threads(t)
            rows += _empty_morsels(core, t, n_empty, repeats)
            rows.append(_call_latency(core, t, 200 if quick else 2000))
            rows += _sweep(core, t, data, repeats)
    finally:
        core.set_threads(original)
    rows.append(_numpy_peer(data, repeats))
    return rows


def main() -> None:
    import argparse

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--threads", default="1,2", help="comma-separated thread counts")
    args = parser.parse_args()
    threads = [int(t) for t in args.threads.split(",")]
    for r in run(args.quick, threads):
        med = statistics.median(r["samples"])
        print(f"{r['case']:<48} {r['engine']:<6} {r['metric']:<26} {med:>16,.1f}")


if __name__ == "__main__":
    main()
