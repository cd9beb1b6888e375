"""Per-key state for ``KeyedStream.process``: ValueState, ListState, MapState, with optional TTL.

A descriptor (``st.ValueState(default=0, ttl="1h")``) declares a state; inside the process
function ``ctx.state("name")`` is that state for the current key. With ``ttl`` an entry expires
that long after it was last written, measured in event time (the watermark; the default, so
results do not depend on the machine's speed) or, with ``ttl_time="processing"``, on the wall
clock. Expired entries read as empty and are dropped from memory on the next sweep.
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Hashable, Iterator
from typing import Any

from ..errors import ConfigError
from .durations import DurationLike, to_ms

TTL_TIMES = ("event", "processing")


class StateDescriptor:
    kind = "state"

    def __init__(self, *, ttl: DurationLike | None = None, ttl_time: str = "event") -> None:
        self.ttl_ms = None if ttl is None else to_ms(ttl, f"{type(self).__name__}(ttl)")
        if ttl_time not in TTL_TIMES:
            raise ConfigError(f"{type(self).__name__}(ttl_time)", ttl_time, " or ".join(TTL_TIMES))
        self.ttl_time = ttl_time

    def empty(self) -> Any:
        raise NotImplementedError


class ValueState(StateDescriptor):
    """One value per key (``default`` until written)."""

    kind = "value"

    def __init__(self, default: Any = None, **kw: Any) -> None:
        super().__init__(**kw)
        self.default = default

    def empty(self) -> Any:
        return copy.copy(self.default)


class ListState(StateDescriptor):
    """A list per key."""

    kind = "list"

    def empty(self) -> Any:
        return []


class MapState(StateDescriptor):
    """A dict per key."""

    kind = "map"

    def empty(self) -> Any:
        return {}


class StateStore:
    """The entries of one declared state for all keys: key -> [value, last write time]."""

    def __init__(self, name: str, desc: StateDescriptor, clock: Callable[[str], int]) -> None:
        self.name = name
        self.desc = desc
        self._clock = clock  # clock("event"|"processing") -> ms
        self.entries: dict[Hashable, list[Any]] = {}

    def _now(self) -> int:
        return self._clock(self.desc.ttl_time)

    def _expired(self, entry: list[Any], now: int) -> bool:
        ttl = self.desc.ttl_ms
        return ttl is not None and now - entry[1] >= ttl

    def get(self, key: Hashable) -> Any:
        e = self.entries.get(key)
        if e is None:
            return None
        if self._expired(e, self._now()):
            del self.entries[key]
            return None
        return e[0]

    def put(self, key: Hashable, value: Any) -> None:
        self.entries[key] = [value, self._now()]

    def touch(self, key: Hashable) -> None:
        e = self.entries.get(key)
        if e is not None:
            e[1] = self._now()

    def clear(self, key: Hashable) -> None:
        self.entries.pop(key, None)

    def sweep(self) -> None:
        if self.desc.ttl_ms is None:
            return
        now = self._now()
        dead = [k for k, e in self.entries.items() if self._expired(e, now)]
        for k in dead:
            del self.entries[k]

    def __len__(self) -> int:
        return len(self.entries)


class ValueHandle:
    def __init__(self, store: StateStore, key: Hashable) -> None:
        self._s, self._k = store, key

    def value(self) -> Any:
        v = self._s.get(self._k)
        return self._s.desc.empty() if v is None else v

    def update(self, value: Any) -> None:
        self._s.put(self._k, value)

    def clear(self) -> None:
        self._s.clear(self._k)


class ListHandle:
    def __init__(self, store: StateStore, key: Hashable) -> None:
        self._s, self._k = store, key

    def get(self) -> list[Any]:
        v = self._s.get(self._k)
        return [] if v is None else list(v)

    def add(self, item: Any) -> None:
        v = self._s.get(self._k) or []
        v.append(item)
        self._s.put(self._k, v)

    def add_all(self, items: Any) -> None:
        v = self._s.get(self._k) or []
        v.extend(items)
        self._s.put(self._k, v)

    def update(self, items: Any) -> None:
        self._s.put(self._k, list(items))

    def clear(self) -> None:
        self._s.clear(self._k)

    def __iter__(self) -> Iterator[Any]:
        return iter(self.get())

    def __len__(self) -> int:
        return len(self.get())


class MapHandle:
    def __init__(self, store: StateStore, key: Hashable) -> None:
        self._s, self._k = store, key

    def _map(self, create: bool) -> dict[Any, Any] | None:
        v = self._s.get(self._k)
        if v is None and create:
            v = {}
            self._s.put(self._k, v)
        return v

    def get(self, k: Any, default: Any = None) -> Any:
        m = self._map(False)
        return default if m is None else m.get(k, default)

    def put(self, k: Any, value: Any) -> None:
        self._map(True)[k] = value  # type: ignore[index]
        self._s.touch(self._k)

    def remove(self, k: Any) -> None:
        m = self._map(False)
        if m is not None:
            m.pop(k, None)

    def contains(self, k: Any) -> bool:
        m = self._map(False)
        return m is not None and k in m

    def items(self) -> list[tuple[Any, Any]]:
        m = self._map(False)
        return [] if m is None else list(m.items())

    def keys(self) -> list[Any]:
        return [k for k, _ in self.items()]

    def clear(self) -> None:
        self._s.clear(self._k)

    def __len__(self) -> int:
        m = self._map(False)
        return 0 if m is None else len(m)


HANDLES = {"value": ValueHandle, "list": ListHandle, "map": MapHandle}
