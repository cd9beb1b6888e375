"""LocalEngine: process_data on one machine (single-node mode, and inside every cluster worker).

One call goes: resolve the function kind -> adapt the input -> time a small sample of the first
items -> let the controller choose the executor (inline, processes, threads, native, async) ->
run the rest in morsels -> assemble the output of the input's type, in input order.
"""

from __future__ import annotations

import asyncio
import collections
import logging
import math
import pickle
import threading
import time
import weakref
from collections.abc import AsyncIterator, Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import numpy as np
import pyarrow as pa

from ..config import Config, load_config
from ..errors import ProcessingError
from ..system import system_resources, usable_cores
from . import adapters, shm
from .adapters import Source, adapt, rows_per_morsel
from .controller import ASYNC, INLINE, NATIVE, PROCESSES, THREADS, AdaptiveController, Plan
from .functions import ASYNC as FN_ASYNC
from .functions import BATCH, EXPRESSION, ITEM, FunctionSpec, resolve_function
from .inline import NUMPY_PIECE, InlineRun, native_loop_available, run_numpy_pieces
from .processes import CallGroup, ProcessPool, ShippedFunction, Task
from .worker_process import (
    ArrowMorsel,
    AsyncAsSync,
    EncodedItems,
    join_numpy,
    results_arrow,
    results_part,
)

log = logging.getLogger("sabot.engine")

#: Time budget of the first-items sample the controller plans from.
SAMPLE_S = 0.005
#: Inline work runs on a helper thread (the event loop stays responsive: HTTP, heartbeats) in
#: slices of about this long, so a cancelled call stops between slices.
INLINE_SLICE_S = 0.25
#: Inline work shorter than this runs directly on the event loop (a thread hop costs more).
INLINE_DIRECT_S = 0.01
#: How long the isolated pool keeps a spare process after the last call that needed it.
SPARE_KEEP_S = 10.0
#: An isolated call of a per-item function seen to take less than this for all its items runs
#: as one task: a second task would cost another process round trip and gain nothing (a
#: cluster worker's small jobs).
ONE_TASK_S = 0.002
#: Functions whose recent seconds per item (in worker processes) an engine remembers.
_ITEM_COSTS = 256
EXECUTOR_CHOICES = ("auto", INLINE, PROCESSES)
#: What driving an ``async def`` function to completion costs a worker process per item (one
#: ``send`` when it never waits), added to the measured cost when planning.
ASYNC_CHILD_OVERHEAD_S = 2e-6
#: Concurrent awaits of an ``async def`` per-item function.
ASYNC_CONCURRENCY = 128


class _Counters:
    __slots__ = (
        "busy_s",
        "calls",
        "errors",
        "executors",
        "items",
        "last_call",
        "lock",
        "morsels",
        "workers_lost",
    )

    def __init__(self) -> None:
        self.calls = 0
        self.items = 0
        self.morsels = 0
        self.errors = 0
        self.busy_s = 0.0
        self.executors: dict[str, int] = {}
        self.last_call: dict[str, Any] | None = None
        self.workers_lost = 0
        self.lock = threading.Lock()


