"""The warning a caller gets, once per function, when a per-item call that would have run in
parallel runs inline on one core because the function (or its items or results) cannot be
pickled for the worker processes."""

from __future__ import annotations

import pickle
import warnings
from collections.abc import Sequence
from typing import Any

from ..bounded_cache import BoundedCache
from ..errors import PerformanceWarning
from .functions import FunctionSpec, pickle_error

#: Functions already warned about (by identity; bounded, so a long-lived process that makes
#: functions on the fly does not grow).
_WARNED: BoundedCache[int, Any] = BoundedCache(1024)


def warn_unpicklable(spec: FunctionSpec, items: Sequence[Any], results: Sequence[Any],
                     *, stacklevel: int = 2) -> None:
    """Warn (PerformanceWarning, once per function) that ``spec`` runs inline, with the reason
    and what to change."""
    if _WARNED.get(id(spec.func)) is spec.func:
        return
    _WARNED.put(id(spec.func), spec.func)
    name = getattr(spec.func, "__qualname__", None) or type(spec.func).__name__
    reason = pickle_error(spec)
    if reason is not None:
        why = f"the function cannot be pickled for worker processes ({reason})"
        fix = ("define it at module level, and create what it holds that does not pickle "
               "(locks, open files, connections, clients) inside it or in a global set up on "
               "first use, not in a variable it captures")
    else:
        why = f"its items or results cannot be pickled ({_data_error(items, results)})"
        fix = "pass and return plain data (numbers, strings, lists, dicts, numpy, Arrow)"
    warnings.warn(f"{name} runs inline on one core: {why}. To run it in parallel, {fix}.",
                  PerformanceWarning, stacklevel=stacklevel + 1)


def _data_error(items: Sequence[Any], results: Sequence[Any]) -> str:
    for what, values in (("an item", items), ("a result", results)):
        for value in values:
            try:
                pickle.dumps(value, protocol=5)
            except Exception as exc:
                return f"{what}: {type(exc).__name__}: {exc}"
    return "unknown"


__all__ = ["warn_unpicklable"]
