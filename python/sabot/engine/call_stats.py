"""What an engine has done: calls, items, morsels, errors and busy time for ``get_stats()``,
and the Prometheus metrics they feed.

Counted once per call or per executed piece of a call, never per item.
"""

from __future__ import annotations

import logging
import threading
from typing import Any

from ..metrics import get_metrics
from .controller import INLINE, AdaptiveController

log = logging.getLogger("sabot.engine")


class CallStats:
    """The counters of one engine. ``record_metrics=False``: an owner that counts its own work
    (a cluster worker counting whole morsels) keeps the Prometheus metrics out of it."""

    __slots__ = ("_cluster", "_controller", "_metrics", "_node", "busy_s", "calls", "errors",
                 "executors", "items", "last_call", "lock", "morsels")

    def __init__(self, controller: AdaptiveController, *, cluster_name: str,
                 node: str | None, record_metrics: bool) -> None:
        self._controller = controller
        self._cluster = cluster_name
        self._node = node
        self._metrics: Any = None if record_metrics else False
        self.calls = 0
        self.items = 0
        self.morsels = 0
        self.errors = 0
        self.busy_s = 0.0
        self.executors: dict[str, int] = {}
        self.last_call: dict[str, Any] | None = None
        self.lock = threading.Lock()

    @property
    def metrics(self) -> Any:
        """The Prometheus metrics this engine feeds, or False when it feeds none."""
        if self._metrics is None:
            try:
                self._metrics = get_metrics(self._cluster, self._node) if self._node \
                    else get_metrics()
            except Exception:  # metrics must never fail a call
                log.debug("metrics unavailable", exc_info=True)
                self._metrics = False
        return self._metrics

    def count_call(self, items: int, morsels: int, seconds: float) -> None:
        """A call that ran ``items`` in ``morsels`` morsels in ``seconds``."""
        plan = self._controller.last_plan
        executor = plan.executor if plan else INLINE
        with self.lock:
            self.calls += 1
            self.items += items
            self.morsels += morsels
            self.busy_s += seconds
            self.executors[executor] = self.executors.get(executor, 0) + 1
            self.last_call = {
                "items": items, "morsels": morsels, "seconds": round(seconds, 6),
                "executor": executor, "workers": plan.workers if plan else 1,
                "items_per_second": round(items / seconds, 1) if seconds > 0 else None,
            }
        m = self.metrics
        if m:
            m.record_items(items)

    def count_error(self) -> None:
        """A call that failed with a ProcessingError."""
        with self.lock:
            self.errors += 1
        m = self.metrics
        if m:
            m.record_error("processing")
            m.morsels.labels(**m.lbl(state="failed")).inc()

    def observe_morsels(self, seconds: float, count: int) -> None:
        """Metrics for ``count`` morsels that together ran ``seconds`` (one update, not one per
        morsel: this is called per executed piece, off the per-item path)."""
        m = self.metrics
        if m and count > 0:
            m.morsels.labels(**m.lbl(state="ok")).inc(count)
            m.morsel_duration.labels(**m.lbl()).observe(seconds / count)

    def snapshot(self) -> dict[str, Any]:
        with self.lock:
            return {
                "calls": self.calls,
                "items_processed": self.items,
                "morsels_processed": self.morsels,
                "errors": self.errors,
                "busy_seconds": round(self.busy_s, 6),
                "throughput_items_per_second": (round(self.items / self.busy_s, 1)
                                                if self.busy_s else 0.0),
                "executors": dict(self.executors),
                "last_call": dict(self.last_call) if self.last_call else None,
            }


__all__ = ["CallStats"]
