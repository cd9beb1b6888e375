"""Event-time and processing-time timers of a keyed process function."""

from __future__ import annotations

import heapq
from collections.abc import Hashable


class TimerService:
    """Timers per (key, time), each set at most once; fired in time order."""

    def __init__(self) -> None:
        self._event: list[tuple[int, int, Hashable]] = []
        self._proc: list[tuple[int, int, Hashable]] = []
        self._live: set[tuple[str, Hashable, int]] = set()
        self._seq = 0

    def _add(self, heap: list, kind: str, key: Hashable, ts: int) -> None:
        if (kind, key, ts) in self._live:
            return
        self._live.add((kind, key, ts))
        self._seq += 1
        heapq.heappush(heap, (ts, self._seq, key))

    def register_event(self, key: Hashable, ts: int) -> None:
        self._add(self._event, "event", key, int(ts))

    def register_processing(self, key: Hashable, ts: int) -> None:
        self._add(self._proc, "processing", key, int(ts))

    def delete_event(self, key: Hashable, ts: int) -> None:
        self._live.discard(("event", key, int(ts)))

    def delete_processing(self, key: Hashable, ts: int) -> None:
        self._live.discard(("processing", key, int(ts)))

    def _due(self, heap: list, kind: str, now: int) -> list[tuple[Hashable, int]]:
        out = []
        while heap and heap[0][0] <= now:
            ts, _, key = heapq.heappop(heap)
            if (kind, key, ts) in self._live:
                self._live.discard((kind, key, ts))
                out.append((key, ts))
        return out

    def due_event(self, watermark: int) -> list[tuple[Hashable, int]]:
        return self._due(self._event, "event", watermark)

    def due_processing(self, now_ms: int) -> list[tuple[Hashable, int]]:
        return self._due(self._proc, "processing", now_ms)

    def __len__(self) -> int:
        return len(self._live)

    def entries(self) -> list[tuple[str, Hashable, int]]:
        """Every live timer as (kind, key, time)."""
        return sorted(self._live, key=lambda e: (e[2], e[0], repr(e[1])))

    def add(self, kind: str, key: Hashable, ts: int) -> None:
        self._add(self._event if kind == "event" else self._proc, kind, key, int(ts))


class Timers:
    """What ``ctx.timers`` gives a process function: timers of the current key."""

    def __init__(self, service: TimerService, key: Hashable) -> None:
        self._s, self._k = service, key

    def register_event_time_timer(self, ts: int) -> None:
        """Call ``on_timer`` once the watermark reaches ``ts`` (epoch ms)."""
        self._s.register_event(self._k, ts)

    def register_processing_time_timer(self, ts: int) -> None:
        """Call ``on_timer`` once the wall clock reaches ``ts`` (epoch ms)."""
        self._s.register_processing(self._k, ts)

    def delete_event_time_timer(self, ts: int) -> None:
        self._s.delete_event(self._k, ts)

    def delete_processing_time_timer(self, ts: int) -> None:
        self._s.delete_processing(self._k, ts)