class LocalEngine:
    """Runs ``process(data, func)`` on this machine. Create one per process and reuse it."""

    def __init__(self, config: Config | None = None, *, node: str | None = None,
                 executor: str = "auto", record_metrics: bool = True,
                 isolate: bool = False) -> None:
        """``executor``: ``auto`` (the controller decides) or ``inline`` / ``processes`` to
        force where per-item functions run (tests, or a user who knows better).
        ``record_metrics``: count items and morsels in the Prometheus metrics; an owner that
        counts its own work (a cluster worker counting whole morsels) passes False so nothing
        is counted twice.
        ``isolate``: never run user Python code in this process (not even the controller's
        sample): every per-item, async and batch function runs on the worker processes, so a
        function that crashes (``os._exit``, a segfault) takes down a pool worker, never the
        caller. For long-lived services (a cluster worker) that must outlive bad functions."""
        if executor not in EXECUTOR_CHOICES:
            raise ValueError(f"executor={executor!r} is invalid: expected one of "
                             f"{', '.join(EXECUTOR_CHOICES)}")
        self.config = config if config is not None else load_config()
        self.node = node
        self.isolate = isolate
        self._active_isolated = 0
        self._spare_until = 0.0  # the isolated pool keeps its spare process until then
        self._pool_full_at = 0.0  # when a call last wanted the pool at its current size
        self.controller = AdaptiveController(
            usable_cores=usable_cores(),
            max_workers=self.config.effective_max_workers,
            target_utilization=self.config.target_utilization,
            force=None if executor == "auto" else executor,
        )
        self._pool: ProcessPool | None = None
        self._pool_lock = threading.Lock()
        self._sampler: Any = None
        self._inline_thread: ThreadPoolExecutor | None = None
        self._batch_threads: ThreadPoolExecutor | None = None
        self._stats = _Counters()
        self._closed = False
        self._metrics: Any = None if record_metrics else False
        self._streams_active = 0
        # how pool tasks' data travelled: shared memory descriptors or the pipes
        # encoded_tasks: pipe tasks whose items travelled still encoded (process_encoded)
        # loop_tasks: pipe tasks this engine's event loop ran without a dispatch thread
        self._transport = {"shared_memory_tasks": 0, "pipe_tasks": 0, "encoded_tasks": 0,
                           "loop_tasks": 0}
        # shipped-function token -> seconds per item of its tasks (item functions, list input)
        self._item_costs: collections.OrderedDict[int, float] = collections.OrderedDict()
        # Functions whose pickle is already known (use_pickle): id -> (weak reference, bytes);
        # by identity (a callable's own __eq__ must not match another one's bytes).
        self._pickled: dict[int, tuple[weakref.ref[Any], bytes]] = {}
        self.started_at = time.time()

    # -- public API ------------------------------------------------------------------------
    async def process(self, data: Any, func: Any) -> Any:
        """Apply ``func`` to ``data``; results in input order, typed like the input."""
        self._check_open()
        spec = resolve_function(func)
        t0 = time.perf_counter()
        try:
            if spec.kind == EXPRESSION:
                out, n, morsels = await self._run_expression(data, spec)
            else:
                src = adapt(data)
                if self.isolate:
                    out, morsels = await self._run_isolated(src, spec)
                elif spec.kind == BATCH:
                    out, morsels = await self._run_batches(src, spec)
                elif spec.kind == ITEM and _Columnar.supports(src):
                    rows = rows_per_morsel(self.config.morsel_size_bytes, src.bytes_per_row())
                    out, morsels = await self._run_items((), spec, rows, columnar=_Columnar(src))
                else:
                    items = src.items()
                    if spec.kind == FN_ASYNC:
                        results, morsels = await self._run_async(items, spec)
                    else:
                        rows = rows_per_morsel(self.config.morsel_size_bytes, src.bytes_per_row())
                        results, morsels = await self._run_items(items, spec, rows)
                    out = _build(src, results)
                n = len(src)
        except ProcessingError:
            self._count_error()
            raise
        self._count_call(n, morsels, time.perf_counter() - t0)
        return out

    def process_stream(self, source: Any, func: Any, *, max_in_flight: int | None = None,
                       morsel_rows: int | None = None) -> AsyncIterator[Any]:
        """Results of ``func`` over ``source`` (sync/async iterable or Arrow reader), in order."""
        from .streaming import stream

        self._check_open()
        return stream(self, source, func, max_in_flight=max_in_flight, morsel_rows=morsel_rows)

    def warm_up(self) -> None:
        """Start the worker pool now (a daemon does, so its first job does not wait for it).
        Returns at once: the workers finish starting in the background."""
        self._check_open()
        if self.controller.workers >= 2 and self.controller.force != INLINE:
            try:
                self._ensure_pool(self.controller.workers)
            except _PoolUnavailable as exc:
                log.warning("cannot start the worker pool (%s); work will run inline", exc)

    def get_stats(self) -> dict[str, Any]:
        s = self._stats
        with s.lock:
            out: dict[str, Any] = {
                "calls": s.calls,
                "items_processed": s.items,
                "morsels_processed": s.morsels,
                "errors": s.errors,
                "busy_seconds": round(s.busy_s, 6),
                "throughput_items_per_second": (round(s.items / s.busy_s, 1) if s.busy_s else 0.0),
                "executors": dict(s.executors),
                "last_call": dict(s.last_call) if s.last_call else None,
                "streams_active": self._streams_active,
            }
        pool = self._pool
        ctl = self.controller.snapshot()
        ctl["pool_size"] = pool.size if pool is not None else 0
        ctl["pool_pids"] = pool.pids() if pool is not None else []
        ctl["workers_lost"] = pool.workers_lost if pool is not None else 0
        ctl["transport"] = dict(self._transport)
        out["controller"] = ctl
        out["cython_optimization"] = native_loop_available()
        out["native"] = _native_info()
        out["morsel_size_kb"] = self.config.morsel_size_kb
        out["system_resources"] = system_resources()
        return out

    async def close(self) -> None:
        """Stop the worker pool and helper threads. The engine cannot be used afterwards."""
        if self._closed:
            return
        self._closed = True
        await asyncio.get_running_loop().run_in_executor(None, self._close_sync)

    def close_sync(self) -> None:
        """``close`` for code without an event loop (atexit, tests)."""
        self._closed = True
        self._close_sync()

    # -- internals -------------------------------------------------------------------------
    def _check_open(self) -> None:
        if self._closed:
            raise RuntimeError("this LocalEngine is closed; create a new one")

    def _close_sync(self) -> None:
        with self._pool_lock:
            sampler, self._sampler = self._sampler, None
            pool, self._pool = self._pool, None
        if sampler is not None:
            sampler.stop()
        if pool is not None:
            pool.close()
        for ex in (self._inline_thread, self._batch_threads):
            if ex is not None:
                ex.shutdown(wait=True, cancel_futures=True)
        self._inline_thread = self._batch_threads = None

    @property
    def metrics(self) -> Any:
        if self._metrics is None:
            try:
                from ..metrics import get_metrics

                self._metrics = (get_metrics(self.config.cluster_name, self.node)
                                 if self.node else get_metrics())
            except Exception:  # metrics are optional for a library user
                log.debug("metrics unavailable", exc_info=True)
                self._metrics = False
        return self._metrics

    def _count_call(self, items: int, morsels: int, seconds: float) -> None:
        plan = self.controller.last_plan
        executor = plan.executor if plan else INLINE
        s = self._stats
        with s.lock:
            s.calls += 1
            s.items += items
            s.morsels += morsels
            s.busy_s += seconds
            s.executors[executor] = s.executors.get(executor, 0) + 1
            s.last_call = {
                "items": items, "morsels": morsels, "seconds": round(seconds, 6),
                "executor": executor, "workers": plan.workers if plan else 1,
                "items_per_second": round(items / seconds, 1) if seconds > 0 else None,
            }
        m = self.metrics
        if m:
            m.record_items(items)

    def _count_error(self) -> None:
        with self._stats.lock:
            self._stats.errors += 1
        m = self.metrics
        if m:
            m.record_error("processing")
            m.morsels.labels(**m.lbl(state="failed")).inc()

    def _observe_morsels(self, seconds: float, count: int) -> None:
        """Metrics for ``count`` morsels that together ran ``seconds`` (one update, not one per
        morsel: this is called per executed piece, off the per-item path)."""
        m = self.metrics
        if m and count > 0:
            m.morsels.labels(**m.lbl(state="ok")).inc(count)
            m.morsel_duration.labels(**m.lbl()).observe(seconds / count)

    # ---- per-item functions ----
    async def _run_items(self, items: Sequence[Any], spec: FunctionSpec,
                         morsel_rows: int, *, columnar: _Columnar | None = None
                         ) -> tuple[Any, int]:
        """A per-item function over ``items`` (a list of results back). With ``columnar``
        (numpy or Arrow input; ``items`` is then unused) morsels travel to workers as raw
        buffers, results come back as arrays, and the return value is the final output."""
        func = spec.func
        n = columnar.n if columnar is not None else len(items)
        sample_cap = min(n, morsel_rows)
        head = columnar.head(sample_cap) if columnar is not None else items
        run = InlineRun(func, head)
        size, elapsed = 1, 0.0
        # Sample: 1, 2, 4, ... items until the time budget or the first morsel is used up.
        while run.done < sample_cap and elapsed < SAMPLE_S:
            t = time.perf_counter()
            run.step(min(size, sample_cap - run.done))
            elapsed += time.perf_counter() - t
            size *= 2
        done = run.done
        remaining = n - done
        finish = columnar.build if columnar is not None else (lambda r: r)
        if remaining == 0:
            self.controller.note(Plan(INLINE, 1, f"{n} item(s): all ran in the sample",
                                      elapsed / max(1, done), 0.0, n))
            self._observe_morsels(elapsed, 1 if n else 0)
            return finish(run.results), 1 if n else 0
        per_item = elapsed / max(1, done)
        ship, picklable = 0.0, True
        if remaining * per_item >= 0.03:
            if columnar is not None:
                ship, picklable, convert = columnar.ship_cost(done, run.results, spec)
                per_item += convert  # whoever runs the items converts them (and back)
            else:
                ship, picklable = _ship_cost(items[:done], run.results, spec)
        plan = self.controller.plan_items(
            items=remaining, per_item_s=per_item, ship_item_s=ship,
            pool_warm=self._pool_warm(), picklable=picklable, items_per_morsel=morsel_rows)
        morsels = math.ceil(n / morsel_rows)
        if plan.warm_pool:
            self.warm_up()
        if plan.executor == PROCESSES:
            try:
                parts = await self._run_items_in_pool(
                    items if columnar is None else columnar, done, spec, plan, morsel_rows,
                    run.results)
                if columnar is not None:
                    return columnar.join(run.results, parts), morsels
                results = run.results
                for part in parts:
                    results.extend(part)
                return results, morsels
            except _PoolUnavailable as exc:
                log.warning("process pool unavailable (%s); running inline", exc)
                self.controller.note(Plan(INLINE, 1, f"process pool unavailable: {exc}",
                                          per_item, ship, remaining))
        if columnar is not None:
            sampled = run.results
            # Converted and run in cache-sized pieces, each made an array as it is done.
            run = PieceRun(func, columnar, done, sampled)
        convert = per_item - elapsed / max(1, done)
        measured = remaining * (elapsed / max(1, done)) >= 0.03

        async def switch(per_item_now: float) -> list[Any] | None:
            """Re-plan with the cost measured inline so far (the first items may not be
            representative); when processes now win, they take the rest."""
            nonlocal ship, picklable, measured
            if not measured:
                k = min(len(run.results), 2000)
                if columnar is not None:
                    ship, picklable, _ = columnar.ship_cost(k, run.results[:k], spec)
                else:
                    ship, picklable = _ship_cost(items[:k], run.results[:k], spec)
                measured = True
            again = self.controller.plan_items(
                items=run.remaining, per_item_s=per_item_now + convert, ship_item_s=ship,
                pool_warm=self._pool_warm(), picklable=picklable,
                items_per_morsel=morsel_rows)
            if again.executor != PROCESSES:
                return None
            again.reason = f"re-planned after {run.done} items inline: " + again.reason
            try:
                return await self._run_items_in_pool(
                    items if columnar is None else columnar, run.done, spec, again, morsel_rows,
                    run.results)
            except _PoolUnavailable:
                return None

        parts = await self._run_inline(run, per_item, morsel_rows, switch)
        if isinstance(run, PieceRun):
            return columnar.join(run.results, run.parts + (parts or [])), morsels
        if parts is not None:
            if columnar is not None:
                return columnar.join(run.results, parts), morsels
            for part in parts:
                run.results.extend(part)
            return run.results, morsels
        return finish(run.results), morsels

    async def _run_inline(self, run: InlineRun, per_item: float, morsel_rows: int,
                          switch: Callable[[float], Any] | None = None) -> list[Any] | None:
        """Run the rest of ``run`` here, in slices; after each slice ``switch`` may hand the
        remaining items to the pool (its result is returned then, else None)."""
        estimate = run.remaining * per_item
        probe = 4 * max(1, run.done)
        if estimate < INLINE_DIRECT_S and run.remaining <= probe:
            t = time.perf_counter()
            k = run.remaining
            run.step(k)
            self._observe_morsels(time.perf_counter() - t, math.ceil(k / morsel_rows))
            return None
        loop = asyncio.get_running_loop()
        inline = self._inline_executor()
        step = max(1, int(INLINE_SLICE_S / per_item)) if per_item > 0 else run.remaining
        # The first slice is a few times the sample only: items after the sample may cost more
        # (inputs sorted by size, ...), and the re-plan below should see that early.
        step_now = min(step, probe)
        while run.remaining:
            k = min(step_now, run.remaining)
            t = time.perf_counter()
            if k * per_item < 0.001:
                run.step(k)  # shorter than a thread hop
            else:
                await loop.run_in_executor(inline, run.step, k)
            dt = time.perf_counter() - t
            self._observe_morsels(dt, math.ceil(k / morsel_rows))
            measured = dt / k
            if switch is not None and run.remaining and measured > per_item * 1.5:
                parts = await switch(measured)
                if parts is not None:
                    return parts
            per_item = max(per_item, measured)
            step_now = max(1, int(INLINE_SLICE_S / per_item))
        return None

    def _inline_executor(self) -> ThreadPoolExecutor:
        if self._inline_thread is None:
            self._inline_thread = ThreadPoolExecutor(1, thread_name_prefix="sabot-inline")
        return self._inline_thread

    def _ensure_pool(self, workers: int) -> ProcessPool:
        with self._pool_lock:
            if self._closed:
                raise _PoolUnavailable("the engine is closed")
            if self._pool is None:
                try:
                    pool = ProcessPool(
                        workers, max_attempts=self.config.max_attempts,
                        morsel_timeout_s=self.config.morsel_timeout_s,
                        processor_modules=self.config.processors,
                        on_started=_weakly(self._worker_started))
                except Exception as exc:  # no processes allowed here (sandbox, limits)
                    raise _PoolUnavailable(f"{type(exc).__name__}: {exc}") from exc
                self._pool = pool
                log.debug("process pool starting with %d workers", workers)
                from .sampler import UtilizationSampler

                self._sampler = UtilizationSampler(
                    self.controller, pids=pool.pids, pool_busy=pool.busy_fraction,
                    on_resize=_weakly(self._resize_pool), busy_workers=pool.busy_workers)
                self._sampler.start()
                # An engine dropped without close() (or alive at exit) still stops its workers.
                weakref.finalize(self, _shutdown, self._sampler, pool)
            else:
                now = time.monotonic()
                if workers >= self._pool.size:
                    self._pool_full_at = now
                    if workers > self._pool.size:
                        self._pool.resize(workers)
                elif now - self._pool_full_at > SPARE_KEEP_S:
                    # A call wants fewer processes than the pool has: shrink only when no
                    # call has wanted the larger size for a while, so calls whose size comes
                    # and goes do not start and retire a process each time. (The sampler's
                    # resizes while work runs are not held back: see _resize_pool.)
                    self._pool.resize(workers)
            return self._pool

    async def _pool_for(self, workers: int) -> ProcessPool:
        """The pool, sized for a call. Starting processes blocks (fork/exec), so that happens
        on a helper thread; a pool that is big enough already is returned right here (a
        thread hop costs more than a small call's work)."""
        pool = self._pool
        if pool is not None and not pool.closed and workers <= pool.size:
            return self._ensure_pool(workers)  # at most a shrink: no process is started
        return await asyncio.get_running_loop().run_in_executor(None, self._ensure_pool,
                                                                workers)

    def _pool_warm(self) -> bool:
        """A pool whose workers have started (not one still starting after warm_up)."""
        pool = self._pool
        return pool is not None and pool.ready_count >= min(2, pool.size)

    def _worker_started(self, seconds: float) -> None:
        # What a cold pool costs before its first child answers: the controller's estimate for
        # the next cold start (after close(), or in another engine of this process).
        self.controller.startup_s = max(0.01, seconds)
        log.debug("pool worker ready after %.3f s", seconds)

    def _resize_pool(self, workers: int) -> None:
        pool = self._pool
        if pool is not None:
            pool.resize(self._isolated_pool_size(workers) if self.isolate else workers)

    async def _run_items_in_pool(self, items: Sequence[Any], start: int, spec: FunctionSpec,
                                 plan: Plan, morsel_rows: int,
                                 sample_results: list[Any] | None = None) -> list[Any]:
        try:
            shipped = ShippedFunction(spec.func, batch=False, processor=spec.processor)
        except Exception as exc:
            raise _PoolUnavailable(f"the function cannot be pickled ({exc})") from exc
        pool = await self._pool_for(plan.workers)
        step = max(1, plan.items_per_task)
        call = CallGroup()
        n = len(items)
        if not isinstance(items, _Columnar):
            t0 = time.perf_counter()
            tasks = [Task(shipped, a, items[a:a + min(step, n - a)], i + 1, call)
                     for i, a in enumerate(range(start, n, step))]
            parts = await self._gather_tasks(pool, tasks, call, morsel_rows)
            self.controller.learn(plan, time.perf_counter() - t0)
            return parts
        t0 = time.perf_counter()
        items.open_shared(sample_results or [])
        try:
            tasks = [Task(shipped, a, items.task_data(a, min(step, n - a)), i + 1, call)
                     for i, a in enumerate(range(start, n, step))]
            out = items.resolve(start, await self._gather_tasks(pool, tasks, call, morsel_rows))
        finally:
            items.close_shared()
        self.controller.learn(plan, time.perf_counter() - t0)
        return out

    async def _gather_tasks(self, pool: ProcessPool, tasks: list[Task], call: CallGroup,
                            morsel_rows: int) -> list[Any]:
        """The tasks' results, one entry per task, in order."""
        shared = sum(1 for t in tasks if isinstance(t.data, (shm.NumpySlice, shm.ArrowSlice)))
        self._transport["shared_memory_tasks"] += shared
        self._transport["pipe_tasks"] += len(tasks) - shared
        futures: list[Any] = []
        out: list[Any] = []
        ok = False
        try:
            # (a list of at most a morsel's rows: sent and read on this loop without blocking it)
            small = len(tasks) == 1 and type(tasks[0].data) is list and \
                len(tasks[0].data) <= morsel_rows
            leased = pool.lease() if small else None
            if leased is not None:
                # One small task and an idle process: this loop talks to it directly.
                self._transport["loop_tasks"] += 1
                await leased.run_on_loop(tasks[0])
                futures.append(tasks[0].future)
            else:
                futures += [asyncio.wrap_future(pool.submit(t)) for t in tasks]
            # In input order: the first failure reported is the lowest failing index.
            for task, fut in zip(tasks, futures):
                if isinstance(fut, asyncio.Future):
                    out.append(await fut)
                else:  # the loop's exchange: settled, or handed to the queue (a lost child)
                    out.append(fut.result() if fut.done() else await asyncio.wrap_future(fut))
                self._observe_morsels(task.seconds, math.ceil(len(task.data) / morsel_rows))
                if isinstance(task.data, list) and task.data and not task.fn.batch and \
                        not task.cold:
                    self._learn_item_cost(task.fn.token, task.seconds / len(task.data))
            ok = True
            return out
        finally:
            if not ok:
                call.cancelled = True
                for f in futures:
                    f.cancel()

    # ---- isolated: user code only in worker processes ----
    async def _run_isolated(self, src: Source, spec: FunctionSpec) -> tuple[Any, int]:
        self._active_isolated += 1
        try:
            return await self._run_isolated_call(src, spec)
        finally:
            self._active_isolated -= 1

    def _isolated_pool_size(self, workers: int) -> int:
        # With several calls in flight (a cluster worker runs several morsels at once), one
        # spare process: a function that hangs in one call does not hold up all the others,
        # and the cores are not oversubscribed by more than one process. The spare stays for
        # SPARE_KEEP_S after it was last needed: calls that come and go would otherwise start
        # and retire a process (~0.1 s of CPU each) every time.
        now = time.monotonic()
        if self._active_isolated > workers:
            self._spare_until = now + SPARE_KEEP_S
        if now < self._spare_until:
            return workers + 1
        return workers

    async def _isolated_pool(self, workers: int, spec: FunctionSpec) -> ProcessPool:
        try:
            return await self._pool_for(self._isolated_pool_size(workers))
        except _PoolUnavailable as exc:
            raise ProcessingError(f"no worker processes to run {spec.name} in: {exc}",
                                  original=exc) from exc

    def use_pickle(self, func: Any, data: bytes) -> None:
        """``func`` is ``data`` unpickled (cloudpickle): the isolated pool's processes get these
        bytes rather than a fresh pickle of ``func`` on every call. A cluster worker passes the
        bytes a job's function came in: its copy of the function never runs here, so the bytes
        stay exact, and a call saves pickling it again."""
        key = id(func)
        pickled = self._pickled

        def forget(ref: weakref.ref[Any]) -> None:
            if pickled.get(key, (None,))[0] is ref:
                del pickled[key]

        try:
            pickled[key] = (weakref.ref(func, forget), bytes(data))
        except TypeError:  # not weakly referable: pickled per call as usual
            pass

    def _pickle_of(self, spec: FunctionSpec) -> bytes | None:
        if spec.kind == FN_ASYNC or spec.processor is not None or not self._pickled:
            return None
        known = self._pickled.get(id(spec.func))
        return known[1] if known is not None and known[0]() is spec.func else None

    def _learn_item_cost(self, token: int, seconds: float) -> None:
        costs = self._item_costs
        last = costs.pop(token, None)
        costs[token] = seconds if last is None else 0.7 * last + 0.3 * seconds
        while len(costs) > _ITEM_COSTS:
            costs.popitem(last=False)

    async def _run_isolated_call(self, src: Source, spec: FunctionSpec) -> tuple[Any, int]:
        n = len(src)
        rows = rows_per_morsel(self.config.morsel_size_bytes, src.bytes_per_row())
        workers = max(1, self.controller.workers_for_call())
        if n == 0:
            self.controller.note(Plan(
                PROCESSES, workers, "isolate=True: user functions run only in worker processes",
                items=0, items_per_task=1))
            return (src.build_batches([]) if spec.kind == BATCH else _build(src, [])), 0
        shipped = _ship(spec, self._pickle_of(spec))
        reason = "isolate=True: user functions run only in worker processes"
        per_task = max(1, min(rows, math.ceil(n / workers)))
        cost = self._item_costs.get(shipped.token)
        if cost is not None and spec.kind != BATCH and n * cost < ONE_TASK_S and n <= rows:
            per_task = n
            reason += (f"; one task: {n} item(s) at {cost * 1e6:.0f} µs each (seen before) "
                       "take less than a second process round trip")
        plan = self.controller.note(Plan(PROCESSES, workers, reason, items=n,
                                         items_per_task=per_task))
        pool = await self._isolated_pool(workers, spec)
        call = CallGroup()
        if spec.kind == BATCH:
            tasks = [Task(shipped, off, m, i, call)
                     for i, (off, m) in enumerate(src.morsels(plan.items_per_task))]
            parts = await self._gather_tasks(pool, tasks, call, rows)
            try:
                return src.build_batches(parts), len(tasks)
            except (TypeError, ValueError, adapters.pa.ArrowException) as exc:
                raise ProcessingError(
                    f"the results of batch function {spec.name} cannot be combined: {exc}",
                    original=exc) from exc
        columnar = _Columnar(src) if _Columnar.supports(src) else None
        items = src.items() if columnar is None else ()
        step = plan.items_per_task
        if columnar is not None:
            columnar.open_shared([])
            try:
                tasks = [Task(shipped, a, columnar.task_data(a, min(step, n - a)), i, call)
                         for i, a in enumerate(range(0, n, step))]
                parts = columnar.resolve(0, await self._gather_tasks(pool, tasks, call, rows))
            finally:
                columnar.close_shared()
            return columnar.join([], parts), len(tasks)
        tasks = [Task(shipped, a, items[a:a + step], i, call)
                 for i, a in enumerate(range(0, n, step))]
        parts = await self._gather_tasks(pool, tasks, call, rows)
        results: list[Any] = []
        for part in parts:
            results.extend(part)
        return _build(src, results), len(tasks)

    async def process_encoded(self, morsels: Sequence[tuple[str, bytes, int]], func: Any,
                              decode: Callable[[str, bytes], Any],
                              encode: Callable[[list[Any]], tuple[str, bytes]]
                              ) -> list[tuple[int, str, bytes]]:
        """A per-item function over morsels that are still encoded ``(encoding, bytes,
        rows)``: each morsel is one task of the isolated pool, decoded with ``decode``, run and
        its results encoded with ``encode`` in the worker process, so this process only moves
        bytes (a cluster worker's bulk morsels). Returns ``(items, encoding, bytes)`` per
        morsel, in order. A failure is a ProcessingError whose ``morsel`` is the failing
        morsel's position and ``index`` the item within it. ``decode`` and ``encode`` must be
        module-level functions (they are pickled by reference)."""
        self._check_open()
        spec = resolve_function(func)
        if spec.kind not in (ITEM, FN_ASYNC):
            raise TypeError(f"process_encoded takes a per-item function, got a {spec.kind} "
                            f"function ({spec.name})")
        t0 = time.perf_counter()
        self._active_isolated += 1
        try:
            out = await self._run_encoded(morsels, spec, decode, encode)
        except ProcessingError:
            self._count_error()
            raise
        finally:
            self._active_isolated -= 1
        self._count_call(sum(n for n, _, _ in out), len(out), time.perf_counter() - t0)
        return out

    async def _run_encoded(self, morsels: Sequence[tuple[str, bytes, int]], spec: FunctionSpec,
                           decode: Callable[[str, bytes], Any],
                           encode: Callable[[list[Any]], tuple[str, bytes]]
                           ) -> list[tuple[int, str, bytes]]:
        if not morsels:
            return []
        rows = sum(r for _, _, r in morsels)
        workers = max(1, self.controller.workers_for_call())
        self.controller.note(Plan(
            PROCESSES, workers, "encoded morsels: decoded, run and encoded in worker processes",
            items=rows, items_per_task=max(1, rows // len(morsels))))
        shipped = _ship(spec, self._pickle_of(spec))
        pool = await self._isolated_pool(workers, spec)
        call = CallGroup()
        tasks = [Task(shipped, 0, EncodedItems(enc, blob, max(1, r), decode, encode), i, call)
                 for i, (enc, blob, r) in enumerate(morsels)]
        self._transport["encoded_tasks"] += len(tasks)
        rows_per = rows_per_morsel(self.config.morsel_size_bytes,
                                   max(1.0, sum(len(b) for _, b, _ in morsels) / max(1, rows)))
        return await self._gather_tasks(pool, tasks, call, rows_per)

    # ---- async per-item functions ----
    async def _run_async(self, items: Sequence[Any], spec: FunctionSpec,
                         offset: int = 0, *, allow_processes: bool = True
                         ) -> tuple[list[Any], int]:
        """An ``async def`` per-item function. The first items are awaited one by one and timed;
        a function that never gives control back to the event loop only computes (the README's
        example is such a function), and it runs on worker processes when the controller says
        they pay off. Everything else is awaited here with bounded concurrency."""
        func = spec.func
        n = len(items)
        results: list[Any] = [None] * n
        done, wall, suspended = 0, 0.0, 0
        while done < min(n, 64) and wall < SAMPLE_S:
            t = time.perf_counter()
            probe = _CountSuspensions(func(items[done]))
            try:
                results[done] = await probe
            except Exception as exc:
                raise _async_failure(spec, offset + done, exc) from exc
            wall += time.perf_counter() - t
            suspended += probe.suspensions
            done += 1
        remaining = n - done
        if remaining and allow_processes and suspended == 0:
            per_item = wall / done + ASYNC_CHILD_OVERHEAD_S
            ship, picklable = (_ship_cost(items[:done], results[:done], spec)
                               if remaining * per_item >= 0.03 else (0.0, True))
            plan = self.controller.plan_items(
                items=remaining, per_item_s=per_item, ship_item_s=ship,
                pool_warm=self._pool_warm(), picklable=picklable, items_per_morsel=64)
            if plan.executor == PROCESSES:
                plan.reason = "async def function that never waits (CPU-bound): " + plan.reason
                wrapped = FunctionSpec(spec.kind, AsyncAsSync(func), spec.name, spec.processor)
                try:
                    parts = await self._run_items_in_pool(items, done, wrapped, plan, 64)
                except _PoolUnavailable as exc:
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
        self.controller.note(Plan(ASYNC, min(ASYNC_CONCURRENCY, max(1, remaining)),
                                  f"async def function: awaited on the event loop, up to "
                                  f"{ASYNC_CONCURRENCY} at a time",
                                  (wall + time.perf_counter() - t) / max(1, n), 0.0, n))
        if failure:
            index, error = min(failure, key=lambda f: f[0])
            raise _async_failure(spec, offset + index, error) from error
        return results, 1 if n else 0

    # ---- batch functions ----
    async def _run_batches(self, src: Source, spec: FunctionSpec) -> tuple[Any, int]:
        func = spec.func
        rows = rows_per_morsel(self.config.morsel_size_bytes, src.bytes_per_row())
        morsels = list(src.morsels(rows))
        if not morsels:
            return src.build_batches([]), 0
        t = time.perf_counter()
        first = _run_batch(func, spec.name, 0, *morsels[0])
        per_morsel = time.perf_counter() - t
        self._observe_morsels(per_morsel, 1)
        plan = self.controller.plan_batches(morsels=len(morsels), per_morsel_s=per_morsel)
        outs = [first]
        rest = morsels[1:]
        loop = asyncio.get_running_loop()
        if plan.executor == THREADS:
            if self._batch_threads is None:
                self._batch_threads = ThreadPoolExecutor(
                    self.controller.max_workers, thread_name_prefix="sabot-batch")
            futs = [loop.run_in_executor(self._batch_threads, _run_batch, func, spec.name,
                                         i + 1, off, m) for i, (off, m) in enumerate(rest)]
            try:
                for f in futs:
                    outs.append(await f)
            finally:
                for f in futs:
                    f.cancel()
        elif rest:
            if per_morsel * len(rest) < INLINE_DIRECT_S:
                outs.extend(_run_batch(func, spec.name, i + 1, off, m)
                            for i, (off, m) in enumerate(rest))
            else:
                inline = self._inline_executor()
                for i, (off, m) in enumerate(rest):
                    outs.append(await loop.run_in_executor(
                        inline, _run_batch, func, spec.name, i + 1, off, m))
        try:
            return src.build_batches(outs), len(morsels)
        except (TypeError, ValueError, adapters.pa.ArrowException) as exc:
            raise ProcessingError(
                f"the results of batch function {spec.name} cannot be combined: {exc}",
                original=exc) from exc

    # ---- Arrow expressions ----
    async def _run_expression(self, data: Any, spec: FunctionSpec) -> tuple[Any, int, int]:
        loop = asyncio.get_running_loop()
        self.controller.note(Plan(NATIVE, self.controller.cores,
                                  "Arrow compute expression: evaluated by the native core"))
        out = await loop.run_in_executor(None, _evaluate_expression, data, spec.func,
                                         self.config.morsel_size_kb)
        n = _num_rows(data)
        return out, n, max(1, math.ceil(n * 8 / self.config.morsel_size_bytes)) if n else 0


def _ship(spec: FunctionSpec, pickled: bytes | None = None) -> ShippedFunction:
    """The function prepared for the isolated pool's processes (async ones run to completion
    there), as ``pickled`` when given; ProcessingError when it cannot be pickled."""
    func = AsyncAsSync(spec.func) if spec.kind == FN_ASYNC else spec.func
    try:
        return ShippedFunction(func, batch=spec.kind == BATCH, processor=spec.processor,
                               pickled=pickled)
    except Exception as exc:
        raise ProcessingError(
            f"{spec.name} cannot be sent to a worker process ({exc}); with isolate=True "
            "functions must pickle (cloudpickle)", original=exc) from exc


class _PoolUnavailable(RuntimeError):
    pass


def _weakly(method: Callable[..., Any]) -> Callable[..., Any]:
    """A callback that does not keep its engine alive (the pool and sampler hold callbacks;
    the engine's finalizer must be able to run when the user drops it)."""
    ref = weakref.WeakMethod(method)

    def call(*args: Any) -> Any:
        target = ref()
        return None if target is None else target(*args)

    return call


def _shutdown(sampler: Any, pool: ProcessPool) -> None:
    sampler.stop()
    pool.close()


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


def _async_failure(spec: FunctionSpec, index: int, exc: BaseException) -> ProcessingError:
    return ProcessingError(f"{spec.name} failed on item {index}: {type(exc).__name__}: {exc}",
                           index=index, original=exc)


def _build(src: Source, results: list[Any]) -> Any:
    try:
        return src.build_items(results)
    except TypeError as exc:
        raise ProcessingError(str(exc), original=exc) from exc


def _run_batch(func: Callable[[Any], Any], name: str, morsel: int, offset: int,
               data: Any) -> Any:
    try:
        out = func(data)
    except Exception as exc:
        raise ProcessingError(
            f"batch function {name} failed on morsel {morsel} (items {offset}.."
            f"{offset + len(data) - 1}): {type(exc).__name__}: {exc}",
            morsel=morsel, original=exc) from exc
    try:
        n_out = len(out)
    except TypeError:
        n_out = None
    if n_out != len(data):
        exc2 = ValueError(
            f"batch function {name} returned {n_out if n_out is not None else 'a non-sequence'} "
            f"for morsel {morsel} of {len(data)} items; it must return one result per item")
        raise ProcessingError(str(exc2), morsel=morsel, original=exc2)
    return out


class PieceRun:
    """A per-item function over the rest of numpy or Arrow input, inline, in pieces of 64K
    items: each piece is converted to Python objects, run, and its results made an array
    (numpy) or Arrow array (Arrow) at once. Faster than converting everything first (the
    objects are still in cache), and memory holds one piece of objects, not the whole input's.
    ``results`` keeps the controller's sample (Python objects); ``parts`` the result parts of
    the items run here since."""

    def __init__(self, func: Callable[[Any], Any], columnar: _Columnar, done: int,
                 sampled: list[Any]) -> None:
        self.func = func
        self.columnar = columnar
        self.n = len(columnar)
        self.done = done
        self.results = sampled
        self.parts: list[Any] = []

    @property
    def remaining(self) -> int:
        return self.n - self.done

    def step(self, k: int) -> None:
        end = min(self.n, self.done + k)
        if end <= self.done:
            return
        src = self.columnar.src
        if self.columnar.numpy:
            self.parts.extend(run_numpy_pieces(self.func, src.data[self.done:end], self.done))
        else:
            for start in range(self.done, end, NUMPY_PIECE):
                rows = min(end, start + NUMPY_PIECE) - start
                items = src.arrow_slice(start, rows).to_pylist()
                results = InlineRun(self.func, items, start).run_all()
                del items
                try:
                    self.parts.append(results_arrow(results))
                except TypeError as exc:
                    raise ProcessingError(str(exc), original=exc) from exc
        self.done = end


class _Columnar:
    """numpy or Arrow input for a per-item function: how its morsels travel to worker processes
    (raw array slices / Arrow IPC, never per-item pickling in this process) and how the
    results, which come back as arrays, are joined into the output."""

    def __init__(self, src: Source) -> None:
        self.src = src
        self.numpy = src.kind == adapters.NUMPY
        self.n = len(src)
        # shared-memory transport while a pool runs the items (open_shared .. close_shared)
        self._segments: list[shm.Segment] = []
        self._input: shm.Segment | None = None
        self._output: tuple[shm.Segment, Any] | None = None
        self._arrow_shared = False
        # the shared output as the whole result, and its pool-written tail (resolve .. join)
        self._whole: Any = None
        self._tail: Any = None

    @staticmethod
    def supports(src: Source) -> bool:
        if src.kind == adapters.NUMPY:
            return src.data.ndim == 1 and src.data.dtype.kind in "biuf"
        return src.kind in (adapters.ARROW_ARRAY, adapters.ARROW_CHUNKED, adapters.ARROW_BATCH,
                            adapters.ARROW_TABLE)

    def __len__(self) -> int:
        return self.n

    def head(self, rows: int) -> list[Any]:
        return self.src.data[:rows].tolist() if self.numpy else self.src.head(rows)

    def task_data(self, start: int, rows: int) -> Any:
        """What one pool task gets: a shared-memory descriptor once ``open_shared`` made the
        input shared, else the slice itself (raw array bytes / Arrow IPC over the pipe)."""
        if self._input is not None:
            out = None
            if self._output is not None:
                out = (self._output[0].path, self._output[1].str)
            return shm.NumpySlice(self._input.path, self.src.data.dtype.str, start, rows, out)
        if self._arrow_shared:
            return self._arrow_slice_shared(start, rows)
        return self._pipe_data(start, rows)

    def _pipe_data(self, start: int, rows: int) -> Any:
        if self.numpy:
            return self.src.data[start:start + rows]
        return ArrowMorsel.encode(self.src.arrow_slice(start, rows))

    def open_shared(self, sample_results: list[Any]) -> None:
        """Before a pool runs the items: copy numpy input once into shared memory (and make a
        shared output when the sample's results are fixed-width numbers), or send Arrow slices
        through shared memory. Inputs under ``shm.MIN_SHARED_BYTES`` keep the pipes; so does a
        system without room in ``/dev/shm`` (logged at DEBUG)."""
        data = self.src.data
        try:
            if self.numpy:
                if data.nbytes < shm.MIN_SHARED_BYTES:
                    return
                seg = shm.Segment(data.nbytes)
                self._segments.append(seg)
                np.frombuffer(seg.map, dtype=data.dtype, count=self.n)[:] = data
                self._input = seg
                part = results_part(sample_results) if sample_results else None
                if isinstance(part, np.ndarray) and part.dtype.kind in "biufc":
                    # workers write it; this process touches only the first rows
                    out = shm.Segment(self.n * part.dtype.itemsize, populate=False)
                    self._segments.append(out)
                    self._output = (out, part.dtype)
            else:
                nbytes = adapters._arrow_nbytes(data)
                if nbytes >= shm.MIN_SHARED_BYTES and shm.shared_dir() is not None:
                    self._arrow_shared = True
        except OSError as exc:
            log.debug("shared memory unavailable (%s); morsels travel over the pipes", exc)
            self.close_shared()

    def _arrow_slice_shared(self, start: int, rows: int) -> Any:
        batch = self.src.arrow_slice(start, rows)
        column = isinstance(batch, pa.Array)
        if column:
            batch = pa.RecordBatch.from_arrays([batch], names=["v"])
        mock = pa.MockOutputStream()
        with pa.ipc.new_stream(mock, batch.schema) as writer:
            writer.write_batch(batch)
        size = mock.size()
        try:
            seg = shm.Segment(size)
        except OSError as exc:
            log.debug("shared memory unavailable (%s); this morsel travels over the pipe", exc)
            return self._pipe_data(start, rows)
        self._segments.append(seg)
        sink = pa.FixedSizeBufferWriter(pa.py_buffer(seg.map))
        with pa.ipc.new_stream(sink, batch.schema) as writer:
            writer.write_batch(batch)
        sink.close()
        del sink  # its buffer views the mapping
        return shm.ArrowSlice(seg.path, 0, size, len(batch), column)

    def resolve(self, start: int, parts: list[Any]) -> list[Any]:
        """Tasks' results with those left in the shared output copied out (tasks cover the
        rows from ``start`` in order)."""
        if self._output is None:
            return parts
        seg, dtype = self._output
        out = np.frombuffer(seg.map, dtype=dtype, count=self.n)
        if parts and all(isinstance(p, shm.InShared) for p in parts):
            # Every task wrote its results: one array over the shared output, no copy (the
            # array keeps the mapping alive; close_shared only removes the file's name). The
            # join may put the first rows' results in front of it in place (see join).
            self._whole = out
            self._tail = out[start:]
            return [self._tail]
        pos, resolved = start, []
        for part in parts:
            if isinstance(part, shm.InShared):
                resolved.append(out[pos:pos + part.rows].copy())
            else:
                resolved.append(part)
            pos += len(part) if not isinstance(part, shm.InShared) else part.rows
        del out
        return resolved

    def close_shared(self) -> None:
        segments, self._segments = self._segments, []
        self._input = self._output = None
        self._arrow_shared = False
        for seg in segments:
            seg.close()

    def _result_part(self, results: list[Any]) -> Any:
        return results_part(results) if self.numpy else results_arrow(results)

    def build(self, results: list[Any]) -> Any:
        return _build(self.src, results)

    def join(self, sample_results: list[Any], parts: list[Any]) -> Any:
        try:
            first = [self._result_part(sample_results)] if sample_results else []
        except TypeError as exc:
            raise ProcessingError(str(exc), original=exc) from exc
        # empty parts carry no type information (an empty array is float64 / null)
        parts = [p for p in [*first, *parts] if len(p)]
        if not parts:
            return self.build([])
        if self.numpy:
            whole, tail, self._whole, self._tail = self._whole, self._tail, None, None
            if whole is not None and parts[-1] is tail:
                # The pool wrote its rows into the shared output: the rows before them go in
                # front, in place, when they are of the same type (no copy of the output).
                heads = parts[:-1]
                if all(isinstance(p, np.ndarray) and p.dtype == whole.dtype for p in heads) \
                        and sum(len(p) for p in heads) == len(whole) - len(tail):
                    pos = 0
                    for p in heads:
                        whole[pos:pos + len(p)] = p
                        pos += len(p)
                    return whole
            return join_numpy(parts)
        return self.src.build_arrow_parts(parts)

    def ship_cost(self, done: int, sample_results: list[Any],
                  spec: FunctionSpec) -> tuple[float, bool, float]:
        """Parent-side seconds per item to send a slice and take the results back (buffers,
        not objects), whether the function pickles, and the per-item cost of converting items
        to Python objects and results back (paid by whoever runs the items)."""
        n = max(1, done)
        try:
            if spec.processor is None:
                import cloudpickle

                cloudpickle.dumps(spec.func)
        except Exception:
            return 0.0, False, 0.0
        t = time.perf_counter()
        self.head(done)
        try:
            part = self._result_part(sample_results)
        except TypeError:
            return 0.0, False, 0.0  # results Arrow cannot hold: the inline path reports it
        convert = time.perf_counter() - t
        t = time.perf_counter()
        pickle.dumps(self._pipe_data(0, done), protocol=5)
        pickle.loads(pickle.dumps(part, protocol=5))
        return (time.perf_counter() - t) / n, True, convert / n


def _ship_cost(sample_items: Sequence[Any], sample_results: list[Any],
               spec: FunctionSpec) -> tuple[float, bool]:
    """Parent-side seconds per item to send items to a worker and take results back."""
    n = max(1, len(sample_items))
    try:
        if spec.processor is None:
            import cloudpickle

            cloudpickle.dumps(spec.func)
        t = time.perf_counter()
        pickle.dumps(list(sample_items), protocol=5)
        pickle.loads(pickle.dumps(sample_results, protocol=5))
        return (time.perf_counter() - t) / n, True
    except Exception:
        return 0.0, False


def _num_rows(data: Any) -> int:
    n = getattr(data, "num_rows", None)
    if n is not None:
        return int(n)
    try:
        return len(data)
    except TypeError:
        return 0


def _evaluate_expression(data: Any, expr: Any, morsel_size_kb: int | None = None) -> Any:
    """An Arrow compute expression over every row, by the native columnar core (its
    ``sabot.columnar.evaluate``), or by Arrow's own engine in a build without it."""
    try:
        from ..columnar import evaluate as native_evaluate
    except ImportError:
        native_evaluate = None
    if native_evaluate is not None:
        return native_evaluate(data, expr, morsel_size_kb=morsel_size_kb)
    import pyarrow as pa
    import pyarrow.dataset as ds

    if isinstance(data, pa.RecordBatchReader):
        data = data.read_all()
    if isinstance(data, pa.RecordBatch):
        data = pa.Table.from_batches([data])
    if not isinstance(data, pa.Table):
        raise TypeError(
            "an Arrow compute expression needs tabular input (pyarrow Table, RecordBatch or "
            f"RecordBatchReader); got {type(data).__name__}")
    return ds.dataset(data).to_table(columns={"result": expr}).column("result")


def _native_info() -> dict[str, Any]:
    try:
        from .. import _native  # type: ignore[attr-defined]
    except ImportError:
        return {"available": False}
    try:
        info = _native.get_stats()
        return info if isinstance(info, dict) else {"available": bool(info)}
    except Exception as exc:  # pragma: no cover - depends on the native build
        return {"available": False, "error": str(exc)}


__all__ = ["ASYNC_CONCURRENCY", "SAMPLE_S", "LocalEngine"]
