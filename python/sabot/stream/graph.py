"""The logical graph: nodes that know how to make their operator and where their input comes
from. Streams are built lazily; a job turns the nodes it needs into operators."""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from .operator import Operator
    from .runtime import JobContext


class Node:
    """``inputs`` are (node, side output or None) pairs, one per input port."""

    def __init__(self, name: str, make: Callable[[JobContext], Operator],
                 inputs: list[tuple[Node, str | None]] | None = None, bounded: bool | None = None
                 ) -> None:
        self.name = name
        self.make = make
        self.inputs = inputs or []
        self._bounded = bounded

    @property
    def bounded(self) -> bool:
        if self._bounded is not None:
            return self._bounded
        return all(n.bounded for n, _ in self.inputs)
