"""What checkpoints cost a streaming job: Nexmark q5 and q7 with checkpoints every 1 s and every
10 s, beside the same query without checkpoints, in the same run.

Each query runs over ``60M`` generated events, long enough for several 10 s intervals
(``--quick``: 300K with checkpoints every 100 ms and 1 s), into a discarding sink, one thread, state written to a temporary ``state_dir``. Rows:
events/s per setting, the ratio against no checkpoints (issue #18's target: every 10 s costs at
most 10 %), and per checkpointed run the number of checkpoints, their mean duration (capture on
the job's thread + files written beside it + commit) and the size of the largest one.
"""

from __future__ import annotations

import shutil
import sys
import tempfile
import time
from typing import Any

from .harness import ERROR, OK, error_text, sabot_status

TITLE = "Checkpoint cost on Nexmark q5 and q7 (sabot.stream)"
TIMED = ("env.execute() of the query into a discard sink, generation included, with a "
         "checkpoint every interval into a local state_dir")
QUERIES = ("q5", "q7")


def run_query(name: str, events: int, interval: str | None) -> dict[str, Any]:
    from sabot import stream as st
    from sabot.stream.nexmark.queries import QUERIES as DEFS

    state = tempfile.mkdtemp(prefix="sabot-ckpt-bench-")
    try:
        env = st.StreamEnv(parallelism=1, checkpoint_interval=interval,
                           state_dir=state if interval else None)
        rows = [0]
        sizes: list[int] = []
        durations: list[float] = []
        out = DEFS[name](env.nexmark(events=events, seed=1))

        def count(b: Any) -> None:
            rows[0] += b.num_rows
            ck = env.get_stats().get("checkpoints") or {}
            if ck.get("last_bytes") is not None and (not durations or ck["count"] > len(durations)):
                sizes.append(ck["last_bytes"])
                durations.append(ck["last_duration_s"])

        out.to_callable(count)
        t0 = time.perf_counter()
        res = env.execute(f"ckpt-{name}")
        dt = time.perf_counter() - t0
        ck = env.get_stats().get("checkpoints") or {}
        return {"seconds": dt, "events": res.events, "rows": rows[0],
                "checkpoints": ck.get("count", 0),
                "mean_duration_s": (sum(durations) / len(durations)) if durations else
                ck.get("last_duration_s"),
                "max_bytes": max(sizes + [ck.get("last_bytes") or 0])}
    finally:
        shutil.rmtree(state, ignore_errors=True)


def run(quick: bool, threads: list[int], repeat: int | None = None) -> list[dict[str, Any]]:
    events = 300_000 if quick else 60_000_000
    intervals: list[str | None] = [None, "100ms", "1s"] if quick else [None, "1s", "10s"]
    repeats = repeat or (1 if quick else 2)
    ok, info = sabot_status()
    rows: list[dict[str, Any]] = []
    if ok:
        run_query("q7", 50_000, None)  # warm the generator's string pools
    for q in QUERIES:
        base_rate: float | None = None
        for interval in intervals:
            label = interval or "none"
            case = f"{q}, {events:,} events, checkpoints every {label}"
            row: dict[str, Any] = {"case": case, "engine": "sabot.stream", "metric": "events/s",
                                   "higher_is_better": True, "samples": [], "timed": TIMED,
                                   "params": {"query": q, "events": events, "interval": label},
                                   "status": OK if ok else ERROR}
            if not ok:
                row["error"] = info
                rows.append(row)
                continue
            try:
                best: dict[str, Any] | None = None
                for _ in range(repeats):
                    r = run_query(q, events, interval)
                    row["samples"].append(r["events"] / r["seconds"])
                    if best is None or r["seconds"] < best["seconds"]:
                        best = r
                assert best is not None
                rate = max(row["samples"])
                if interval is None:
                    base_rate = rate
                row["answer"] = {"output_rows": best["rows"], "events": best["events"]}
                row["params"].update(checkpoints=best["checkpoints"],
                                     mean_checkpoint_s=best["mean_duration_s"],
                                     max_checkpoint_bytes=best["max_bytes"],
                                     vs_none=None if base_rate is None else rate / base_rate)
                print(f"  {case}: {rate / 1e6:.2f} M events/s"
                      + ("" if interval is None or base_rate is None else
                         f" ({rate / base_rate:.3f}x of none; {best['checkpoints']} checkpoints, "
                         f"mean {best['mean_duration_s'] or 0:.4f} s, max "
                         f"{best['max_bytes'] / 1e6:.2f} MB)"), file=sys.stderr)
            except Exception as exc:  # noqa: BLE001 - reported as this case's result
                row.update(status=ERROR, error=error_text(exc))
            rows.append(row)
    return rows
