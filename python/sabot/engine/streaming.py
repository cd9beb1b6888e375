"""``process_stream``: ordered results over an unbounded source with bounded memory.

The source is cut into morsels as it is read (never read ahead by more than ``max_in_flight``
morsels), each morsel runs on the executor the controller chose from the first one, and results
are yielded in input order as soon as the oldest morsel is done. Memory therefore stays flat on an
endless source. When the consumer stops (``break``, ``aclose()``, cancellation) the queued morsels
are dropped and nothing is left running on their behalf.

What is yielded: one result per item for per-item and ``async def`` functions, and for batch
functions over list-like sources; one Arrow output per morsel for batch functions and compute
expressions over Arrow sources.
"""

from __future__ import annotations

import asyncio
import collections
import itertools
import time
from collections.abc import AsyncIterator, Iterator
from typing import Any

import pyarrow as pa

from ..errors import ProcessingError
from .adapters import python_item_bytes, rows_per_morsel
from .async_items import run_async
from .batches import evaluate_expression, run_batch
from .controller import PROCESSES, Plan
from .functions import ASYNC, BATCH, EXPRESSION, FunctionSpec, resolve_function
from .inline import InlineRun
from .item_call import ItemCall
from .placement import LOOP_CALL_S
from .processes import CallGroup, ShippedFunction, Task
from .runtime import EngineRuntime


async def _aiter_morsels(source: Any, rows: int | None, morsel_bytes: int
                         ) -> AsyncIterator[tuple[int, Any]]:
    """``(offset, morsel)`` pairs: lists for Python iterables, RecordBatches for Arrow."""
    offset = 0
    if isinstance(source, (pa.RecordBatchReader, pa.Table)):
        batches: Any = (source.to_batches() if isinstance(source, pa.Table) else source)
        for rb in batches:
            n = rb.num_rows
            if n == 0:
                continue
            step = rows or rows_per_morsel(morsel_bytes, rb.get_total_buffer_size() / n)
            for start in range(0, n, step):
                part = rb.slice(start, step)
                yield offset, part
                offset += part.num_rows
            await asyncio.sleep(0)
        return
    if hasattr(source, "__aiter__"):
        buf: list[Any] = []
        step = rows
        async for item in source:
            buf.append(item)
            if step is None and len(buf) >= 64:
                step = rows_per_morsel(morsel_bytes, python_item_bytes(buf))
            if step is not None and len(buf) >= step:
                yield offset, buf
                offset += len(buf)
                buf = []
        if buf:
            yield offset, buf
        return
    if not hasattr(source, "__iter__") or isinstance(source, (str, bytes, dict)):
        raise TypeError(
            f"process_stream needs an iterable, async iterable or pyarrow RecordBatchReader; "
            f"got {type(source).__name__}")
    it: Iterator[Any] = iter(source)
    step = rows
    if step is None:
        head = list(itertools.islice(it, 64))
        if not head:
            return
        step = rows_per_morsel(morsel_bytes, python_item_bytes(head))
        it = itertools.chain(head, it)
    while True:
        chunk = list(itertools.islice(it, step))
        if not chunk:
            return
        yield offset, chunk
        offset += len(chunk)
        # Let the consumer and the other tasks run between morsels of a fast source.
        await asyncio.sleep(0)


