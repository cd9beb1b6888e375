"""The runtime an engine's calls share: the process pool and its sampler, the inline and batch
threads, the call counters, and what the pool has learned about functions.

Everything in ``sabot.engine`` that runs a call (the per-item call, isolated calls, async and
batch functions, streams) reaches these through this object's public methods; the
:class:`~sabot.engine.LocalEngine` facade owns one.
"""

from __future__ import annotations

import asyncio
import logging
import math
import threading
import time
import weakref
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from ..bounded_cache import BoundedCache
from ..config import Config
from ..errors import ProcessingError
from . import shm
from .call_stats import CallStats
from .controller import INLINE, AdaptiveController
from .functions import ASYNC, FunctionSpec
from .processes import CallGroup, ProcessPool, Task
from .progress import advance
from .sampler import UtilizationSampler

log = logging.getLogger("sabot.engine")

#: How long the isolated pool keeps a spare process after the last call that needed it.
SPARE_KEEP_S = 10.0
#: Functions whose recent seconds per item (in worker processes) an engine remembers.
ITEM_COSTS = 256


class PoolUnavailable(RuntimeError):
    """No process pool can run this work here (processes not allowed, the engine closed, or
    the function does not pickle); the caller runs it inline instead."""


class EngineRuntime:
    """The shared parts of one engine. Thread-safe where the pool's threads call in."""

    def __init__(self, config: Config, controller: AdaptiveController, *, node: str | None,
                 isolate: bool, record_metrics: bool) -> None:
        self.config = config
        self.controller = controller
        self.isolate = isolate
        self.calls = CallStats(controller, cluster_name=config.cluster_name, node=node,
                               record_metrics=record_metrics)
        #: How pool tasks' data travelled: shared memory descriptors or the pipes;
        #: encoded_tasks: pipe tasks whose items travelled still encoded (process_encoded);
        #: loop_tasks: pipe tasks this engine's event loop ran without a dispatch thread.
        self.transport = {"shared_memory_tasks": 0, "pipe_tasks": 0, "encoded_tasks": 0,
                          "loop_tasks": 0}
        self.streams_active = 0
        self.closed = False
        #: The isolated pool keeps its spare process until then (monotonic seconds).
        self.spare_until = 0.0
        self._active_isolated = 0
        self._pool_full_at = 0.0  # when a call last wanted the pool at its current size
        self._pool: ProcessPool | None = None
        self._pool_lock = threading.Lock()
        self._sampler: UtilizationSampler | None = None
        self._inline_thread: ThreadPoolExecutor | None = None
        self._batch_threads: ThreadPoolExecutor | None = None
        # shipped-function token -> seconds per item of its tasks (item functions, list input)
        self._item_costs: BoundedCache[int, float] = BoundedCache(ITEM_COSTS)
        # Functions whose pickle is already known (use_pickle): id -> (weak reference, bytes);
        # by identity (a callable's own __eq__ must not match another one's bytes).
        self._pickled: dict[int, tuple[weakref.ref[Any], bytes]] = {}

    # -- threads -------------------------------------------------------------------------
    def inline_executor(self) -> ThreadPoolExecutor:
        """The one helper thread inline work runs on (the event loop stays responsive)."""
        if self._inline_thread is None:
            self._inline_thread = ThreadPoolExecutor(1, thread_name_prefix="sabot-inline")
        return self._inline_thread

    def batch_executor(self) -> ThreadPoolExecutor:
        """Threads for batch functions (numpy and Arrow kernels release the GIL)."""
        if self._batch_threads is None:
            self._batch_threads = ThreadPoolExecutor(
                self.controller.max_workers, thread_name_prefix="sabot-batch")
        return self._batch_threads

    # -- the pool ------------------------------------------------------------------------
    @property
    def pool(self) -> ProcessPool | None:
        """The process pool, once a call or warm_up started it."""
        return self._pool

    def warm_up(self) -> None:
        """Start the pool at the controller's size, unless work may not run on it."""
        if self.controller.workers >= 2 and self.controller.force != INLINE:
            try:
                self.ensure_pool(self.controller.workers)
            except PoolUnavailable as exc:
                log.warning("cannot start the worker pool (%s); work will run inline", exc)

    def pool_warm(self) -> bool:
        """A pool whose workers have started (not one still starting after warm_up)."""
        pool = self._pool
        return pool is not None and pool.ready_count >= min(2, pool.size)

    def ensure_pool(self, workers: int) -> ProcessPool:
        """The pool, started or resized for ``workers`` (blocks while processes start)."""
        with self._pool_lock:
            if self.closed:
                raise PoolUnavailable("the engine is closed")
            if self._pool is None:
                return self._start_pool(workers)
            now = time.monotonic()
            if workers >= self._pool.size:
                self._pool_full_at = now
                if workers > self._pool.size:
                    self._pool.resize(workers)
            elif now - self._pool_full_at > SPARE_KEEP_S:
                # A call wants fewer processes than the pool has: shrink only when no call has
                # wanted the larger size for a while, so calls whose size comes and goes do not
                # start and retire a process each time. (The sampler's resizes while work runs
                # are not held back: see _resize_pool.)
                self._pool.resize(workers)
            return self._pool

    def _start_pool(self, workers: int) -> ProcessPool:
        try:
            pool = ProcessPool(
                workers, max_attempts=self.config.max_attempts,
                morsel_timeout_s=self.config.morsel_timeout_s,
                processor_modules=self.config.processors,
                on_started=_weakly(self._worker_started))
        except Exception as exc:  # no processes allowed here (sandbox, limits)
            raise PoolUnavailable(f"{type(exc).__name__}: {exc}") from exc
        self._pool = pool
        log.debug("process pool starting with %d workers", workers)
        sampler = self._sampler = UtilizationSampler(
            self.controller, pids=pool.pids, pool_busy=pool.busy_fraction,
            on_resize=_weakly(self._resize_pool), busy_workers=pool.busy_workers)
        sampler.start()
        # An engine dropped without close() (or alive at exit) still stops its workers.
        weakref.finalize(self, _shutdown, sampler, pool)
        return pool

    async def pool_for(self, workers: int) -> ProcessPool:
        """The pool, sized for a call. Starting processes blocks (fork/exec), so that happens
        on a helper thread; a pool that is big enough already is returned right here (a
        thread hop costs more than a small call's work)."""
        pool = self._pool
        if pool is not None and not pool.closed and workers <= pool.size:
            return self.ensure_pool(workers)  # at most a shrink: no process is started
        return await asyncio.get_running_loop().run_in_executor(None, self.ensure_pool,
                                                                workers)

    def _worker_started(self, seconds: float) -> None:
        # What a cold pool costs before its first child answers: the controller's estimate for
        # the next cold start (after close(), or in another engine of this process).
        self.controller.startup_s = max(0.01, seconds)
        log.debug("pool worker ready after %.3f s", seconds)

    def _resize_pool(self, workers: int) -> None:
        pool = self._pool
        if pool is not None:
            pool.resize(self.isolated_pool_size(workers) if self.isolate else workers)

    # -- isolated calls ------------------------------------------------------------------
    def begin_isolated(self) -> None:
        """An isolated call starts (the pool keeps a spare process while several run)."""
        self._active_isolated += 1

    def end_isolated(self) -> None:
        self._active_isolated -= 1

    def isolated_pool_size(self, workers: int) -> int:
        """With several calls in flight (a cluster worker runs several morsels at once), one
        spare process: a function that hangs in one call does not hold up all the others, and
        the cores are not oversubscribed by more than one process. The spare stays for
        SPARE_KEEP_S after it was last needed: calls that come and go would otherwise start
        and retire a process (~0.1 s of CPU each) every time."""
        now = time.monotonic()
        if self._active_isolated > workers:
            self.spare_until = now + SPARE_KEEP_S
        if now < self.spare_until:
            return workers + 1
        return workers

    async def isolated_pool(self, workers: int, spec: FunctionSpec) -> ProcessPool:
        """The pool for an isolated call of ``spec``; ProcessingError when there is none."""
        try:
            return await self.pool_for(self.isolated_pool_size(workers))
        except PoolUnavailable as exc:
            raise ProcessingError(f"no worker processes to run {spec.name} in: {exc}",
                                  original=exc) from exc

    # -- running tasks -------------------------------------------------------------------
    async def run_tasks(self, pool: ProcessPool, tasks: list[Task], call: CallGroup,
                        morsel_rows: int) -> list[Any]:
        """The tasks' results, one entry per task, in order; the first failure (lowest
        index) raises, and the call's other tasks are cancelled."""
        transport = self.transport
        shared = sum(1 for t in tasks if isinstance(t.data, (shm.NumpySlice, shm.ArrowSlice)))
        transport["shared_memory_tasks"] += shared
        transport["pipe_tasks"] += len(tasks) - shared
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
                transport["loop_tasks"] += 1
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
                self.calls.observe_morsels(task.seconds, math.ceil(len(task.data) / morsel_rows))
                advance(len(task.data))
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

    def _learn_item_cost(self, token: int, seconds: float) -> None:
        last = self._item_costs.pop(token)
        self._item_costs.put(token, seconds if last is None else 0.7 * last + 0.3 * seconds)

    def item_cost(self, token: int) -> float | None:
        """Recent seconds per item of a shipped function's tasks, when seen before."""
        return self._item_costs.get(token)

    # -- pickles -------------------------------------------------------------------------
    def use_pickle(self, func: Any, data: bytes) -> None:
        """``func`` is ``data`` unpickled: the pool's processes get these bytes (see
        ``LocalEngine.use_pickle``)."""
        key = id(func)
        pickled = self._pickled

        def forget(ref: weakref.ref[Any]) -> None:
            if pickled.get(key, (None,))[0] is ref:
                del pickled[key]

        try:
            pickled[key] = (weakref.ref(func, forget), bytes(data))
        except TypeError:  # not weakly referable: pickled per call as usual
            pass

    def pickle_of(self, spec: FunctionSpec) -> bytes | None:
        """The bytes ``spec``'s function came in (use_pickle), when known."""
        if spec.kind == ASYNC or spec.processor is not None or not self._pickled:
            return None
        known = self._pickled.get(id(spec.func))
        return known[1] if known is not None and known[0]() is spec.func else None

    # -- stats and shutdown ----------------------------------------------------------------
    def pool_stats(self) -> dict[str, Any]:
        pool = self._pool
        return {"pool_size": pool.size if pool is not None else 0,
                "pool_pids": pool.pids() if pool is not None else [],
                "workers_lost": pool.workers_lost if pool is not None else 0,
                "transport": dict(self.transport)}

    def shutdown(self) -> None:
        """Stop the pool, the sampler and the helper threads (blocks; ``closed`` is set)."""
        self.closed = True
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


def _shutdown(sampler: UtilizationSampler, pool: ProcessPool) -> None:
    sampler.stop()
    pool.close()


def _weakly(method: Callable[..., Any]) -> Callable[..., Any]:
    """A callback that does not keep its runtime alive (the pool and sampler hold callbacks;
    the finalizer must be able to run when the user drops the engine)."""
    ref = weakref.WeakMethod(method)

    def call(*args: Any) -> Any:
        target = ref()
        return None if target is None else target(*args)

    return call


__all__ = ["ITEM_COSTS", "SPARE_KEEP_S", "EngineRuntime", "PoolUnavailable"]
