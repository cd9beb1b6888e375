"""One call of a per-item function: sample -> plan -> run -> re-plan.

The first items run here and are timed (1, 2, 4, ... items until SAMPLE_S or the first morsel
is used up); the controller plans the rest from that sample (inline, or the process pool); the
rest runs there, and while it runs inline, in slices, a slice that turns out costlier than the
sample lets the controller plan again, and the pool takes the rest when it now wins.
``process_data`` runs one of these per call; ``process_stream`` runs one on its first morsel
and asks it for the stream's plan.
"""

from __future__ import annotations

import asyncio
import logging
import math
import pickle
import time
from collections.abc import Sequence
from typing import Any

from .columnar_input import ColumnarInput, PieceRun
from .controller import INLINE, MIN_PARALLEL_S, PROCESSES, Plan
from .fallback_warning import warn_unpicklable
from .functions import FunctionSpec, function_pickles
from .inline import InlineRun
from .placement import INLINE_SLICE_S, LOOP_CALL_S, LOOP_SLICE_S
from .processes import CallGroup, ShippedFunction, Task
from .progress import advance
from .runtime import EngineRuntime, PoolUnavailable

log = logging.getLogger("sabot.engine")

#: Time budget of the first-items sample the controller plans from.
SAMPLE_S = 0.005
#: A re-plan measures the shipping cost on at most this many of the items run so far.
REPLAN_SHIP_ITEMS = 2000
#: A stream's plan measures the shipping cost on at most this many items of its first morsel.
STREAM_SHIP_ITEMS = 1000


