"""A small least-recently-used map with a fixed number of entries.

Every cache in Sabot (functions a worker has unpickled, per-function costs, shipped functions
in a pool process) is one of these, so that trimming is written once.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable, Iterator
from typing import Generic, TypeVar

K = TypeVar("K")
V = TypeVar("V")


class BoundedCache(Generic[K, V]):
    """At most ``capacity`` entries; putting one more evicts the least recently used."""

    __slots__ = ("capacity", "_data", "on_evict")

    def __init__(self, capacity: int, *, on_evict: Callable[[K, V], None] | None = None) -> None:
        if capacity < 1:
            raise ValueError(f"capacity must be at least 1, got {capacity}")
        self.capacity = capacity
        self._data: OrderedDict[K, V] = OrderedDict()
        self.on_evict = on_evict

    def get(self, key: K, default: V | None = None) -> V | None:
        """The value for ``key`` (marked recently used), or ``default``."""
        data = self._data
        try:
            value = data[key]
        except KeyError:
            return default
        data.move_to_end(key)
        return value

    def put(self, key: K, value: V) -> None:
        """Set ``key``; evicts the oldest entries beyond the capacity."""
        data = self._data
        data[key] = value
        data.move_to_end(key)
        while len(data) > self.capacity:
            old_key, old_value = data.popitem(last=False)
            if self.on_evict is not None:
                self.on_evict(old_key, old_value)

    def get_or_create(self, key: K, create: Callable[[], V]) -> V:
        """The value for ``key``; made by ``create()`` and stored when absent."""
        data = self._data
        if key in data:
            data.move_to_end(key)
            return data[key]
        value = create()
        self.put(key, value)
        return value

    def pop(self, key: K, default: V | None = None) -> V | None:
        return self._data.pop(key, default)

    def clear(self) -> None:
        self._data.clear()

    def __contains__(self, key: object) -> bool:
        return key in self._data

    def __len__(self) -> int:
        return len(self._data)

    def __iter__(self) -> Iterator[K]:
        return iter(list(self._data))

    def items(self) -> list[tuple[K, V]]:
        return list(self._data.items())


__all__ = ["BoundedCache"]
