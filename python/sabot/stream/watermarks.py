"""Watermark strategies and the per-partition watermark tracking of a source.

A partition's watermark is the largest event time it has produced minus the allowed
out-of-orderness, minus 1 ms (an event at exactly the watermark is still on time, as in Flink).
A source's watermark is the minimum over its partitions that are not idle; a partition that
produced nothing for ``idle_timeout`` (processing time) is idle until it produces again.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

from .durations import MAX_TIME, MIN_TIME, DurationLike, to_ms


@dataclass(frozen=True)
class WatermarkStrategy:
    """How far behind the largest event time seen the watermark trails, and when a silent
    partition stops holding it back."""

    out_of_orderness_ms: int
    idle_timeout_ms: int | None = None


def bounded_out_of_orderness(delay: DurationLike, idle_timeout: DurationLike | None = None
                             ) -> WatermarkStrategy:
    """Events may arrive up to ``delay`` late (event time); a partition silent for
    ``idle_timeout`` (wall clock) no longer holds the watermark back."""
    return WatermarkStrategy(
        to_ms(delay, "bounded_out_of_orderness(delay)", allow_zero=True),
        None if idle_timeout is None else to_ms(idle_timeout, "idle_timeout"))


def monotonous() -> WatermarkStrategy:
    """Events arrive in event-time order (the watermark follows the largest time at once)."""
    return WatermarkStrategy(0)


class PartitionWatermarks:
    """Tracks each partition's largest event time and last activity; gives the merged watermark."""

    def __init__(self, strategy: WatermarkStrategy, partitions: int = 0,
                 clock: type[time.monotonic] | None = None) -> None:
        self.strategy = strategy
        self._clock = clock or time.monotonic
        now = self._clock()
        self._max: dict[object, int] = {p: MIN_TIME for p in range(partitions)}
        self._seen: dict[object, float] = {p: now for p in range(partitions)}
        self._ended: set[object] = set()

    def __getstate__(self) -> dict:
        state = dict(self.__dict__)
        del state["_clock"]  # a clock is this process's; a restore uses monotonic time
        return state

    def __setstate__(self, state: dict) -> None:
        self.__dict__.update(state)
        self._clock = time.monotonic

    @classmethod
    def merged(cls, trackers: list[PartitionWatermarks], keep: Any) -> PartitionWatermarks:
        """One tracker of the partitions ``keep(partition)`` accepts, from trackers of other
        instances; a partition several of them had starts at the least of their times (no
        event of any of them is late)."""
        out = cls(trackers[0].strategy, 0)
        for t in trackers:
            for p, m in t._max.items():
                if p is not None and keep(p):
                    out._max[p] = min(out._max.get(p, m), m)
                    out._seen[p] = out._clock()
                    if p in t._ended:
                        out._ended.add(p)
        if all(None in t._ended for t in trackers):
            out._ended.add(None)
        return out

    def restart_clock(self) -> None:
        """After a restore in another process: activity times count from now."""
        now = self._clock()
        self._seen = {p: now for p in self._seen}

    def observe(self, partition: object, max_ts: int) -> None:
        prev = self._max.get(partition, MIN_TIME)
        self._max[partition] = max(prev, max_ts)
        self._seen[partition] = self._clock()

    def touch(self, partition: object) -> None:
        """The partition is alive even though it produced no row (an empty batch)."""
        self._max.setdefault(partition, MIN_TIME)
        self._seen[partition] = self._clock()

    def end(self, partition: object) -> None:
        self._max[partition] = MAX_TIME
        self._ended.add(partition)

    def end_all(self) -> None:
        for p in list(self._max):
            self.end(p)
        self._ended.add(None)

    def _partition_wm(self, p: object) -> int:
        m = self._max[p]
        if m >= MAX_TIME:
            return MAX_TIME
        if m <= MIN_TIME:
            return MIN_TIME
        return m - self.strategy.out_of_orderness_ms - 1

    def idle(self, p: object, now: float) -> bool:
        timeout = self.strategy.idle_timeout_ms
        if timeout is None or p in self._ended:
            return False
        return (now - self._seen[p]) * 1000 >= timeout

    def current(self) -> int | None:
        """The merged watermark, or None when every partition is idle (the source is idle)."""
        if None in self._ended:
            return MAX_TIME
        now = self._clock()
        live = [self._partition_wm(p) for p in self._max if not self.idle(p, now)]
        if not live:
            return None if self._max else MIN_TIME
        return min(live)
