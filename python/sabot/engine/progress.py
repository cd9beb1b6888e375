"""Progress of the running call: items done, reported as they finish, to whoever asked.

A caller that wants progress (``process_data(..., progress=True)``) sets a callback for its task
with :func:`reporting`; the executors call :func:`advance` with the number of items each slice
or pool task finished. Without a callback, ``advance`` is one context-variable read.
"""

from __future__ import annotations

import contextlib
import contextvars
from collections.abc import Callable, Iterator

_CALLBACK: contextvars.ContextVar[Callable[[int], None] | None] = contextvars.ContextVar(
    "sabot_progress", default=None)


def advance(items: int) -> None:
    """``items`` more items of the current call are done."""
    callback = _CALLBACK.get()
    if callback is not None and items:
        callback(items)


@contextlib.contextmanager
def reporting(callback: Callable[[int], None]) -> Iterator[None]:
    """Calls of the engine made inside this block (in this task) report to ``callback``."""
    token = _CALLBACK.set(callback)
    try:
        yield
    finally:
        _CALLBACK.reset(token)


__all__ = ["advance", "reporting"]
