"""Columnar execution over Arrow data: projections, filters and aggregations.

Expressions are ordinary :class:`pyarrow.compute.Expression` objects (``pc.field("b") * 2 + 1``).
With the native core loaded, the work runs in C++ on Sabot's morsel scheduler with the GIL
released and without copying the input: data crosses through the Arrow C Data Interface and the
expression travels in Arrow's own serialization. Numeric expressions (bool/int32/int64/float/
double columns and literals; arithmetic, comparisons, boolean logic, null tests, casts, if_else)
run on a fused, vectorised evaluator; anything else runs Arrow's kernels morsel by morsel.
Without the native core (or with ``native=False``) the same functions run on pyarrow alone and
return the same results.

Inputs: ``pa.Table``, ``pa.RecordBatch``, ``pa.RecordBatchReader``, any object exporting
``__arrow_c_stream__``, and ``pa.Array`` / ``pa.ChunkedArray`` (seen as a one-column table whose
column is named ``"value"``: write ``pc.field("value")``).

Results keep input order for :func:`evaluate`, :func:`project` and :func:`filter`; grouped
:func:`aggregate` lists groups in order of first appearance. See docs/columnar.md.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from . import _native
from .errors import ArrowInputError, NativeError

#: The aggregate functions :func:`aggregate` accepts.
AGGREGATIONS: tuple[str, ...] = ("sum", "count", "count_all", "min", "max", "mean")

#: Column name under which an Array / ChunkedArray input is seen.
VALUE_COLUMN = "value"

#: Default morsel size (MORSEL_SIZE_KB's default); callers with a Config pass theirs.
DEFAULT_MORSEL_SIZE_KB = 64

ExpressionLike = pc.Expression | str
AggregationSpec = str | tuple[str, ExpressionLike | None]
KeySpec = ExpressionLike | Sequence[ExpressionLike] | Mapping[str, ExpressionLike] | None

_PYARROW_INPUT_ERRORS = (pa.ArrowInvalid, pa.ArrowTypeError, pa.ArrowNotImplementedError, pa.ArrowKeyError,
                         pa.ArrowIndexError)


# --------------------------------------------------------------------------------------------
# public API
# --------------------------------------------------------------------------------------------


def evaluate(
    data: Any,
    expr: ExpressionLike,
    *,
    threads: int | None = None,
    morsel_size_kb: int | None = None,
    native: bool | None = None,
) -> pa.Array | pa.ChunkedArray:
    """Evaluate one element-wise expression over every row, in input order.

    Returns a ``pa.Array`` for ``pa.Array`` / ``pa.RecordBatch`` input and a ``pa.ChunkedArray``
    otherwise.
    """
    table = project(data, {VALUE_COLUMN: expr}, threads=threads, morsel_size_kb=morsel_size_kb, native=native)
    column = table.column(0)
    if isinstance(data, (pa.Array, pa.RecordBatch)):
        return column.combine_chunks() if column.num_chunks != 1 else column.chunk(0)
    return column


def project(
    data: Any,
    columns: Mapping[str, ExpressionLike],
    *,
    where: pc.Expression | None = None,
    threads: int | None = None,
    morsel_size_kb: int | None = None,
    native: bool | None = None,
) -> pa.Table:
    """A table with one column per ``columns`` entry (name -> expression or column name), over
    the rows where ``where`` is true (all rows when None), in input order."""
    if not isinstance(columns, Mapping) or not columns:
        raise ArrowInputError(
            f"columns must be a non-empty mapping of output name to expression, got {columns!r}"
        )
    names = [_check_name(name, "column") for name in columns]
    exprs = [_expression(e, f"column {n!r}") for n, e in zip(names, columns.values())]
    predicate = _predicate(where)
    table = _as_table(data)
    core, threads_n, morsel_bytes = _native_args(native, threads, morsel_size_kb)
    if core is not None:
        serialized = _serialize_all(exprs + ([predicate] if predicate is not None else []))
        if serialized is not None:
            where_bytes = serialized[-1] if predicate is not None else None
            capsule = _clarified(
                table.schema, core.columnar_project, table, names, serialized[: len(exprs)],
                where_bytes, threads_n, morsel_bytes,
            )
            return _import_table(capsule)
    return _clarified(table.schema, _fallback_project, table, names, exprs, predicate)


def filter(
    data: Any,
    predicate: pc.Expression,
    *,
    threads: int | None = None,
    morsel_size_kb: int | None = None,
    native: bool | None = None,
) -> pa.Table:
    """The rows where ``predicate`` is true (null counts as false), in input order."""
    expr = _predicate(predicate)
    if expr is None:
        raise ArrowInputError("filter needs a boolean pyarrow.compute.Expression predicate, got None")
    table = _as_table(data)
    core, threads_n, morsel_bytes = _native_args(native, threads, morsel_size_kb)
    if core is not None:
        serialized = _serialize_all([expr])
        if serialized is not None:
            return _import_table(_clarified(table.schema, core.columnar_filter,
                                            table, serialized[0], threads_n, morsel_bytes))
    return _clarified(table.schema, _fallback_filter, table, expr)


def aggregate(
    data: Any,
    aggregations: Mapping[str, AggregationSpec],
    *,
    by: KeySpec = None,
    where: pc.Expression | None = None,
    threads: int | None = None,
    morsel_size_kb: int | None = None,
    native: bool | None = None,
) -> pa.Table:
    """Aggregate, globally or grouped.

    ``aggregations`` maps an output name to ``(function, expression)``; functions are those in
    :data:`AGGREGATIONS` (``count`` counts non-null values, ``count_all`` counts rows and takes
    no expression: ``("count_all", None)`` or just ``"count_all"``). ``by`` gives the group keys:
    a column name or expression, a sequence of them, or a mapping of output name to expression.
    ``where`` filters rows first.

    Result: one row without ``by``; otherwise the key columns then the aggregates, one row per
    group in order of first appearance. Result types and values are pyarrow's
    (``pc.sum``/``Table.group_by``): sums of integers are int64 (unsigned: uint64), of floats
    double; mean is double; min/max keep the input type; empty input gives null sums/min/max/mean
    and zero counts.
    """
    specs = _aggregation_specs(aggregations)
    key_names, keys = _key_specs(by)
    predicate = _predicate(where)
    out_names = key_names + [name for name, _, _ in specs]
    if len(set(out_names)) != len(out_names):
        raise ArrowInputError(f"output column names must be unique, got {out_names}")
    table = _as_table(data)
    core, threads_n, morsel_bytes = _native_args(native, threads, morsel_size_kb)
    if core is not None:
        values = [e for _, _, e in specs if e is not None]
        serialized = _serialize_all(values + keys + ([predicate] if predicate is not None else []))
        if serialized is not None:
            it = iter(serialized[: len(values)])
            native_specs = [(name, func, next(it) if e is not None else None) for name, func, e in specs]
            key_bytes = serialized[len(values) : len(values) + len(keys)]
            where_bytes = serialized[-1] if predicate is not None else None
            capsule, _reason = _clarified(
                table.schema, core.columnar_aggregate, table, native_specs, key_names, key_bytes,
                where_bytes, threads_n, morsel_bytes,
            )
            if capsule is not None:
                return _import_table(capsule)
            # The native engine does not cover this request (e.g. min over strings): pyarrow does.
    return _clarified(table.schema, _fallback_aggregate, table, specs, key_names, keys, predicate)


def is_fused(expr: ExpressionLike, schema: pa.Schema) -> bool:
    """Whether ``expr`` runs on the fused native evaluator for ``schema`` (False without the
    native core). A diagnostic: every expression works either way."""
    core = _native.get_core()
    e = _expression(expr, "expression")
    serialized = _serialize_all([e])
    if core is None or serialized is None:
        return False
    return bool(core.columnar_is_fused(schema, serialized[0]))


def kernel_isa() -> str | None:
    """Which compiled copy of the fused kernels this CPU runs ("avx2" or "generic"), or None
    without the native core."""
    core = _native.get_core()
    return None if core is None else str(core.columnar_kernel_isa())


# --------------------------------------------------------------------------------------------
# argument handling
# --------------------------------------------------------------------------------------------


def _as_table(data: Any) -> pa.Table:
    """The input as a pa.Table, without copying its buffers."""
    if isinstance(data, pa.Table):
        return data
    if isinstance(data, pa.RecordBatch):
        return pa.Table.from_batches([data])
    if isinstance(data, pa.ChunkedArray):
        return pa.table({VALUE_COLUMN: data})
    if isinstance(data, pa.Array):
        return pa.table({VALUE_COLUMN: data})
    if isinstance(data, pa.RecordBatchReader):
        return data.read_all()
    if hasattr(data, "__arrow_c_stream__"):
        try:
            return pa.table(data)
        except (TypeError, ValueError, pa.ArrowException):
            return pa.table({VALUE_COLUMN: pa.chunked_array(data)})
    raise ArrowInputError(
        f"unsupported input {type(data).__name__}: expected a pyarrow Table, RecordBatch, "
        "RecordBatchReader, Array, ChunkedArray or an object with __arrow_c_stream__"
    )


def _check_name(name: Any, what: str) -> str:
    if not isinstance(name, str) or not name:
        raise ArrowInputError(f"{what} names must be non-empty strings, got {name!r}")
    return name


def _expression(e: Any, what: str) -> pc.Expression:
    if isinstance(e, pc.Expression):
        return e
    if isinstance(e, str):
        return pc.field(e)
    raise ArrowInputError(
        f"{what}: expected a pyarrow.compute.Expression (e.g. pc.field('b') * 2) or a column name, "
        f"got {type(e).__name__} {e!r}"
    )


def _predicate(where: Any) -> pc.Expression | None:
    if where is None:
        return None
    if not isinstance(where, pc.Expression):
        raise ArrowInputError(
            f"where/predicate: expected a boolean pyarrow.compute.Expression, got {type(where).__name__} {where!r}"
        )
    return where


def _aggregation_specs(aggregations: Any) -> list[tuple[str, str, pc.Expression | None]]:
    if not isinstance(aggregations, Mapping) or not aggregations:
        raise ArrowInputError(
            "aggregations must be a non-empty mapping of output name to (function, expression), "
            f"e.g. {{'total': ('sum', pc.field('b'))}}, got {aggregations!r}"
        )
    specs = []
    for name, spec in aggregations.items():
        _check_name(name, "aggregation")
        if isinstance(spec, str):
            func, value = spec, None
        elif isinstance(spec, tuple) and len(spec) == 2 and isinstance(spec[0], str):
            func, value = spec
        else:
            raise ArrowInputError(
                f"aggregation {name!r}: expected (function, expression), got {spec!r}; "
                f"functions: {', '.join(AGGREGATIONS)}"
            )
        if func not in AGGREGATIONS:
            raise ArrowInputError(
                f"aggregation {name!r}: unknown function {func!r}; accepted: {', '.join(AGGREGATIONS)}"
            )
        if func == "count_all":
            if value is not None:
                raise ArrowInputError(f"aggregation {name!r}: count_all counts rows and takes no expression")
            specs.append((name, func, None))
        else:
            if value is None:
                raise ArrowInputError(f"aggregation {name!r}: {func} needs an expression or column name")
            specs.append((name, func, _expression(value, f"aggregation {name!r}")))
    return specs


def _key_specs(by: Any) -> tuple[list[str], list[pc.Expression]]:
    if by is None:
        return [], []
    if isinstance(by, (str, pc.Expression)):
        by = [by]
    if isinstance(by, Mapping):
        items = [(_check_name(n, "key"), _expression(e, f"key {n!r}")) for n, e in by.items()]
    elif isinstance(by, Sequence):
        items = []
        for e in by:
            expr = _expression(e, "key")
            items.append((e if isinstance(e, str) else str(e), expr))
    else:
        raise ArrowInputError(
            f"by: expected a column name, an expression, a sequence of them or a mapping of name to "
            f"expression, got {type(by).__name__}"
        )
    if not items:
        return [], []
    names = [n for n, _ in items]
    return names, [e for _, e in items]


def _native_args(native: bool | None, threads: int | None, morsel_size_kb: int | None) -> tuple[Any, int, int]:
    """(core or None, threads for the core (0 = its global pool), morsel bytes)."""
    if threads is not None and (isinstance(threads, bool) or not isinstance(threads, int) or threads < 1):
        raise ArrowInputError(f"threads must be a positive integer or None, got {threads!r}")
    if morsel_size_kb is None:
        morsel_size_kb = DEFAULT_MORSEL_SIZE_KB
    if isinstance(morsel_size_kb, bool) or not isinstance(morsel_size_kb, int) or not 1 <= morsel_size_kb <= 1048576:
        raise ArrowInputError(f"morsel_size_kb must be an integer from 1 to 1048576, got {morsel_size_kb!r}")
    if native is False:
        return None, 0, morsel_size_kb * 1024
    core = _native.get_core()
    if core is None and native is True:
        raise NativeError(f"native=True but the native core is not in use: {_native.native_status()}")
    return core, threads or 0, morsel_size_kb * 1024


def _serialize_all(exprs: list[pc.Expression]) -> list[bytes] | None:
    """Arrow's serialization of each expression (what Expression.__reduce__ pickles), or None
    when one cannot be serialized (positional field refs): those calls run on pyarrow."""
    out = []
    for e in exprs:
        try:
            _, (buffer,) = e.__reduce__()
        except pa.ArrowNotImplementedError:
            return None
        out.append(buffer.to_pybytes())
    return out


class _StreamCapsule:
    """Hands an ``arrow_array_stream`` capsule from the core to pyarrow (PyCapsule protocol)."""

    def __init__(self, capsule: Any) -> None:
        self._capsule = capsule

    def __arrow_c_stream__(self, requested_schema: Any = None) -> Any:
        return self._capsule


def _import_table(capsule: Any) -> pa.Table:
    return pa.RecordBatchReader.from_stream(_StreamCapsule(capsule)).read_all()


# --------------------------------------------------------------------------------------------
# pure-pyarrow fallback (same results)
# --------------------------------------------------------------------------------------------


def _acero_project(table: pa.Table, names: list[str], exprs: list[pc.Expression],
                   where: pc.Expression | None) -> pa.Table:
    from pyarrow import acero

    nodes = [acero.Declaration("table_source", acero.TableSourceNodeOptions(table))]
    if where is not None:
        nodes.append(acero.Declaration("filter", acero.FilterNodeOptions(where)))
    nodes.append(acero.Declaration("project", acero.ProjectNodeOptions(exprs, names)))
    # One thread keeps input order.
    return acero.Declaration.from_sequence(nodes).to_table(use_threads=False)


_UNKNOWN_FIELD = re.compile(r"No match for FieldRef\.Name\((?P<name>.*?)\) in ")


def _clarified(schema: pa.Schema, fn: Any, *args: Any) -> Any:
    """Run fn; an input error about an unknown column is restated with the columns that exist."""
    try:
        return fn(*args)
    except ArrowInputError as exc:
        match = _UNKNOWN_FIELD.search(str(exc))
        if match is None:
            raise
        columns = ", ".join(f"{f.name} ({f.type})" for f in schema)
        raise ArrowInputError(
            f"unknown column {match.group('name')!r}; the input has: {columns}"
        ) from exc


def _pyarrow_errors(fn: Any, *args: Any) -> Any:
    try:
        return fn(*args)
    except _PYARROW_INPUT_ERRORS as exc:
        raise ArrowInputError(str(exc)) from exc


def _fallback_project(table: pa.Table, names: list[str], exprs: list[pc.Expression],
                      where: pc.Expression | None) -> pa.Table:
    return _pyarrow_errors(_acero_project, table, names, exprs, where)


def _fallback_filter(table: pa.Table, predicate: pc.Expression) -> pa.Table:
    def run() -> pa.Table:
        names = table.column_names
        if len(set(names)) == len(names):
            return _acero_project(table, names, [pc.field(n) for n in names], predicate)
        return table.filter(predicate)

    return _pyarrow_errors(run)


_SCALAR_AGG = {
    "sum": pc.sum,
    "count": pc.count,
    "min": pc.min,
    "max": pc.max,
    "mean": pc.mean,
}


def _fallback_aggregate(table: pa.Table, specs: list[tuple[str, str, pc.Expression | None]],
                        key_names: list[str], keys: list[pc.Expression],
                        where: pc.Expression | None) -> pa.Table:
    def run() -> pa.Table:
        # Evaluate keys and values once (after the filter) into a scratch table.
        cols: list[str] = []
        exprs: list[pc.Expression] = []
        for i, k in enumerate(keys):
            cols.append(f"__k{i}")
            exprs.append(k)
        for i, (_, _, e) in enumerate(specs):
            if e is not None:
                cols.append(f"__v{i}")
                exprs.append(e)
        if exprs:
            scratch = _acero_project(table, cols, exprs, where)
        else:
            scratch = table.filter(where) if where is not None else table
        num_rows = scratch.num_rows
        if not keys:
            arrays = []
            for i, (name, func, _) in enumerate(specs):
                if func == "count_all":
                    arrays.append(pa.array([num_rows], pa.int64()))
                    continue
                s = _SCALAR_AGG[func](scratch.column(f"__v{i}"))
                arrays.append(pa.array([s.as_py()], type=s.type))
            return pa.Table.from_arrays(arrays, names=[name for name, _, _ in specs])
        key_cols = [f"__k{i}" for i in range(len(keys))]
        aggs: list[tuple[Any, str]] = [
            (f"__v{i}", func) for i, (_, func, _) in enumerate(specs) if func != "count_all"
        ]
        if any(func == "count_all" for _, func, _ in specs):
            aggs.append(([], "count_all"))  # once: several count_all outputs share it
        # Order groups by first appearance, as the native engine does.
        scratch = scratch.append_column("__row", pa.array(np.arange(num_rows, dtype=np.int64)))
        aggs.append(("__row", "min"))
        grouped = scratch.group_by(key_cols, use_threads=False).aggregate(aggs).sort_by("__row_min")
        out_cols = key_cols + [
            "count_all" if func == "count_all" else f"__v{i}_{func}" for i, (_, func, _) in enumerate(specs)
        ]
        result = grouped.select(out_cols)
        return result.rename_columns(key_names + [name for name, _, _ in specs])

    return _pyarrow_errors(run)


__all__ = [
    "AGGREGATIONS",
    "DEFAULT_MORSEL_SIZE_KB",
    "VALUE_COLUMN",
    "aggregate",
    "evaluate",
    "filter",
    "is_fused",
    "kernel_isa",
    "project",
]
