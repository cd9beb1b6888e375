"""The logical graph: nodes that know how to make their operator and where their input comes
from. Streams are built lazily; a job turns the nodes it needs into operators."""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from .operator import Operator
    from .runtime import JobContext


class Node:
    """``inputs`` are (node, side output or None) pairs, one per input port. ``partition``
    names, per input port, the key columns whose rows the operator needs together (a keyed
    operator: on a cluster, an exchange sends each row to the instance owning its key; ``[]``:
    every row to one instance), or None where rows stay on the instance that made them."""

    def __init__(self, name: str, make: Callable[[JobContext], Operator],
                 inputs: list[tuple[Node, str | None]] | None = None, bounded: bool | None = None,
                 partition: list[list[str] | None] | None = None) -> None:
        self.name = name
        self.make = make
        self.inputs = inputs or []
        self._bounded = bounded
        self.partition = partition

    def partition_of(self, port: int) -> list[str] | None:
        if self.partition is None or port >= len(self.partition):
            return None
        return self.partition[port]

    @property
    def bounded(self) -> bool:
        if self._bounded is not None:
            return self._bounded
        return all(n.bounded for n, _ in self.inputs)