class ItemCall:
    """A per-item function over ``items`` (a list of results back), or with ``columnar``
    (numpy or Arrow input; ``items`` is then unused) morsels that travel to workers as raw
    buffers, results that come back as arrays, and the final output as the return value."""

    def __init__(self, runtime: EngineRuntime, spec: FunctionSpec, items: Sequence[Any],
                 morsel_rows: int, *, columnar: ColumnarInput | None = None) -> None:
        self.runtime = runtime
        self.spec = spec
        self.items = items
        self.columnar = columnar
        self.morsel_rows = morsel_rows
        self.n = columnar.n if columnar is not None else len(items)
        #: The plan this call ran under last (the controller's, or a re-plan's).
        self.plan: Plan | None = None
        self._run: Any = None  # InlineRun, or PieceRun for the rest of columnar input
        self._ship = 0.0
        self._picklable = True
        self._shipped_measured = False
        self._convert = 0.0

    async def run(self) -> tuple[Any, int]:
        """The results (or the output, for columnar input) and the number of morsels."""
        columnar, n, rows = self.columnar, self.n, self.morsel_rows
        sample_cap = min(n, rows)
        run = self._run = InlineRun(self.spec.func, columnar.head(sample_cap)
                                    if columnar is not None else self.items)
        size, elapsed = 1, 0.0
        while run.done < sample_cap and elapsed < SAMPLE_S:
            t = time.perf_counter()
            run.step(min(size, sample_cap - run.done))
            elapsed += time.perf_counter() - t
            size *= 2
        done = run.done
        advance(done)
        remaining = n - done
        calls = self.runtime.calls
        if remaining == 0:
            self._note(Plan(INLINE, 1, f"{n} item(s): all ran in the sample",
                            elapsed / max(1, done), 0.0, n))
            calls.observe_morsels(elapsed, 1 if n else 0)
            return self._finish(run.results), 1 if n else 0
        sampled = elapsed / max(1, done)
        per_item = sampled
        if remaining * per_item >= MIN_PARALLEL_S:
            # whoever runs the items converts them (and back)
            per_item += self._measure_ship(done, run.results)
        plan = self._plan(remaining, per_item)
        morsels = math.ceil(n / rows)
        if plan.warm_pool:
            self.runtime.warm_up()
        if plan.executor == PROCESSES:
            try:
                return self._join(await self._in_pool(done, plan)), morsels
            except PoolUnavailable as exc:
                log.warning("process pool unavailable (%s); running inline", exc)
                self._note(Plan(INLINE, 1, f"process pool unavailable: {exc}", per_item,
                                self._ship, remaining))
        if columnar is not None:
            # Converted and run in cache-sized pieces, each made an array as it is done.
            self._run = PieceRun(self.spec.func, columnar, done, run.results)
        self._convert = per_item - sampled
        self._shipped_measured = remaining * sampled >= MIN_PARALLEL_S
        parts = await self._run_inline(per_item)
        if isinstance(self._run, PieceRun):
            assert columnar is not None
            return columnar.join(self._run.results, self._run.parts + (parts or [])), morsels
        if parts is not None:
            return self._join(parts), morsels
        return self._finish(self._run.results), morsels

    def plan_ahead(self, items: int, results: list[Any]) -> Plan | None:
        """A new plan for ``items`` more items like this call's (a stream's next morsels) when
        this call ran inline: many morsels may pay for the pool where one did not. None when
        this call's plan stands (it ran on the pool, or measured no cost). ``results`` are
        this call's."""
        plan = self.plan
        if plan is None or plan.executor == PROCESSES or plan.per_item_cost_s <= 0:
            return None
        k = min(len(self.items), STREAM_SHIP_ITEMS)
        ship, picklable = list_ship_cost(self.items[:k], results[:k], self.spec)
        self.plan = self.runtime.controller.plan_items(
            items=items, per_item_s=plan.per_item_cost_s, ship_item_s=ship,
            pool_warm=self.runtime.pool is not None, picklable=picklable,
            items_per_morsel=self.morsel_rows)
        return self.plan

    # -- planning ------------------------------------------------------------------------
    def _note(self, plan: Plan) -> Plan:
        self.plan = plan
        self.runtime.controller.note(plan)
        return plan

    def _plan(self, items: int, per_item_s: float) -> Plan:
        self.plan = self.runtime.controller.plan_items(
            items=items, per_item_s=per_item_s, ship_item_s=self._ship,
            pool_warm=self.runtime.pool_warm(), picklable=self._picklable,
            items_per_morsel=self.morsel_rows)
        if not self._picklable and items * per_item_s >= MIN_PARALLEL_S:
            # Enough work to consider the pool, which pickling rules out: say so, once per
            # function.
            sample = self._run.results if self._run is not None else []
            warn_unpicklable(self.spec, self.items[:len(sample)], sample, stacklevel=2)
        return self.plan

    def _measure_ship(self, k: int, results: list[Any]) -> float:
        """Measure the shipping cost on the first ``k`` items (``results``: theirs); returns
        the per-item cost of converting columnar items and results (0 for a list)."""
        if self.columnar is None:
            self._ship, self._picklable = list_ship_cost(self.items[:k], results, self.spec)
            return 0.0
        self._ship, self._picklable, convert = self.columnar.ship_cost(k, results, self.spec)
        return convert

    async def _replan(self, per_item_now: float) -> list[Any] | None:
        """Re-plan with the cost measured inline so far (the first items may not be
        representative); when processes now win, they take the rest (their parts are
        returned), else None."""
        run = self._run
        if not self._shipped_measured:
            k = min(len(run.results), REPLAN_SHIP_ITEMS)
            self._measure_ship(k, run.results[:k])
            self._shipped_measured = True
        again = self._plan(run.remaining, per_item_now + self._convert)
        if again.executor != PROCESSES:
            return None
        again.reason = f"re-planned after {run.done} items inline: " + again.reason
        try:
            return await self._in_pool(run.done, again)
        except PoolUnavailable:
            return None

    # -- running -------------------------------------------------------------------------
    async def _run_inline(self, per_item: float) -> list[Any] | None:
        """Run the rest here, in slices; after a slice costlier than planned the pool may take
        the remaining items (its parts are returned then, else None)."""
        run, rows, calls = self._run, self.morsel_rows, self.runtime.calls
        estimate = run.remaining * per_item
        probe = 4 * max(1, run.done)
        if estimate < LOOP_CALL_S and run.remaining <= probe:
            t = time.perf_counter()
            k = run.remaining
            run.step(k)
            calls.observe_morsels(time.perf_counter() - t, math.ceil(k / rows))
            advance(k)
            return None
        loop = asyncio.get_running_loop()
        inline = self.runtime.inline_executor()
        step = max(1, int(INLINE_SLICE_S / per_item)) if per_item > 0 else run.remaining
        # The first slice is a few times the sample only: items after the sample may cost more
        # (inputs sorted by size, ...), and the re-plan below should see that early.
        step_now = min(step, probe)
        while run.remaining:
            k = min(step_now, run.remaining)
            t = time.perf_counter()
            if k * per_item < LOOP_SLICE_S:
                run.step(k)  # shorter than a thread hop
            else:
                await loop.run_in_executor(inline, run.step, k)
            dt = time.perf_counter() - t
            calls.observe_morsels(dt, math.ceil(k / rows))
            advance(k)
            measured = dt / k
            if run.remaining and measured > per_item * 1.5:
                parts = await self._replan(measured)
                if parts is not None:
                    return parts
            per_item = max(per_item, measured)
            step_now = max(1, int(INLINE_SLICE_S / per_item))
        return None

    async def _in_pool(self, start: int, plan: Plan) -> list[Any]:
        return await run_items_in_pool(
            self.runtime, self.items if self.columnar is None else self.columnar, start,
            self.spec, plan, self.morsel_rows, self._run.results)

    def _join(self, parts: list[Any]) -> Any:
        """The sampled (and inline) results followed by the pool's parts."""
        if self.columnar is not None:
            return self.columnar.join(self._run.results, parts)
        results = self._run.results
        for part in parts:
            results.extend(part)
        return results

    def _finish(self, results: list[Any]) -> Any:
        return self.columnar.build(results) if self.columnar is not None else results


