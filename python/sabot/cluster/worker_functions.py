"""The functions a worker's jobs run, unpickled once, with what the worker learned about them.

Keyed by the function (its pickle, or a processor's name), not the job, so that jobs submitted
again and again with the same function (small jobs) skip both unpickling and sampling; a job's
later morsels come without the pickle, so the job remembers its function too.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import cloudpickle

from ..bounded_cache import BoundedCache
from ..engine.placement import VERDICT_ITEMS, median
from .protocol import messages as m

#: Functions (and jobs) a worker remembers.
FUNCTIONS = 128


@dataclass(slots=True, eq=False)
class JobFunction:
    """One function: ``func`` is the callable, a processor's name (the engine looks it up), or
    the exception that loading it raised (raised again for each of the job's morsels)."""

    key: bytes | str
    func: Any
    #: The function's own seconds per item, once enough items were timed.
    cost: float | None = None
    #: Seconds per item timed so far, until there are enough for ``cost``.
    samples: list[float] = field(default_factory=list)

    def function(self) -> Any:
        if isinstance(self.func, BaseException):
            raise self.func
        return self.func

    def add_samples(self, times: list[float]) -> None:
        """Items timed on a morsel: with enough of them the cost is settled (the median)."""
        if self.cost is not None or not times:
            return
        self.samples.extend(times)
        if len(self.samples) >= VERDICT_ITEMS:
            self.cost = median(self.samples)
            self.samples = []


class FunctionCache:
    """The worker's one function cache. ``loaded(func, pickle)`` is told of every function
    unpickled here (the engine then ships those exact bytes to its pool)."""

    def __init__(self, node_id: str, loaded: Callable[[Any, bytes], None],
                 capacity: int = FUNCTIONS) -> None:
        self.node_id = node_id
        self._loaded = loaded
        self._by_key: BoundedCache[bytes | str, JobFunction] = BoundedCache(capacity)
        self._by_job: BoundedCache[str, JobFunction] = BoundedCache(capacity)

    def lookup(self, msg: m.Assign) -> JobFunction:
        """The function of ``msg``'s job: unpickled from the first morsel's pickle (once per
        distinct pickle), else the job's, else the processor ``msg.func_name``."""
        if msg.func_pickle is not None:
            key = bytes(msg.func_pickle)
            fn = self._by_key.get(key)
            if fn is None:
                fn = JobFunction(key, self._load(msg))
                # A failed load is the job's, not the pickle's: a module may be installed later.
                if not isinstance(fn.func, BaseException):
                    self._loaded(fn.func, key)
                    self._by_key.put(key, fn)
            self._by_job.put(msg.job_id, fn)
            return fn
        fn = self._by_job.get(msg.job_id)
        if fn is None:
            name = msg.func_name
            fn = self._by_key.get(name)
            if fn is None:
                fn = JobFunction(name, name)
                self._by_key.put(name, fn)
        return fn

    def _load(self, msg: m.Assign) -> Any:
        try:
            return cloudpickle.loads(msg.func_pickle)
        except ModuleNotFoundError as exc:
            return ModuleNotFoundError(
                f"worker {self.node_id} cannot load the job's function {msg.func_name!r}: module "
                f"{exc.name!r} is not importable here ({exc}); install it on every worker, or "
                f"define the function in __main__ so that it is shipped by value",
                name=exc.name)
        except Exception as exc:
            return RuntimeError(
                f"worker {self.node_id} cannot unpickle the job's function {msg.func_name!r}: "
                f"{type(exc).__name__}: {exc}")


__all__ = ["FUNCTIONS", "FunctionCache", "JobFunction"]
