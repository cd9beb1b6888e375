"""The functions the benchmarks run, defined at module level so every engine can pickle them by
reference (worker processes import ``bench.workloads``), plus the checksums used to compare answers.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Sequence
from typing import Any

# A Mersenne prime keeps the position-weighted checksum small and exact in Python ints.
_MOD = (1 << 61) - 1


def square(x: int) -> int:
    """The per-item cheap function of benchmark 1 (a plain ``def``, as users write it)."""
    return x * x


async def square_async(x: int) -> int:
    """The README's ``async def process_item(item)`` shape, with the same work."""
    return x * x


class BusyWait:
    """A per-item function that burns ``cost_us`` of CPU (busy-wait, not sleep) and returns x.

    A class instance rather than a closure, so that it pickles by reference for every engine.
    """

    def __init__(self, cost_us: float) -> None:
        self.cost_us = float(cost_us)
        self._cost_ns = int(cost_us * 1000)

    def __call__(self, x: Any) -> Any:
        if self._cost_ns:
            end = time.perf_counter_ns() + self._cost_ns
            while time.perf_counter_ns() < end:
                pass
        return x

    def __repr__(self) -> str:
        return f"BusyWait({self.cost_us:g} us)"


class OnChunks:
    """A vectorized function, applied by every engine to whole chunks: Sabot runs it as
    ``sabot.batch(f)``, the chunk-based peers call it on each chunk (what users of each write
    for numpy work). An instance of a module-level class: it pickles by reference."""

    on_chunks = True

    def __init__(self, func: Callable[[Any], Any]) -> None:
        self.func = func

    def __call__(self, chunk: Any) -> Any:
        return self.func(chunk)

    def __repr__(self) -> str:
        return f"OnChunks({self.func.__name__})"


def _affine(a: Any) -> Any:
    return a * 3 + 1


#: ``3x + 1`` over a numpy array, vectorized: the bulk numpy case of the cluster benchmark.
affine = OnChunks(_affine)


def map_chunk(func: Callable[[Any], Any], chunk: Sequence[Any]) -> Any:
    """What chunk-based peers (joblib, Dask, Ray) run remotely: the function over one chunk
    (an :class:`OnChunks` function on the chunk as a whole).

    A numpy chunk gives a numpy result, so the peer ships one buffer back instead of pickling
    millions of numpy scalars (what a user of those engines would write for numpy input).
    """
    if getattr(func, "on_chunks", False):
        return func(chunk)
    out = [func(x) for x in chunk]
    if hasattr(chunk, "dtype") and hasattr(chunk, "shape"):  # ndarray, or joblib's memmap
        import numpy as np

        return np.asarray(out)
    return out


def chunks_of(data: Sequence[Any], n_chunks: int) -> list[Sequence[Any]]:
    """Split ``data`` into ``n_chunks`` contiguous slices of near-equal length (order kept)."""
    n = len(data)
    n_chunks = max(1, min(n_chunks, n)) if n else 1
    bounds = [n * i // n_chunks for i in range(n_chunks + 1)]
    return [data[bounds[i]:bounds[i + 1]] for i in range(n_chunks)]


def checksum(results: Iterable[Any]) -> dict[str, int]:
    """Count, sum and a position-weighted sum of integer results.

    The weighted sum changes when results come back out of order, so equal checksums mean the
    same values in the same order (up to a negligible chance of collision).
    """
    count = 0
    total = 0
    weighted = 0
    for i, r in enumerate(results):
        v = int(r)
        count += 1
        total += v
        weighted = (weighted + (i + 1) * (v % _MOD)) % _MOD
    return {"count": count, "sum": total, "weighted": weighted}


def array_checksum(results: Any) -> dict[str, int]:
    """:func:`checksum` for an integer numpy result, computed with numpy (sums wrap at 2**64,
    the same for every engine: equal answers mean the same values in the same order)."""
    import numpy as np

    a = np.ascontiguousarray(results, dtype=np.int64).view(np.uint64)
    positions = np.arange(1, len(a) + 1, dtype=np.uint64)
    return {"count": len(a), "sum": int(a.sum(dtype=np.uint64)),
            "weighted": int(np.dot(a, positions))}


class Opaque:
    """A chunk hidden in an object Dask does not look into.

    Dask (2026.x) walks list arguments and results element by element while building and running
    tasks, which costs it about 50 us per item; wrapping each chunk keeps Dask at its best.
    """

    def __init__(self, items: Sequence[Any]) -> None:
        self.items = items


def map_opaque(func: Callable[[Any], Any], chunk: Opaque) -> Opaque:
    return Opaque(map_chunk(func, chunk.items))
