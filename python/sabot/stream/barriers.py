"""Checkpoint barriers of a distributed job, aligned at every exchange.

The coordinator asks every instance for checkpoint ``n``. An instance *injects* the barrier
between two items: its sources' positions are what they have read so far, and from then on
what its sources queue waits. Each exchange's sending end passes the barrier on (after the
rows before it) once everything upstream of it passed: its sources at once, the inputs of an
earlier exchange once aligned. An exchange's input is *aligned* at ``n`` when every sending
instance's barrier came (or that sender ended); rows a sender sends after its barrier wait
until then. When the instance injected and all its exchange inputs are aligned, every operator
has seen exactly the rows before the barrier everywhere: its state is snapshot (the
checkpoint's part of this instance) and what waited is let through, in order.

Only one checkpoint is aligned at a time (the coordinator asks for the next one after the
last is committed).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from .exchange import ExchangeInput, ExchangeSend
from .operator import Operator
from .source_operator import SourceOperator

#: A queue item of the job loop: (source index or <0, kind, partition / (exchange, sender),
#: payload, position)
Item = tuple[int, str, Any, Any, Any]


def upstream_inputs(order: list[Operator], sources: list[SourceOperator],
                    exchanges: list[ExchangeInput]) -> dict[int, tuple[set[int], set[int]]]:
    """For each exchange's sending end (by exchange number): the sources (by index) and the
    exchange inputs (by exchange number) upstream of it."""
    ups: dict[int, list[Operator]] = {id(op): [] for op in order}
    for op in order:
        for down, _port in op.downstreams():
            ups.setdefault(id(down), []).append(op)
    src_index = {id(s): i for i, s in enumerate(sources)}
    x_index = {id(x): x.exchange for x in exchanges}
    out: dict[int, tuple[set[int], set[int]]] = {}
    for op in order:
        if not isinstance(op, ExchangeSend):
            continue
        srcs: set[int] = set()
        xs: set[int] = set()
        seen: set[int] = set()
        stack = [op]
        while stack:
            cur = stack.pop()
            if id(cur) in seen:
                continue
            seen.add(id(cur))
            if id(cur) in src_index:
                srcs.add(src_index[id(cur)])
            elif id(cur) in x_index:
                xs.add(x_index[id(cur)])
                continue  # (what is upstream of an exchange input is on the senders' side)
            stack.extend(ups.get(id(cur), []))
        out[op.exchange] = (srcs, xs)
    return out


class Alignment:
    """The barrier of one checkpoint at a time, for one instance's job loop."""

    def __init__(self, sends: dict[int, tuple[set[int], set[int]]],
                 exchanges: list[ExchangeInput], instances: int,
                 send_barrier: Callable[[int, int], None]) -> None:
        self._sends = sends
        self._exchanges = exchanges
        self._instances = instances
        self._send_barrier = send_barrier
        self.epoch: int | None = None  # the checkpoint being aligned
        self.injected = False
        self._arrived: dict[int, set[int]] = {}  # exchange -> senders whose barrier came
        self._passed: set[int] = set()  # exchanges aligned
        self._sent: set[int] = set()  # exchanges whose sending end passed the barrier on
        self._held: list[Item] = []

    def _begin(self, epoch: int) -> None:
        if self.epoch is None:
            self.epoch = epoch
            self.injected = False
            self._arrived = {x.exchange: set() for x in self._exchanges}
            self._passed, self._sent, self._held = set(), set(), []
        elif epoch != self.epoch:
            raise RuntimeError(f"checkpoint {epoch} began while {self.epoch} is being aligned")

    def inject(self, epoch: int) -> None:
        """The coordinator asked this instance for checkpoint ``epoch``."""
        self._begin(epoch)
        self.injected = True
        self._settle()

    def barrier(self, exchange: int, sender: int, epoch: int) -> None:
        """A sender's barrier came through ``exchange`` (possibly before this instance's own
        request for the checkpoint)."""
        self._begin(epoch)
        self._arrived[exchange].add(sender)
        self._settle()

    def sender_ended(self, exchange: int, sender: int) -> None:
        if self.epoch is not None:
            self._arrived[exchange].add(sender)
            self._settle()

    def hold(self, item: Item) -> bool:
        """Whether ``item`` must wait until the snapshot (it comes after a barrier)."""
        if self.epoch is None:
            return False
        i, kind, where = item[0], item[1], item[2]
        if i >= 0:
            held = self.injected
        elif i == -1 and kind != "barrier":
            held = where[1] in self._arrived.get(where[0], ())
        else:
            held = False
        if held:
            self._held.append(item)
        return held

    def _settle(self) -> None:
        assert self.epoch is not None
        for x in self._exchanges:
            got = self._arrived[x.exchange]
            if x.exchange not in self._passed and all(
                    s in got or x.ended(s) for s in range(self._instances)):
                self._passed.add(x.exchange)
        if not self.injected:
            return
        for xid, (_srcs, xs) in self._sends.items():
            if xid not in self._sent and xs <= self._passed:
                self._sent.add(xid)
                self._send_barrier(xid, self.epoch)

    @property
    def complete(self) -> bool:
        return (self.epoch is not None and self.injected
                and len(self._passed) == len(self._exchanges)
                and len(self._sent) == len(self._sends))

    def release(self) -> tuple[int, list[Item]]:
        """After the snapshot: the checkpoint's number and what waited, in order."""
        assert self.epoch is not None
        epoch, held = self.epoch, self._held
        self.epoch, self._held = None, []
        return epoch, held
