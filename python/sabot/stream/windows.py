"""Window assigners: tumbling, sliding (hopping), session and count windows.

Time windows are half-open ``[start, end)`` in event time, aligned to the epoch plus ``offset``.
A sliding window is cut into panes of ``gcd(size, slide)``: each event is aggregated once into
its pane, and a window's result merges the partial states of its panes.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from ..errors import ConfigError
from .durations import DurationLike, to_ms


@dataclass(frozen=True)
class TimeWindows:
    """Tumbling (slide == size) or sliding windows of ``size`` every ``slide``."""

    size: int
    slide: int
    offset: int = 0

    @property
    def pane(self) -> int:
        return math.gcd(self.size, self.slide)

    @property
    def kind(self) -> str:
        return "tumbling" if self.size == self.slide else "sliding"

    def pane_of(self, ts: np.ndarray) -> np.ndarray:
        """Pane start (ms, offset removed) of each event time."""
        p = self.pane
        return ((ts - self.offset) // p) * p

    def last_end(self, ts: np.ndarray) -> np.ndarray:
        """End of the last window that holds each event time."""
        return ((ts - self.offset) // self.slide) * self.slide + self.size + self.offset

    def windows_of_panes(self, panes: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(row index into ``panes``, window start without offset) for every window holding
        each pane: ``ceil(size / slide)`` candidates per pane at most."""
        k = -(-self.size // self.slide)
        base = (panes // self.slide) * self.slide
        idx = np.repeat(np.arange(len(panes), dtype=np.int64), k)
        starts = np.repeat(base, k) - np.tile(np.arange(k, dtype=np.int64) * self.slide, len(panes))
        keep = starts + self.size > np.repeat(panes, k)
        return idx[keep], starts[keep]


@dataclass(frozen=True)
class SessionWindows:
    """A key's events closer than ``gap`` to each other fall in one session."""

    gap: int
    kind: str = "session"


@dataclass(frozen=True)
class CountWindows:
    """Every ``n`` events of a key, in arrival order, form a window."""

    n: int
    kind: str = "count"


def tumbling(size: DurationLike, offset: DurationLike = 0) -> TimeWindows:
    """Fixed, non-overlapping windows of ``size``."""
    s = to_ms(size, "tumbling(size)")
    return TimeWindows(s, s, to_ms(offset, "tumbling(offset)", allow_zero=True) % s)


def sliding(size: DurationLike, slide: DurationLike, offset: DurationLike = 0) -> TimeWindows:
    """Windows of ``size`` starting every ``slide`` (hopping windows)."""
    s = to_ms(size, "sliding(size)")
    sl = to_ms(slide, "sliding(slide)")
    if sl > s:
        raise ConfigError("sliding(slide)", slide, f"at most the window size ({s} ms)")
    return TimeWindows(s, sl, to_ms(offset, "sliding(offset)", allow_zero=True) % sl)


def session(gap: DurationLike) -> SessionWindows:
    """Session windows that close after ``gap`` without an event of the key."""
    return SessionWindows(to_ms(gap, "session(gap)"))


def count_window(n: int) -> CountWindows:
    """Windows of ``n`` events per key (``st.count(n)`` says the same)."""
    if isinstance(n, bool) or not isinstance(n, int) or n < 1:
        raise ConfigError("count(n)", n, "a positive integer number of events")
    return CountWindows(n)


WindowSpec = TimeWindows | SessionWindows | CountWindows
