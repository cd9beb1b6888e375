"""LocalEngine: process_data on one machine (single-node mode, and inside every cluster worker).

One call goes: resolve the function kind -> adapt the input -> time a small sample of the first
items -> let the controller choose the executor (inline, processes, threads, native, async) ->
run the rest in morsels -> assemble the output of the input's type, in input order.

This class is the facade: the work of each kind of call is in its own module (``item_call``,
``isolated``, ``async_items``, ``batches``, ``streaming``), the parts they share (the process
pool, the helper threads, the counters) in :class:`~sabot.engine.runtime.EngineRuntime`.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Callable, Sequence
from typing import Any

from .. import _native
from ..config import Config, load_config
from ..errors import ProcessingError
from ..system import system_resources, usable_cores
from .adapters import adapt, rows_per_morsel
from .async_items import ASYNC_CONCURRENCY, run_async
from .batches import run_batches, run_expression
from .columnar_input import ColumnarInput, build_items
from .controller import INLINE, PROCESSES, AdaptiveController
from .functions import ASYNC, BATCH, EXPRESSION, ITEM, resolve_function
from .inline import native_loop_available
from .isolated import run_encoded, run_isolated
from .item_call import SAMPLE_S, ItemCall
from .runtime import EngineRuntime
from .streaming import stream

EXECUTOR_CHOICES = ("auto", INLINE, PROCESSES)


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
        #: Whether this engine counts its items and morsels in the Prometheus metrics (an owner
        #: that wires it to a job table counts them itself otherwise).
        self.records_metrics = record_metrics
        self.controller = AdaptiveController(
            usable_cores=usable_cores(),
            max_workers=self.config.effective_max_workers,
            target_utilization=self.config.target_utilization,
            force=None if executor == "auto" else executor,
        )
        #: The pool, threads and counters this engine's calls share.
        self.runtime = EngineRuntime(self.config, self.controller, node=node, isolate=isolate,
                                     record_metrics=record_metrics)
        self.started_at = time.time()

    # -- calls -----------------------------------------------------------------------------
    async def process(self, data: Any, func: Any) -> Any:
        """Apply ``func`` to ``data``; results in input order, typed like the input."""
        self._check_open()
        runtime = self.runtime
        spec = resolve_function(func)
        t0 = time.perf_counter()
        try:
            if spec.kind == EXPRESSION:
                out, n, morsels = await run_expression(runtime, data, spec)
            else:
                src = adapt(data)
                if self.isolate:
                    out, morsels = await run_isolated(runtime, src, spec)
                elif spec.kind == BATCH:
                    out, morsels = await run_batches(runtime, src, spec)
                elif spec.kind == ASYNC:
                    results, morsels = await run_async(runtime, src.items(), spec)
                    out = build_items(src, results)
                else:
                    rows = rows_per_morsel(self.config.morsel_size_bytes, src.bytes_per_row())
                    if ColumnarInput.supports(src):
                        out, morsels = await ItemCall(runtime, spec, (), rows,
                                                      columnar=ColumnarInput(src)).run()
                    else:
                        results, morsels = await ItemCall(runtime, spec, src.items(),
                                                          rows).run()
                        out = build_items(src, results)
                n = len(src)
        except ProcessingError:
            runtime.calls.count_error()
            raise
        runtime.calls.count_call(n, morsels, time.perf_counter() - t0)
        return out

    def process_stream(self, source: Any, func: Any, *, max_in_flight: int | None = None,
                       morsel_rows: int | None = None) -> AsyncIterator[Any]:
        """Results of ``func`` over ``source`` (sync/async iterable or Arrow reader), in order."""
        self._check_open()
        return stream(self.runtime, source, func, max_in_flight=max_in_flight,
                      morsel_rows=morsel_rows)

    async def process_encoded(self, morsels: Sequence[tuple[str, bytes, int]], func: Any,
                              decode: Callable[[str, bytes], Any],
                              encode: Callable[[list[Any]], tuple[str, bytes]]
                              ) -> list[tuple[int, str, bytes]]:
        """A per-item or batch function over morsels that are still encoded ``(encoding,
        bytes, rows)``: each morsel is one task of the isolated pool, decoded with ``decode``,
        run and its results encoded with ``encode`` (a per-item function's list, or what a
        batch function returned) in the worker process, so this process only moves
        bytes (a cluster worker's bulk morsels). Returns ``(items, encoding, bytes)`` per
        morsel, in order. A failure is a ProcessingError whose ``morsel`` is the failing
        morsel's position and ``index`` the item within it. ``decode`` and ``encode`` must
        pickle small: module-level functions, or instances of module-level classes (a cluster
        worker's encoder that writes a big result to the spool itself)."""
        self._check_open()
        spec = resolve_function(func)
        if spec.kind not in (ITEM, ASYNC, BATCH):
            raise TypeError(f"process_encoded takes a per-item or batch function, got a "
                            f"{spec.kind} function ({spec.name})")
        calls = self.runtime.calls
        t0 = time.perf_counter()
        try:
            out = await run_encoded(self.runtime, morsels, spec, decode, encode)
        except ProcessingError:
            calls.count_error()
            raise
        calls.count_call(sum(n for n, _, _ in out), len(out), time.perf_counter() - t0)
        return out

    def use_pickle(self, func: Any, data: bytes) -> None:
        """``func`` is ``data`` unpickled (cloudpickle): the isolated pool's processes get these
        bytes rather than a fresh pickle of ``func`` on every call. A cluster worker passes the
        bytes a job's function came in: its copy of the function never runs here, so the bytes
        stay exact, and a call saves pickling it again."""
        self.runtime.use_pickle(func, data)

    # -- life cycle ------------------------------------------------------------------------
    def warm_up(self) -> None:
        """Start the worker pool now (a daemon does, so its first job does not wait for it).
        Returns at once: the workers finish starting in the background."""
        self._check_open()
        self.runtime.warm_up()

    async def close(self) -> None:
        """Stop the worker pool and helper threads. The engine cannot be used afterwards."""
        if self.runtime.closed:
            return
        self.runtime.closed = True
        await asyncio.get_running_loop().run_in_executor(None, self.runtime.shutdown)

    def close_sync(self) -> None:
        """``close`` for code without an event loop (atexit, tests)."""
        self.runtime.shutdown()

    def _check_open(self) -> None:
        if self.runtime.closed:
            raise RuntimeError("this LocalEngine is closed; create a new one")

    # -- stats -----------------------------------------------------------------------------
    def get_stats(self) -> dict[str, Any]:
        runtime = self.runtime
        out = runtime.calls.snapshot()
        out["streams_active"] = runtime.streams_active
        ctl = self.controller.snapshot()
        ctl.update(runtime.pool_stats())
        out["controller"] = ctl
        out["cython_optimization"] = native_loop_available()
        out["native"] = _native_info()
        out["morsel_size_kb"] = self.config.morsel_size_kb
        out["system_resources"] = system_resources()
        return out


def _native_info() -> dict[str, Any]:
    try:
        info = _native.get_stats()
        return info if isinstance(info, dict) else {"available": bool(info)}
    except Exception as exc:  # pragma: no cover - depends on the native build
        return {"available": False, "error": str(exc)}


__all__ = ["ASYNC_CONCURRENCY", "EXECUTOR_CHOICES", "SAMPLE_S", "LocalEngine"]
