"""Batch functions (one call per morsel) and Arrow compute expressions (the native core).

A batch function runs on its first morsel here, timed; the controller then puts the rest on
threads (numpy and Arrow kernels release the GIL) or runs it inline. An expression is evaluated
over the whole input by the native columnar core, off the event loop.
"""

from __future__ import annotations

import asyncio
import math
import time
from collections.abc import Callable
from typing import Any

import pyarrow as pa

from ..columnar import evaluate
from ..errors import ProcessingError
from .adapters import Source, rows_per_morsel
from .controller import NATIVE, THREADS, Plan
from .functions import FunctionSpec
from .placement import LOOP_CALL_S
from .runtime import EngineRuntime


async def run_batches(runtime: EngineRuntime, src: Source, spec: FunctionSpec
                      ) -> tuple[Any, int]:
    """``spec`` (a batch function) over ``src``: the output and the number of morsels."""
    func = spec.func
    rows = rows_per_morsel(runtime.config.morsel_size_bytes, src.bytes_per_row())
    morsels = list(src.morsels(rows))
    if not morsels:
        return src.build_batches([]), 0
    t = time.perf_counter()
    first = run_batch(func, spec.name, 0, *morsels[0])
    per_morsel = time.perf_counter() - t
    runtime.calls.observe_morsels(per_morsel, 1)
    plan = runtime.controller.plan_batches(morsels=len(morsels), per_morsel_s=per_morsel)
    outs = [first]
    rest = morsels[1:]
    loop = asyncio.get_running_loop()
    if plan.executor == THREADS:
        threads = runtime.batch_executor()
        futs = [loop.run_in_executor(threads, run_batch, func, spec.name, i + 1, off, m)
                for i, (off, m) in enumerate(rest)]
        try:
            for f in futs:
                outs.append(await f)
        finally:
            for f in futs:
                f.cancel()
    elif rest:
        if per_morsel * len(rest) < LOOP_CALL_S:
            outs.extend(run_batch(func, spec.name, i + 1, off, m)
                        for i, (off, m) in enumerate(rest))
        else:
            inline = runtime.inline_executor()
            for i, (off, m) in enumerate(rest):
                outs.append(await loop.run_in_executor(
                    inline, run_batch, func, spec.name, i + 1, off, m))
    return build_batches(src, spec, outs), len(morsels)


def run_batch(func: Callable[[Any], Any], name: str, morsel: int, offset: int,
              data: Any) -> Any:
    """``func`` over one morsel; ProcessingError naming the morsel when it fails or does not
    return one result per item."""
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


def build_batches(src: Source, spec: FunctionSpec, outputs: list[Any]) -> Any:
    """The morsels' outputs joined into the output of ``src``'s type."""
    try:
        return src.build_batches(outputs)
    except (TypeError, ValueError, pa.ArrowException) as exc:
        raise ProcessingError(
            f"the results of batch function {spec.name} cannot be combined: {exc}",
            original=exc) from exc


async def run_expression(runtime: EngineRuntime, data: Any, spec: FunctionSpec
                         ) -> tuple[Any, int, int]:
    """An Arrow compute expression over ``data``: the output, its rows and its morsels."""
    loop = asyncio.get_running_loop()
    config = runtime.config
    runtime.controller.note(Plan(NATIVE, runtime.controller.cores,
                                 "Arrow compute expression: evaluated by the native core"))
    out = await loop.run_in_executor(None, evaluate_expression, data, spec.func,
                                     config.morsel_size_kb)
    n = _num_rows(data)
    return out, n, max(1, math.ceil(n * 8 / config.morsel_size_bytes)) if n else 0


def evaluate_expression(data: Any, expr: Any, morsel_size_kb: int | None = None) -> Any:
    """An Arrow compute expression over every row, by the native columnar core
    (``sabot.columnar.evaluate``; pyarrow's own kernels in a build without the core)."""
    return evaluate(data, expr, morsel_size_kb=morsel_size_kb)


def _num_rows(data: Any) -> int:
    n = getattr(data, "num_rows", None)
    if n is not None:
        return int(n)
    try:
        return len(data)
    except TypeError:
        return 0


__all__ = ["build_batches", "evaluate_expression", "run_batch", "run_batches",
           "run_expression"]