async def run_items_in_pool(runtime: EngineRuntime, items: Sequence[Any] | ColumnarInput,
                            start: int, spec: FunctionSpec, plan: Plan, morsel_rows: int,
                            sample_results: list[Any] | None = None) -> list[Any]:
    """Items ``start..`` of a per-item call on the pool, in tasks of ``plan.items_per_task``;
    one result part per task. PoolUnavailable when there is no pool or the function does not
    pickle."""
    try:
        shipped = ShippedFunction(spec.func, batch=False, processor=spec.processor)
    except Exception as exc:
        raise PoolUnavailable(f"the function cannot be pickled ({exc})") from exc
    pool = await runtime.pool_for(plan.workers)
    step = max(1, plan.items_per_task)
    call = CallGroup()
    n = len(items)
    t0 = time.perf_counter()
    if not isinstance(items, ColumnarInput):
        tasks = [Task(shipped, a, items[a:a + min(step, n - a)], i + 1, call)
                 for i, a in enumerate(range(start, n, step))]
        parts = await runtime.run_tasks(pool, tasks, call, morsel_rows)
        runtime.controller.learn(plan, time.perf_counter() - t0)
        return parts
    items.open_shared(sample_results or [])
    try:
        tasks = [Task(shipped, a, items.task_data(a, min(step, n - a)), i + 1, call)
                 for i, a in enumerate(range(start, n, step))]
        out = items.resolve(start, await runtime.run_tasks(pool, tasks, call, morsel_rows))
    finally:
        items.close_shared()
    runtime.controller.learn(plan, time.perf_counter() - t0)
    return out


def list_ship_cost(sample_items: Sequence[Any], sample_results: list[Any],
                   spec: FunctionSpec) -> tuple[float, bool]:
    """Parent-side seconds per item to send items to a worker and take results back, and
    whether the function pickles."""
    n = max(1, len(sample_items))
    if not function_pickles(spec):
        return 0.0, False
    try:
        t = time.perf_counter()
        pickle.dumps(list(sample_items), protocol=5)
        pickle.loads(pickle.dumps(sample_results, protocol=5))
        return (time.perf_counter() - t) / n, True
    except Exception:
        return 0.0, False


__all__ = ["SAMPLE_S", "ItemCall", "list_ship_cost", "run_items_in_pool"]
