"""Projection pushdown: a source whose every consumer is a ``select`` of plain columns is told
which columns the job reads (``source.project(columns)``), so that it need not decode the others.

Planned on the job's operators once they are connected (the consumers of a stream are known
only then). The event-time column is always kept; a source whose dead letters are read, or
with any other consumer, decodes everything (``project(None)``)."""

from __future__ import annotations

from collections.abc import Iterable

import pyarrow.compute as pc

from .chunk import TIME_COLUMN
from .operator import Operator
from .source_operator import SourceOperator
from .stateless import Select


def plan_projections(operators: Iterable[Operator]) -> None:
    for op in operators:
        if not isinstance(op, SourceOperator):
            continue
        project = getattr(op.source, "project", None)
        if project is not None:
            project(_columns_read(op))


def _columns_read(op: SourceOperator) -> frozenset[str] | None:
    if not op.outputs or op.side_outputs:
        return None
    cols: set[str] = set()
    for down, _port in op.outputs:
        fields = _plain_fields(down) if isinstance(down, Select) else None
        if fields is None:
            return None
        cols |= fields - {TIME_COLUMN}  # a select's own copy of the event time
    if op.timestamp is not None:
        cols.add(op.timestamp)
    return frozenset(cols)


def _plain_fields(select: Select) -> set[str] | None:
    """The input columns a select reads, when each output is an input column (else None)."""
    out: set[str] = set()
    for expr in select.columns.values():
        if isinstance(expr, str):
            out.add(expr)
            continue
        name = _field_name(expr)
        if name is None:
            return None
        out.add(name)
    return out


def _field_name(expr: object) -> str | None:
    if not isinstance(expr, pc.Expression):
        return None
    text = str(expr)  # a field reference prints as its name
    return text if pc.field(text).equals(expr) else None
