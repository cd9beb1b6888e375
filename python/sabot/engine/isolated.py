"""Isolated calls: user code runs only in pool processes, never in the caller's.

An engine made with ``isolate=True`` (a cluster worker's) sends every per-item, async and batch
function to its process pool, so a function that crashes (``os._exit``, a segfault) takes
down a pool process, never the caller. Encoded calls go further: each morsel reaches a pool
process as the bytes it came in, and the process decodes it, runs it and encodes the results.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import Any

from ..errors import ProcessingError
from .adapters import Source, rows_per_morsel
from .batches import build_batches
from .columnar_input import ColumnarInput, build_items
from .controller import PROCESSES, Plan
from .functions import ASYNC, BATCH, AsyncAsSync, FunctionSpec
from .morsels import EncodedItems
from .processes import CallGroup, ShippedFunction, Task
from .runtime import EngineRuntime

#: An isolated call of a per-item function seen to take less than this for all its items runs
#: as one task: a second task would cost another process round trip and gain nothing (a
#: cluster worker's small jobs).
ONE_TASK_S = 0.002

_REASON = "isolate=True: user functions run only in worker processes"


async def run_isolated(runtime: EngineRuntime, src: Source, spec: FunctionSpec
                       ) -> tuple[Any, int]:
    """``spec`` over ``src`` on the pool: the output and the number of tasks."""
    runtime.begin_isolated()
    try:
        return await _run(runtime, src, spec)
    finally:
        runtime.end_isolated()


async def _run(runtime: EngineRuntime, src: Source, spec: FunctionSpec) -> tuple[Any, int]:
    n = len(src)
    controller = runtime.controller
    rows = rows_per_morsel(runtime.config.morsel_size_bytes, src.bytes_per_row())
    workers = max(1, controller.workers_for_call())
    if n == 0:
        controller.note(Plan(PROCESSES, workers, _REASON, items=0, items_per_task=1))
        return (build_batches(src, spec, []) if spec.kind == BATCH
                else build_items(src, [])), 0
    shipped = ship(spec, runtime.pickle_of(spec))
    reason = _REASON
    per_task = max(1, min(rows, math.ceil(n / workers)))
    cost = runtime.item_cost(shipped.token)
    if cost is not None and spec.kind != BATCH and n * cost < ONE_TASK_S and n <= rows:
        per_task = n
        reason += (f"; one task: {n} item(s) at {cost * 1e6:.0f} µs each (seen before) "
                   "take less than a second process round trip")
    step = per_task
    controller.note(Plan(PROCESSES, workers, reason, items=n, items_per_task=per_task))
    pool = await runtime.isolated_pool(workers, spec)
    call = CallGroup()
    if spec.kind == BATCH:
        tasks = [Task(shipped, off, m, i, call) for i, (off, m) in enumerate(src.morsels(step))]
        return build_batches(src, spec, await runtime.run_tasks(pool, tasks, call, rows)), \
            len(tasks)
    if ColumnarInput.supports(src):
        columnar = ColumnarInput(src)
        columnar.open_shared([])
        try:
            tasks = [Task(shipped, a, columnar.task_data(a, min(step, n - a)), i, call)
                     for i, a in enumerate(range(0, n, step))]
            parts = columnar.resolve(0, await runtime.run_tasks(pool, tasks, call, rows))
        finally:
            columnar.close_shared()
        return columnar.join([], parts), len(tasks)
    items = src.items()
    tasks = [Task(shipped, a, items[a:a + step], i, call) for i, a in enumerate(range(0, n, step))]
    results: list[Any] = []
    for part in await runtime.run_tasks(pool, tasks, call, rows):
        results.extend(part)
    return build_items(src, results), len(tasks)


async def run_encoded(runtime: EngineRuntime, morsels: Sequence[tuple[str, bytes, int]],
                      spec: FunctionSpec, decode: Callable[[str, bytes], Any],
                      encode: Callable[[list[Any]], tuple[str, bytes]]
                      ) -> list[tuple[int, str, bytes]]:
    """Each encoded morsel as one pool task (see ``LocalEngine.process_encoded``)."""
    if not morsels:
        return []
    runtime.begin_isolated()
    try:
        rows = sum(r for _, _, r in morsels)
        workers = max(1, runtime.controller.workers_for_call())
        runtime.controller.note(Plan(
            PROCESSES, workers, "encoded morsels: decoded, run and encoded in worker processes",
            items=rows, items_per_task=max(1, rows // len(morsels))))
        shipped = ship(spec, runtime.pickle_of(spec))
        pool = await runtime.isolated_pool(workers, spec)
        call = CallGroup()
        tasks = [Task(shipped, 0, EncodedItems(enc, blob, max(1, r), decode, encode), i, call)
                 for i, (enc, blob, r) in enumerate(morsels)]
        runtime.transport["encoded_tasks"] += len(tasks)
        rows_per = rows_per_morsel(runtime.config.morsel_size_bytes,
                                   max(1.0, sum(len(b) for _, b, _ in morsels) / max(1, rows)))
        return await runtime.run_tasks(pool, tasks, call, rows_per)
    finally:
        runtime.end_isolated()


def ship(spec: FunctionSpec, pickled: bytes | None = None) -> ShippedFunction:
    """The function prepared for the isolated pool's processes (async ones run to completion
    there), as ``pickled`` when given; ProcessingError when it cannot be pickled."""
    func = AsyncAsSync(spec.func) if spec.kind == ASYNC else spec.func
    try:
        return ShippedFunction(func, batch=spec.kind == BATCH, processor=spec.processor,
                               pickled=pickled)
    except Exception as exc:
        raise ProcessingError(
            f"{spec.name} cannot be sent to a worker process ({exc}); with isolate=True "
            "functions must pickle (cloudpickle)", original=exc) from exc


__all__ = ["ONE_TASK_S", "run_encoded", "run_isolated", "ship"]
