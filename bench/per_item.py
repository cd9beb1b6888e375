"""Per-item cheap function: `square` (a plain def) over 2M Python ints.

Sabot's launcher against the list comprehension with the same function, multiprocessing.Pool with
its best chunksize, joblib, Dask distributed and Ray over large chunks, all with as many workers
as the machine has usable cores. The cheapest possible function shows the fixed cost of each
engine per item: a parallel engine has to ship every item to a worker and back.
"""

from __future__ import annotations

from typing import Any

from .engines import per_item_engines
from .harness import Case, run_case, usable_cores
from .workloads import checksum, square

TITLE = "square over 2M ints (per-item Python function)"
TIMED = ("one call from a list in the parent to the list of results in the parent (pools and"
         " clusters already started; Pool's chunksize chosen before timing)")


def run(quick: bool, threads: list[int], repeat: int | None = None) -> list[dict[str, Any]]:
    n = 200_000 if quick else 2_000_000
    repeats = repeat or (1 if quick else 5)
    workers = usable_cores()
    data = list(range(n))
    case = Case(
        name=f"square {n:,} ints",
        engines=[e.bind(data, square) for e in per_item_engines(workers)],
        work=n,
        metric="items/s",
        answer=checksum,
        params={"items": n},
        timed=TIMED,
    )
    return run_case("per_item", case, repeats, warmup=not quick)
