"""The operator contract: batches in, batches out, watermarks merged over the inputs.

An operator receives :class:`~sabot.stream.chunk.Chunk` s on numbered input ports and the
watermark of each input; it acts on the minimum over its non-idle inputs (an input marked idle
does not hold it back) and passes watermarks on after the output they released. Operators run
on the job's thread, one call at a time: no locking inside.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np

from .chunk import Chunk
from .durations import MAX_TIME, MIN_TIME

if TYPE_CHECKING:
    from .rescale import Ownership
    from .runtime import JobContext


class Operator:
    """Base class; subclasses override :meth:`process` and optionally the hooks.

    ``state_attrs`` names the attributes that make up the operator's state in a checkpoint
    (Arrow tables in them are stored as Arrow IPC, the rest pickled); the input watermarks are
    always part of it.
    """

    state_attrs: tuple[str, ...] = ()

    def __init__(self, name: str, inputs: int = 1) -> None:
        self.name = name
        self.outputs: list[tuple[Operator, int]] = []
        self.side_outputs: dict[str, list[tuple[Operator, int]]] = {}
        self._in_wm = [MIN_TIME] * inputs
        self._in_idle = [False] * inputs
        self.watermark = MIN_TIME
        self.ctx: JobContext | None = None
        self.rows_in = 0
        self.rows_out = 0

    # -- wiring ---------------------------------------------------------------------------------
    def connect(self, downstream: Operator, port: int = 0, side: str | None = None) -> None:
        if side is None:
            self.outputs.append((downstream, port))
        else:
            self.side_outputs.setdefault(side, []).append((downstream, port))

    # -- hooks ----------------------------------------------------------------------------------
    def open(self, ctx: JobContext) -> None:
        self.ctx = ctx

    def process(self, chunk: Chunk, port: int) -> None:
        raise NotImplementedError

    def on_watermark(self, watermark: int) -> None:
        """The merged input watermark advanced to ``watermark``: fire what it completes."""

    def on_processing_time(self, now_ms: int) -> None:
        """A periodic tick (wall-clock milliseconds): processing-time timers."""

    def close(self) -> None:
        """Every input ended (after the final watermark)."""

    # -- checkpoints ---------------------------------------------------------------------------
    def snapshot(self) -> dict[str, Any]:
        """The operator's state, taken between two batches (see ``state_attrs``)."""
        state = {a: getattr(self, a) for a in self.state_attrs}
        state["__watermarks"] = (list(self._in_wm), list(self._in_idle), self.watermark,
                                 self.rows_in, self.rows_out)
        return state

    def restore(self, state: dict[str, Any]) -> None:
        """Take back a state :meth:`snapshot` gave (after :meth:`open`, before any input)."""
        in_wm, in_idle, self.watermark, self.rows_in, self.rows_out = state["__watermarks"]
        self._in_wm, self._in_idle = list(in_wm), list(in_idle)
        for a in self.state_attrs:
            setattr(self, a, state[a])

    def rescale(self, parts: list[dict[str, Any]], own: Ownership) -> dict[str, Any]:
        """A state for :meth:`restore` made from the states ``parts`` that this operator's
        instances of a run on another number of instances took (see :mod:`.rescale`). Here:
        an operator without state of its own; a stateful one overrides this."""
        from .rescale import merge_watermarks, not_rescalable

        if self.state_attrs or type(self).snapshot is not Operator.snapshot:
            raise not_rescalable(self)
        return {"__watermarks": merge_watermarks(parts, len(self._in_wm), own)}

    # -- emitting ------------------------------------------------------------------------------
    def emit(self, chunk: Chunk) -> None:
        n = chunk.num_rows
        if n == 0:
            return
        self.rows_out += n
        for op, port in self.outputs:
            op.rows_in += n
            op.process(chunk, port)

    def emit_side(self, side: str, chunk: Chunk) -> None:
        n = chunk.num_rows
        if n == 0:
            return
        for op, port in self.side_outputs.get(side, ()):
            op.rows_in += n
            op.process(chunk, port)

    def downstreams(self) -> list[tuple[Operator, int]]:
        """Where this operator's output goes: (operator, port), side outputs included."""
        return self._downstreams()

    def _downstreams(self) -> list[tuple[Operator, int]]:
        out = list(self.outputs)
        for targets in self.side_outputs.values():
            out.extend(targets)
        return out

    def route_late(self, chunk: Chunk, late: np.ndarray) -> Chunk:
        """The rows of ``chunk`` not marked in ``late``; the late ones are counted and go to the
        ``late`` side output."""
        if not late.any():
            return chunk
        late_chunk = chunk.take(late)
        if self.ctx is not None:
            self.ctx.record_late(self.name, late_chunk.num_rows)
        self.emit_side("late", late_chunk)
        return chunk.take(~late)

    def emit_watermark(self, watermark: int) -> None:
        for op, port in self._downstreams():
            op.receive_watermark(watermark, port)

    def emit_idle(self, idle: bool) -> None:
        for op, port in self._downstreams():
            op.receive_idle(idle, port)

    # -- watermark merging ---------------------------------------------------------------------
    def receive_watermark(self, watermark: int, port: int) -> None:
        self._in_wm[port] = max(self._in_wm[port], watermark)
        self._in_idle[port] = False
        self._advance()

    def receive_idle(self, idle: bool, port: int) -> None:
        if self._in_idle[port] == idle:
            return
        self._in_idle[port] = idle
        if all(self._in_idle):
            self.emit_idle(True)
        else:
            if not idle:
                self.emit_idle(False)
            self._advance()

    def _advance(self) -> None:
        live = [w for w, idle in zip(self._in_wm, self._in_idle) if not idle]
        if not live:
            return
        merged = min(live)
        if merged > self.watermark:
            self.watermark = merged
            self.on_watermark(merged)
            self.emit_watermark(merged)

    @property
    def finished(self) -> bool:
        return all(w >= MAX_TIME for w in self._in_wm)

    def describe_input(self, chunk: Chunk) -> str:
        """A short description of a batch, for error messages."""
        n = chunk.num_rows
        first: Any = chunk.batch.slice(0, 1).to_pylist()[0] if n else None
        return f"a batch of {n} rows (first row: {first!r})"
