"""Function kinds ``process_data`` accepts, and how a user's ``func`` is recognised.

* per-item callable (the default): ``func(item) -> result``; lambdas and closures included.
* ``async def`` per-item function: awaited on the event loop with bounded concurrency.
* batch callable, marked with :func:`batch`: ``func(morsel) -> results`` where the morsel is a
  list slice, a numpy slice or an Arrow RecordBatch/Array and the results have the same length.
* Arrow compute expression (``pyarrow.compute.Expression``): evaluated by the native core.
* the name of a registered processor (``"square"``): looked up in :mod:`sabot.processors`.
"""

from __future__ import annotations

import functools
import inspect
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, TypeVar

from ..processors import get_processor

F = TypeVar("F", bound=Callable[..., Any])

ITEM = "item"
ASYNC = "async"
BATCH = "batch"
EXPRESSION = "expression"

KINDS = (ITEM, ASYNC, BATCH, EXPRESSION)


class BatchFunction:
    """A callable marked as taking a whole morsel. Created by :func:`batch`."""

    __slots__ = ("__dict__", "__wrapped__", "func")

    def __init__(self, func: Callable[[Any], Any]) -> None:
        if not callable(func):
            raise TypeError(f"sabot.batch() needs a callable, got {type(func).__name__}")
        self.func = func
        self.__wrapped__ = func
        functools.update_wrapper(self, func)

    def __call__(self, morsel: Any) -> Any:
        return self.func(morsel)

    def __repr__(self) -> str:
        return f"sabot.batch({getattr(self.func, '__qualname__', self.func)!r})"

    # Pickled by value of the wrapped function (cloudpickle handles lambdas inside).
    def __reduce__(self) -> tuple[Any, ...]:
        return (BatchFunction, (self.func,))


def batch(func: F) -> F:
    """Mark ``func`` as a batch function: it receives one morsel and returns as many results.

    Usable as a decorator (``@sabot.batch``) or a wrapper (``sabot.batch(np.sqrt)``). The morsel
    is a list slice for list-like input, a numpy slice for numpy input and a ``RecordBatch``
    (``Array`` for Arrow arrays) for Arrow input.
    """
    return BatchFunction(func)  # type: ignore[return-value]


@dataclass(frozen=True)
class FunctionSpec:
    """A resolved user function: what kind it is and the callable (or expression) to run."""

    kind: str
    func: Any
    name: str
    #: The registered name when ``func`` was given as a processor name (children resolve it
    #: by name, so nothing is pickled by value).
    processor: str | None = None


class AsyncAsSync:
    """An ``async def`` per-item function run to completion on this process's own event loop:
    how a CPU-bound coroutine function (one that never waits) runs on worker processes."""

    _loop: Any = None

    def __init__(self, func: Callable[[Any], Any]) -> None:
        self.func = func

    def __call__(self, item: Any) -> Any:
        coro = self.func(item)
        try:
            coro.send(None)
        except StopIteration as done:  # finished without waiting: no event loop needed
            return done.value
        coro.close()
        # It waits on something after all: run it properly, on this process's loop (asyncio
        # is imported only then: a pool child that never needs it starts faster).
        import asyncio

        if AsyncAsSync._loop is None:
            AsyncAsSync._loop = asyncio.new_event_loop()
        return AsyncAsSync._loop.run_until_complete(self.func(item))


def function_pickles(spec: FunctionSpec) -> bool:
    """Whether ``spec``'s function can be sent to a worker process (a processor travels by
    name; anything else must pickle with cloudpickle)."""
    return pickle_error(spec) is None


def pickle_error(spec: FunctionSpec) -> str | None:
    """Why ``spec``'s function cannot be sent to a worker process, or None when it can."""
    if spec.processor is not None:
        return None
    import cloudpickle  # (only for a call that may go to the pool)

    try:
        cloudpickle.dumps(spec.func)
    except Exception as exc:
        return f"{type(exc).__name__}: {exc}"
    return None


def _is_expression(obj: Any) -> bool:
    try:
        import pyarrow.compute as pc
    except ImportError:  # pragma: no cover - pyarrow is a hard dependency
        return False
    return isinstance(obj, pc.Expression)


def _is_async(func: Any) -> bool:
    if inspect.iscoroutinefunction(func):
        return True
    # a callable object whose __call__ is an async def
    call = getattr(type(func), "__call__", None)
    return call is not None and inspect.iscoroutinefunction(call)


def describe(func: Any) -> str:
    name = getattr(func, "__qualname__", None) or getattr(func, "__name__", None)
    return str(name) if name else type(func).__name__


def resolve_function(func: Any) -> FunctionSpec:
    """Classify ``func``; raises TypeError (or UnknownProcessorError) naming what is accepted."""
    if isinstance(func, str):
        target = get_processor(func)
        inner = resolve_function(target)
        return FunctionSpec(inner.kind, inner.func, func, processor=func)
    if isinstance(func, BatchFunction):
        if _is_async(func.func):
            raise TypeError(
                f"{func!r}: async batch functions are not supported; use a plain def for "
                "sabot.batch, or an async def per-item function"
            )
        return FunctionSpec(BATCH, func.func, describe(func.func))
    if _is_expression(func):
        return FunctionSpec(EXPRESSION, func, str(func))
    if callable(func):
        kind = ASYNC if _is_async(func) else ITEM
        return FunctionSpec(kind, func, describe(func))
    raise TypeError(
        f"func must be a callable, an async def function, sabot.batch(callable), a "
        f"pyarrow.compute.Expression or a registered processor name; got {type(func).__name__}"
    )


__all__ = ["KINDS", "AsyncAsSync", "BatchFunction", "FunctionSpec", "batch", "function_pickles",
           "resolve_function"]
