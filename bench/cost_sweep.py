"""Cost sweep: a per-item function that burns 0, 10 us, 100 us or 1 ms of CPU (busy-wait).

The same engines as the per-item benchmark. At zero cost parallelism cannot pay for shipping the
items; at 1 ms per item it pays almost fully: an adaptive engine should track the better of
serial and parallel at every point. The input size shrinks as the cost grows so that one serial
run takes about a second (a tenth of that in quick mode).
"""

from __future__ import annotations

from typing import Any

from .engines import per_item_engines
from .harness import Case, open_engines, run_case, usable_cores
from .workloads import BusyWait, checksum

TITLE = "cost sweep: 0, 10 us, 100 us, 1 ms of CPU per item"
TIMED = "one call over the whole input (pools and clusters already started)"

# cost per item (us) -> items in a full run (about 1 s serial each; the zero-cost point is bigger)
POINTS: tuple[tuple[float, int], ...] = ((0, 1_000_000), (10, 100_000), (100, 10_000),
                                         (1000, 1_000))


def run(quick: bool, threads: list[int], repeat: int | None = None) -> list[dict[str, Any]]:
    repeats = repeat or (1 if quick else 3)
    workers = usable_cores()
    rows: list[dict[str, Any]] = []
    # pools and clusters are started once for the whole sweep, as a user would keep them
    with open_engines(per_item_engines(workers)) as engines:
        for cost_us, n_full in POINTS:
            n = max(100, n_full // 10) if quick else n_full
            data = list(range(n))
            func = BusyWait(cost_us)
            case = Case(
                name=f"cost={cost_us:g}us",
                engines=[e.bind(data, func) for e in engines],
                work=n,
                metric="items/s",
                answer=checksum,
                params={"items": n, "cost_us": cost_us},
                timed=TIMED,
            )
            rows.extend(run_case("cost_sweep", case, repeats, warmup=not quick))
    return rows
