"""Per-item cheap function: `square` (a plain def) over 2M ints, from a list and from numpy.

Sabot's launcher against the list comprehension with the same function, multiprocessing.Pool with
its best chunksize, joblib, Dask distributed and Ray over large chunks, all with as many workers
as the machine has usable cores. The cheapest possible function shows the fixed cost of each
engine per item: a parallel engine has to ship every item to a worker and back. The numpy case
is the same work on an int64 array, which an engine can ship as a buffer instead of pickling
every item.
"""

from __future__ import annotations

from typing import Any

from .engines import per_item_engines
from .harness import Case, open_engines, run_case, usable_cores
from .workloads import checksum, square

TITLE = "square over 2M ints (per-item Python function)"
TIMED = ("one call from the input in the parent to all results in the parent (pools and"
         " clusters already started; Pool's chunksize chosen before timing)")


def run(quick: bool, threads: list[int], repeat: int | None = None) -> list[dict[str, Any]]:
    n = 200_000 if quick else 2_000_000
    repeats = repeat or (1 if quick else 3)
    workers = usable_cores()
    inputs: list[tuple[str, Any]] = [(f"square {n:,} ints (list)", list(range(n)))]
    try:
        import numpy as np

        inputs.append((f"square {n:,} ints (numpy int64)", np.arange(n, dtype=np.int64)))
    except ImportError:  # numpy is a Sabot dependency; without it only the list case runs
        pass
    rows: list[dict[str, Any]] = []
    with open_engines(per_item_engines(workers)) as engines:
        for name, data in inputs:
            case = Case(
                name=name,
                engines=[e.bind(data, square) for e in engines],
                work=n,
                metric="items/s",
                answer=checksum,
                params={"items": n, "input": type(data).__name__},
                timed=TIMED,
            )
            rows.extend(run_case("per_item", case, repeats, warmup=not quick))
    return rows
