"""The warning a call gives when it runs inline, on one core, because its function (or its
items) cannot be pickled for the worker processes that would have run it in parallel.

Once per function (a function used in a loop warns once, not per call), as an
:class:`~sabot.errors.InlineFallbackWarning` pointing at the caller's line, with the pickling
error and how to fix it. The plan's reason stays in ``get_stats()["controller"]["reason"]``.
"""

from __future__ import annotations

import os
import pickle
import sys
import threading
import warnings
import weakref
from collections.abc import Sequence
from typing import Any

from ..bounded_cache import BoundedCache
from ..errors import InlineFallbackWarning
from .controller import INLINE, UNPICKLABLE_REASON, Plan
from .functions import FunctionSpec, pickle_problem

#: Functions that cannot be weakly referenced are remembered by id, at most this many.
_BY_ID = 1024

_lock = threading.Lock()
_warned: weakref.WeakSet[Any] = weakref.WeakSet()
_warned_ids: BoundedCache[int, bool] = BoundedCache(_BY_ID)
_PACKAGE_DIR = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def warn_if_unpicklable(plan: Plan, spec: FunctionSpec, sample_items: Sequence[Any],
                        workers: int) -> None:
    """Warn (once per function) when ``plan`` runs the call inline only because what it
    would send to worker processes cannot be pickled."""
    if plan.executor != INLINE or plan.reason != UNPICKLABLE_REASON:
        return
    if not _first_time(spec.func):
        return
    problem = pickle_problem(spec)
    if problem is not None:
        why = (f"the function cannot be pickled ({problem}). Make it picklable: create locks, "
               "open files, connections and similar objects inside the function (or once per "
               "process) instead of capturing them in a closure or as a global of __main__, "
               "or define the function in an importable module")
    else:
        why = (f"its items or results cannot be pickled ({_data_problem(sample_items)}). "
               "Use items and results of picklable types")
    warnings.warn(InlineFallbackWarning(
        f"{spec.name} runs inline on one core instead of in up to {workers} worker processes: "
        f"{why}. (Said once per function; get_stats()['controller']['reason'] has the plan.)"),
        stacklevel=_caller_level())


def _first_time(func: Any) -> bool:
    with _lock:
        try:
            if func in _warned:
                return False
            _warned.add(func)
            return True
        except TypeError:  # not weakly referable (or not hashable): by id
            key = id(func)
            if _warned_ids.get(key):
                return False
            _warned_ids.put(key, True)
            return True


def _data_problem(items: Sequence[Any]) -> str:
    try:
        pickle.dumps(list(items), protocol=5)
    except Exception as exc:
        return f"{type(exc).__name__}: {exc}"
    return "the results do not pickle"


def _caller_level() -> int:
    """The stacklevel of the first frame outside the sabot package (the user's call)."""
    frame = sys._getframe(1)
    level = 1
    while frame is not None and os.path.abspath(frame.f_code.co_filename).startswith(
            _PACKAGE_DIR + os.sep):
        frame = frame.f_back  # type: ignore[assignment]
        level += 1
    return level


__all__ = ["warn_if_unpicklable"]
