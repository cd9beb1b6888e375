"""Nexmark on Sabot's streaming dataflow: events/s per core for q0, q1, q2, q5, q7, q8.

Each query runs over ``10M`` generated events (``--quick``: 200K) from ``env.nexmark(events=N,
seed=1)`` into a discarding sink, at each thread count (``StreamEnv(parallelism=t)``: the
threads the native kernels use per batch; the generator and the job loop are one Python
thread). "events/s" counts the events the query's sources read (a bids-only query reads the
46/50 of the stream that are bids, q8 the 4/50 that are people and auctions); "stream events/s"
counts every event of the generated stream (Nexmark's convention, where one source makes all
three kinds and the query keeps what it needs). The targets of issue #17 (events/s per core: q0-q2 and q8 1M,
q5 and q7 500K) are listed beside the figures; the same-run comparison with Flink and other
engines belongs to a separate harness, which can import ``sabot.stream.nexmark``.
"""

from __future__ import annotations

import sys
import time
from typing import Any

from .harness import ERROR, OK, error_text, sabot_status

TITLE = "Nexmark q0, q1, q2, q5, q7, q8 on sabot.stream: events/s per core"
TIMED = ("env.execute() of the query into a discard sink, generation included (the Nexmark "
         "convention: the generator is the source); per core = events/s / threads")
QUERIES = ("q0", "q1", "q2", "q5", "q7", "q8")
TARGETS = {"q0": 1e6, "q1": 1e6, "q2": 1e6, "q8": 1e6, "q5": 5e5, "q7": 5e5}


def run_query(name: str, events: int, threads: int, seed: int = 1) -> tuple[float, int, int]:
    """(seconds, events read, output rows) of one run."""
    from sabot import stream as st
    from sabot.stream.nexmark.queries import QUERIES as DEFS

    env = st.StreamEnv(parallelism=threads)
    out = DEFS[name](env.nexmark(events=events, seed=seed))
    rows = [0]
    out.to_callable(lambda b: rows.__setitem__(0, rows[0] + b.num_rows))
    t0 = time.perf_counter()
    res = env.execute(f"nexmark-{name}")
    return time.perf_counter() - t0, res.events, rows[0]


def run(quick: bool, threads: list[int], repeat: int | None = None) -> list[dict[str, Any]]:
    events = 200_000 if quick else 10_000_000
    repeats = repeat or (1 if quick else 2)
    counts = [1] if quick else sorted(set([1, 2] + [t for t in threads if t <= 2]))
    ok, info = sabot_status()
    try:
        import sabot.stream  # noqa: F401
    except Exception as exc:  # noqa: BLE001 - reported as the result
        ok, info = False, f"import sabot.stream failed: {error_text(exc)}"
    # warm the generator's string pools (built once per seed) outside the timed region
    if ok:
        run_query("q2", 50_000, 1)
    rows: list[dict[str, Any]] = []
    for q in QUERIES:
        for t in counts:
            case = f"{q}, {events:,} events, threads={t}"
            base = {"case": case, "engine": "sabot.stream", "higher_is_better": True,
                    "params": {"query": q, "events": events, "threads": t,
                               "target_per_core": TARGETS[q]},
                    "timed": TIMED, "status": OK if ok else ERROR}
            per_core = dict(base, metric="events/s per core", samples=[])
            total = dict(base, metric="events/s", samples=[])
            stream = dict(base, metric="stream events/s per core", samples=[])
            if not ok:
                per_core["error"] = total["error"] = stream["error"] = info
                rows += [per_core, total, stream]
                continue
            try:
                for _ in range(repeats):
                    dt, read, out_rows = run_query(q, events, t)
                    total["samples"].append(read / dt)
                    per_core["samples"].append(read / dt / t)
                    stream["samples"].append(events / dt / t)
                    per_core["answer"] = total["answer"] = stream["answer"] = {
                        "output_rows": out_rows, "events": read}
                    print(f"  {case}: {read / dt / 1e6:.2f} M events/s ({read / dt / t / 1e6:.2f} M "
                          f"per core; target {TARGETS[q] / 1e6:.1f} M), {out_rows:,} rows",
                          file=sys.stderr)
            except Exception as exc:  # noqa: BLE001 - report it as this case's result
                for r in (per_core, total, stream):
                    r.update(status=ERROR, error=error_text(exc))
            rows += [per_core, total, stream]
    return rows
