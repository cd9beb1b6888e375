"""``async def`` per-item functions.

The first items are awaited one by one and timed; a function that never gives control back to
the event loop only computes (the README's example is such a function), and it runs on worker
processes when the controller says they pay off. Everything else is awaited here with bounded
concurrency.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Sequence
from typing import Any

from ..errors import ProcessingError
from .controller import ASYNC, MIN_PARALLEL_S, PROCESSES, Plan
from .functions import AsyncAsSync, FunctionSpec
from .item_call import SAMPLE_S, list_ship_cost, run_items_in_pool
from .runtime import EngineRuntime, PoolUnavailable

log = logging.getLogger("sabot.engine")

#: What driving an ``async def`` function to completion costs a worker process per item (one
#: ``send`` when it never waits), added to the measured cost when planning.
ASYNC_CHILD_OVERHEAD_S = 2e-6
#: Concurrent awaits of an ``async def`` per-item function.
ASYNC_CONCURRENCY = 128
#: An ``async def`` function is sampled on at most this many items, and its items go to worker
#: processes in morsels of this many.
MORSEL_ITEMS = 64


async def run_async(runtime: EngineRuntime, items: Sequence[Any], spec: FunctionSpec,
                    offset: int = 0, *, allow_processes: bool = True) -> tuple[list[Any], int]:
    """``spec`` (an ``async def`` per-item function) over ``items``: the results and the number
    of morsels. ``offset``: the position of ``items[0]`` in the whole input (a stream's
    morsel), for error indexes."""
    func = spec.func
    n = len(items)
    results: list[Any] = [None] * n
    done, wall, suspended = 0, 0.0, 0
    while done < min(n, MORSEL_ITEMS) and wall < SAMPLE_S:
        t = time.perf_counter()
        probe = _CountSuspensions(func(items[done]))
        try:
            results[done] = await probe
        except Exception as exc:
            raise _failure(spec, offset + done, exc) from exc
        wall += time.perf_counter() - t
        suspended += probe.suspensions
        done += 1
    remaining = n - done
    controller = runtime.controller
    if remaining and allow_processes and suspended == 0:
        per_item = wall / done + ASYNC_CHILD_OVERHEAD_S
        ship, picklable = (list_ship_cost(items[:done], results[:done], spec)
                           if remaining * per_item >= MIN_PARALLEL_S else (0.0, True))
        plan = controller.plan_items(
            items=remaining, per_item_s=per_item, ship_item_s=ship,
            pool_warm=runtime.pool_warm(), picklable=picklable, items_per_morsel=MORSEL_ITEMS)
        if plan.executor == PROCESSES:
            plan.reason = "async def function that never waits (CPU-bound): " + plan.reason
            wrapped = FunctionSpec(spec.kind, AsyncAsSync(func), spec.name, spec.processor)
            try:
                parts = await run_items_in_pool(runtime, items, done, wrapped, plan,
                                                MORSEL_ITEMS)
            except PoolUnavailable as exc:
                log.warning("process pool unavailable (%s); awaiting here", exc)
            except ProcessingError as exc:
                if exc.index is not None:
                    exc.index += offset  # a stream's morsel: report the global position
                raise
            else:
                del results[done:]
                for part in parts:
                    results.extend(part)
                return results, 1 + len(parts)
    indices = iter(range(done, n))
    failure: list[tuple[int, BaseException]] = []

    async def runner() -> None:
        for i in indices:
            if failure:
                return
            try:
                results[i] = await func(items[i])
            except Exception as exc:
                failure.append((i, exc))
                return

    t = time.perf_counter()
    await asyncio.gather(*(runner() for _ in range(min(ASYNC_CONCURRENCY, remaining))))
    controller.note(Plan(ASYNC, min(ASYNC_CONCURRENCY, max(1, remaining)),
                         f"async def function: awaited on the event loop, up to "
                         f"{ASYNC_CONCURRENCY} at a time",
                         (wall + time.perf_counter() - t) / max(1, n), 0.0, n))
    if failure:
        index, error = min(failure, key=lambda f: f[0])
        raise _failure(spec, offset + index, error) from error
    return results, 1 if n else 0


class _CountSuspensions:
    """Awaits a coroutine and counts how often it gave control back to the event loop: a
    coroutine function that never does only computes, and can run on worker processes."""

    __slots__ = ("coro", "suspensions")

    def __init__(self, coro: Any) -> None:
        self.coro = coro
        self.suspensions = 0

    def __await__(self) -> Any:
        gen = self.coro.__await__()
        try:
            signal = gen.send(None)
            while True:
                self.suspensions += 1
                try:
                    value = yield signal
                except BaseException as exc:  # cancellation and friends go to the coroutine
                    signal = gen.throw(exc)
                else:
                    signal = gen.send(value)
        except StopIteration as stop:
            return stop.value


def _failure(spec: FunctionSpec, index: int, exc: BaseException) -> ProcessingError:
    return ProcessingError(f"{spec.name} failed on item {index}: {type(exc).__name__}: {exc}",
                           index=index, original=exc)


__all__ = ["ASYNC_CHILD_OVERHEAD_S", "ASYNC_CONCURRENCY", "run_async"]
