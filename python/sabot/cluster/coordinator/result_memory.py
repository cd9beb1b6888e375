"""The results the coordinator holds in memory, kept within SABOT_RESULT_MEMORY_MB.

A result comes in and is held (its morsel's ``result``) so that readers of a running or just
finished job get it without a disk read. Once it is durable (in its file or its journal row,
and that row committed), it may go: past the budget, the results held longest are let go first
(their readers then read them from disk). A result that is not durable yet (its file is being
written, or the journal cannot be written: a full disk) is never let go, whatever the budget:
memory then goes over it, which is logged, and nothing is lost.
"""

from __future__ import annotations

import logging
import time
from collections import OrderedDict
from typing import Protocol


log = logging.getLogger(__name__)

#: Least time between two log lines saying memory is over the budget.
OVER_LOG_EVERY_S = 10.0


class HoldsResult(Protocol):
    result: tuple[str, int, bytes] | None


class ResultMemory:
    """Results in memory: ``(job id, morsel)`` -> the morsel holding it."""

    def __init__(self, budget_bytes: int) -> None:
        self.budget_bytes = budget_bytes
        self.held_bytes = 0
        #: Durable results, held longest first: these may be let go.
        self._durable: OrderedDict[tuple[str, int], tuple[HoldsResult, int]] = OrderedDict()
        #: Results not durable yet, and their bytes.
        self._pending: dict[tuple[str, int], tuple[HoldsResult, int]] = {}
        self.released = 0  # results let go for the budget, ever
        self._logged_over = 0.0

    @property
    def pending_bytes(self) -> int:
        return sum(n for _, n in self._pending.values())

    def hold(self, key: tuple[str, int], holder: HoldsResult, nbytes: int) -> None:
        """``holder.result`` (``nbytes``) is in memory, not durable yet."""
        self.forget(key)
        self._pending[key] = (holder, nbytes)
        self.held_bytes += nbytes

    def durable(self, key: tuple[str, int]) -> None:
        """The result of ``key`` is on disk now: it may be let go."""
        entry = self._pending.pop(key, None)
        if entry is not None:
            self._durable[key] = entry

    def forget(self, key: tuple[str, int]) -> None:
        """``key``'s result is no longer held (its job left memory, or a new one replaces it)."""
        entry = self._pending.pop(key, None) or self._durable.pop(key, None)
        if entry is not None:
            self.held_bytes -= entry[1]

    def trim(self) -> None:
        """Let the results held longest go while memory is over the budget."""
        durable = self._durable
        while self.held_bytes > self.budget_bytes and durable:
            _, (holder, nbytes) = durable.popitem(last=False)
            holder.result = None
            self.held_bytes -= nbytes
            self.released += 1
        now = time.monotonic()
        if self.held_bytes > self.budget_bytes and now - self._logged_over >= OVER_LOG_EVERY_S:
            self._logged_over = now
            log.warning("results held in memory: %.1f MB, over SABOT_RESULT_MEMORY_MB=%g: "
                        "%d result(s) are not on disk yet (being written, or the journal "
                        "cannot be written) and are kept until they are",
                        self.held_bytes / (1 << 20), self.budget_bytes / (1 << 20),
                        len(self._pending))

    def status(self) -> dict[str, int]:
        """For /stats."""
        return {"held_bytes": self.held_bytes, "budget_bytes": self.budget_bytes,
                "not_durable": len(self._pending), "released": self.released}


__all__ = ["OVER_LOG_EVERY_S", "ResultMemory"]