class _Morsels:
    """Where one stream's morsels run: the first is one per-item call (sampled and planned),
    so the controller plans the stream's executor from real measurements, then for the
    stream as a whole (many morsels follow); the others go where that plan says."""

    def __init__(self, runtime: EngineRuntime, spec: FunctionSpec, max_in_flight: int) -> None:
        self.runtime = runtime
        self.spec = spec
        self.max_in_flight = max_in_flight
        self.call = CallGroup()
        self.loop = asyncio.get_running_loop()
        self._plan: Plan | None = None
        self._shipped: ShippedFunction | None = None

    async def first(self, offset: int, morsel: Any) -> Any:
        spec, runtime = self.spec, self.runtime
        if spec.kind in (EXPRESSION, BATCH, ASYNC):
            return await self.start(offset, morsel, 0)
        data = morsel.to_pylist() if isinstance(morsel, pa.RecordBatch) else morsel
        rows = len(data)
        head = ItemCall(runtime, spec, data, rows)
        out, _ = await head.run()
        ahead = head.plan_ahead(rows * self.max_in_flight, out)
        self._plan = head.plan if ahead is None else ahead
        if ahead is not None and ahead.executor == PROCESSES:
            await self.loop.run_in_executor(None, runtime.ensure_pool, ahead.workers)
        return out

    def start(self, offset: int, morsel: Any, index: int) -> asyncio.Future[Any]:
        spec, loop, plan = self.spec, self.loop, self._plan
        if spec.kind == EXPRESSION:
            return loop.run_in_executor(None, evaluate_expression, morsel, spec.func)
        if spec.kind == BATCH:
            return loop.run_in_executor(None, run_batch, spec.func, spec.name, index, offset,
                                        morsel)
        data = morsel.to_pylist() if isinstance(morsel, pa.RecordBatch) else morsel
        if spec.kind == ASYNC:
            return asyncio.ensure_future(run_async(self.runtime, data, spec, offset))
        pool = self.runtime.pool
        if plan is not None and plan.executor == PROCESSES and pool is not None:
            if self._shipped is None:
                self._shipped = ShippedFunction(spec.func, batch=False,
                                                processor=spec.processor)
            return asyncio.wrap_future(pool.submit(
                Task(self._shipped, offset, data, index, self.call)))
        run = InlineRun(spec.func, data, offset)
        per_item = plan.per_item_cost_s if plan is not None else 0.0
        if len(data) * per_item < LOOP_CALL_S:
            # A cheap morsel: a thread hop would cost more than the work.
            fut = loop.create_future()
            try:
                fut.set_result(run.run_all())
            except ProcessingError as exc:
                fut.set_exception(exc)
            return fut
        return loop.run_in_executor(self.runtime.inline_executor(), run.run_all)


async def stream(runtime: EngineRuntime, source: Any, func: Any, *,
                 max_in_flight: int | None = None,
                 morsel_rows: int | None = None) -> AsyncIterator[Any]:
    """The results of ``func`` over ``source``, in order (see the module's docstring)."""
    spec = resolve_function(func)
    if max_in_flight is None:
        max_in_flight = 2 * runtime.controller.max_workers + 2
    if max_in_flight < 1:
        raise ValueError(f"max_in_flight must be >= 1, got {max_in_flight}")
    if morsel_rows is not None and morsel_rows < 1:
        raise ValueError(f"morsel_rows must be >= 1, got {morsel_rows}")
    runs = _Morsels(runtime, spec, max_in_flight)
    pending: collections.deque[tuple[int, asyncio.Future[Any]]] = collections.deque()
    morsels = _aiter_morsels(source, morsel_rows, runtime.config.morsel_size_bytes)
    runtime.streams_active += 1
    items = 0
    n_morsels = 0
    t0 = time.perf_counter()
    whole = spec.kind == EXPRESSION  # one output per morsel, not one result per item
    try:
        source_done = False
        while True:
            while not source_done and len(pending) < max_in_flight:
                try:
                    offset, morsel = await morsels.__anext__()
                except StopAsyncIteration:
                    source_done = True
                    break
                if n_morsels == 0:
                    fut: asyncio.Future[Any] = runs.loop.create_future()
                    fut.set_result(await runs.first(offset, morsel))
                else:
                    fut = runs.start(offset, morsel, n_morsels)
                pending.append((offset, fut))
                n_morsels += 1
            if not pending:
                break
            offset, fut = pending.popleft()
            out = await fut
            if isinstance(out, tuple) and spec.kind == ASYNC:
                out = out[0]
            items += len(out)
            if whole or (spec.kind == BATCH and not isinstance(out, list) and _is_arrow(out)):
                yield out
            else:
                for r in out:
                    yield r
    except ProcessingError:
        runtime.calls.count_error()
        raise
    finally:
        runs.call.cancelled = True
        for _, f in pending:
            if f.done():
                if not f.cancelled():
                    f.exception()  # retrieved: a later morsel's error is not reported twice
            else:
                f.cancel()
        runtime.streams_active -= 1
        await morsels.aclose()
        if items:
            runtime.calls.count_call(items, n_morsels, time.perf_counter() - t0)


def _is_arrow(obj: Any) -> bool:
    return isinstance(obj, (pa.Array, pa.ChunkedArray, pa.RecordBatch, pa.Table))


__all__ = ["stream"]
