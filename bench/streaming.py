"""Streaming: sustained items/s and peak memory over 10M items pulled from a generator.

Each engine runs in a fresh child process (``python -m bench.streaming child ENGINE ITEMS``) so its
memory is measured clean: a sampler thread reads the RSS of the child and all its worker
processes every 20 ms. The source is a generator that is never materialized; the consumer keeps
only a count and a sum. An engine with backpressure holds a bounded number of items in flight, so
its RSS stays flat however long the stream; one without it reads the source ahead into memory.
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import json
import os
import subprocess
import sys
import threading
import time
from typing import Any, Callable, Iterator

from .harness import (ERROR, NOT_AVAILABLE, OK, REPO_ROOT, error_text, peer_status,
                      sabot_status, usable_cores)
from .workloads import map_chunk, square

TITLE = "streaming 10M generated items: sustained items/s and peak RSS"
TIMED = ("from the first item pulled to the last result consumed, inside a fresh child process"
         " (engine start-up excluded); RSS summed over the child and its workers")

CHUNK = 10_000  # items per task for the chunking peers (their best region in the per-item bench)


def source(n: int) -> Iterator[int]:
    """The stream: a generator, never a list."""
    return (i for i in range(n))


# --------------------------------------------------------------------------- the engines (child)

def _consume(results: Any) -> tuple[int, int]:
    count = total = 0
    for r in results:
        count += 1
        total += r
    return count, total


def _serial(n: int, workers: int) -> Callable[[], tuple[int, int]]:
    return lambda: _consume(square(x) for x in source(n))


def _pool(n: int, workers: int) -> Callable[[], tuple[int, int]]:
    import multiprocessing

    pool = multiprocessing.get_context().Pool(workers)
    pool.map(abs, range(workers * 4))

    def go() -> tuple[int, int]:
        try:
            return _consume(pool.imap(square, source(n), chunksize=CHUNK))
        finally:
            pool.close()
            pool.join()

    return go


def _joblib(n: int, workers: int) -> Callable[[], tuple[int, int]]:
    import joblib

    parallel = joblib.Parallel(n_jobs=workers, return_as="generator", pre_dispatch="2*n_jobs")
    joblib.Parallel(n_jobs=workers)(joblib.delayed(abs)(i) for i in range(workers * 2))

    def chunks() -> Iterator[list[int]]:
        it = source(n)
        while chunk := list(itertools.islice(it, CHUNK)):
            yield chunk

    def go() -> tuple[int, int]:
        parts = parallel(joblib.delayed(map_chunk)(square, c) for c in chunks())
        return _consume(itertools.chain.from_iterable(parts))

    return go


def _sabot(n: int, workers: int) -> Callable[[], tuple[int, int]]:
    import sabot

    loop = asyncio.new_event_loop()
    launcher = sabot.create_composable_launcher()
    loop.run_until_complete(launcher.start())

    async def consume() -> tuple[int, int]:
        count = total = 0
        async for r in launcher.process_stream(source(n), square):
            count += 1
            total += r
        return count, total

    def go() -> tuple[int, int]:
        try:
            return loop.run_until_complete(consume())
        finally:
            loop.run_until_complete(launcher.stop())
            loop.close()

    return go


ENGINES: dict[str, tuple[Callable[[int, int], Callable[[], tuple[int, int]]],
                         Callable[[], tuple[bool, str]]]] = {
    "sabot": (_sabot, lambda: sabot_status("create_composable_launcher")),
    "generator loop": (_serial, lambda: (True, "")),
    "multiprocessing.Pool.imap": (_pool, lambda: (True, "")),
    "joblib": (_joblib, lambda: peer_status("joblib")),
}


class _RssSampler(threading.Thread):
    """Sums the RSS of this process and its descendants every ``period`` seconds."""

    def __init__(self, period: float = 0.02) -> None:
        super().__init__(daemon=True)
        import psutil

        self._proc = psutil.Process()
        self._period = period
        self._halt = threading.Event()
        self.peak = 0
        self.trace: list[tuple[float, int]] = []
        self._t0 = time.perf_counter()

    def sample(self) -> int:
        import psutil

        total = 0
        try:
            procs = [self._proc, *self._proc.children(recursive=True)]
        except psutil.Error:
            procs = [self._proc]
        for p in procs:
            try:
                total += p.memory_info().rss
            except psutil.Error:
                pass  # a worker that just exited
        return total

    def run(self) -> None:
        while not self._halt.is_set():
            rss = self.sample()
            self.peak = max(self.peak, rss)
            self.trace.append((time.perf_counter() - self._t0, rss))
            self._halt.wait(self._period)

    def stop(self) -> None:
        self._halt.set()
        self.join()


def child(engine: str, n: int, workers: int) -> dict[str, Any]:
    make, _ = ENGINES[engine]
    go = make(n, workers)
    sampler = _RssSampler()
    baseline = sampler.sample()
    sampler.start()
    t0 = time.perf_counter()
    count, total = go()
    dt = time.perf_counter() - t0
    sampler.stop()
    trace = sampler.trace
    step = max(1, len(trace) // 200)
    return {"seconds": dt, "count": count, "sum": total, "baseline_rss": baseline,
            "peak_rss": max(sampler.peak, baseline),
            "trace": [(round(t, 3), r) for t, r in trace[::step]]}


# --------------------------------------------------------------------------- the benchmark (parent)

def _run_child(engine: str, n: int, workers: int, timeout: float) -> dict[str, Any]:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(REPO_ROOT), env.get("PYTHONPATH")) if p)
    proc = subprocess.run(
        [sys.executable, "-m", "bench.streaming", "child", engine, str(n), str(workers)],
        cwd=REPO_ROOT, env=env, capture_output=True, text=True, timeout=timeout)
    if proc.returncode != 0:
        tail = (proc.stderr or proc.stdout).strip().splitlines()[-3:]
        raise RuntimeError(f"child exited {proc.returncode}: {' / '.join(tail)}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def run(quick: bool, threads: list[int], repeat: int | None = None) -> list[dict[str, Any]]:
    n = 500_000 if quick else 10_000_000
    repeats = repeat or (1 if quick else 2)
    workers = usable_cores()
    case = f"{n:,} items"
    rows: dict[str, dict[str, dict[str, Any]]] = {}
    live = []
    for name, (_, avail) in ENGINES.items():
        ok, info = avail()
        rows[name] = {}
        for metric, better in (("items/s", True), ("peak RSS (MB)", False),
                               ("RSS growth (MB)", False)):
            rows[name][metric] = {
                "case": case, "engine": name, "metric": metric, "higher_is_better": better,
                "samples": [], "params": {"items": n, "workers": workers if name != "generator loop"
                                          else 1},
                "timed": TIMED, "status": OK if ok else NOT_AVAILABLE,
                **({"version": info} if ok else {"error": info})}
        if ok:
            live.append(name)
    for rep in range(repeats):
        k = rep % len(live) if live else 0
        for name in live[k:] + live[:k]:
            try:
                res = _run_child(name, n, workers, timeout=600 if not quick else 120)
            except Exception as exc:  # noqa: BLE001 - report and go on with the others
                for r in rows[name].values():
                    r.update(status=ERROR, error=error_text(exc))
                live.remove(name)
                print(f"  {case} / {name}: failed: {error_text(exc)}", file=sys.stderr)
                continue
            mb = 1 / 2**20
            vals = {"items/s": res["count"] / res["seconds"],
                    "peak RSS (MB)": res["peak_rss"] * mb,
                    "RSS growth (MB)": (res["peak_rss"] - res["baseline_rss"]) * mb}
            for metric, v in vals.items():
                r = rows[name][metric]
                r["samples"].append(v)
                r["answer"] = {"count": res["count"], "sum": res["sum"]}
            rows[name]["peak RSS (MB)"]["trace"] = res["trace"]
            print(f"  {case} / {name}: {vals['items/s'] / 1e6:.2f} M items/s, peak RSS"
                  f" {vals['peak RSS (MB)']:.0f} MB (+{vals['RSS growth (MB)']:.0f})",
                  file=sys.stderr)
    return [r for per in rows.values() for r in per.values()]


def main(argv: list[str]) -> int:
    p = argparse.ArgumentParser(prog="python -m bench.streaming")
    sub = p.add_subparsers(dest="cmd", required=True)
    c = sub.add_parser("child", help="run one engine over the stream and print JSON (internal)")
    c.add_argument("engine", choices=list(ENGINES))
    c.add_argument("items", type=int)
    c.add_argument("workers", type=int)
    args = p.parse_args(argv)
    print(json.dumps(child(args.engine, args.items, args.workers)))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
