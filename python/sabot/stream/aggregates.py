"""Window aggregate functions as partial states that merge.

Each function is split into a partial step run on every batch (per key and pane) and a merge
step run when a window fires (per key and window): ``sum`` sums sums, ``count`` sums counts,
``mean`` keeps a sum and a count, ``min``/``max`` merge as themselves; these run on
:func:`sabot.columnar.aggregate` (the native grouped-aggregation kernels). ``first``/``last``
(the value of the earliest / latest event time, null values skipped) and ``count_distinct``
keep their own partials and run on pyarrow's grouped kernels.
"""

from __future__ import annotations

from dataclasses import dataclass

from ..errors import ConfigError

FUNCTIONS = ("sum", "count", "min", "max", "mean", "first", "last", "count_distinct")
#: Functions whose partials the native grouped aggregation computes.
NATIVE = ("sum", "count", "min", "max", "mean")


@dataclass(frozen=True)
class Agg:
    """One aggregate: a function and its column (None: ``count()`` counts events)."""

    func: str
    column: str | None

    def partials(self, name: str) -> list[tuple[str, str, str | None]]:
        """(partial column, columnar function, input column) for the native partial step."""
        c = self.column
        if self.func == "count":
            return [(f"{name}__n", "count_all" if c is None else "count", c)]
        if self.func == "mean":
            return [(f"{name}__s", "sum", c), (f"{name}__n", "count", c)]
        return [(f"{name}__{self.func}", self.func, c)]

    def merges(self, name: str) -> list[tuple[str, str]]:
        """(partial column, function merging it) for the native merge step."""
        if self.func in ("count",):
            return [(f"{name}__n", "sum")]
        if self.func == "mean":
            return [(f"{name}__s", "sum"), (f"{name}__n", "sum")]
        if self.func == "sum":
            return [(f"{name}__sum", "sum")]
        return [(f"{name}__{self.func}", self.func)]


def _agg(func: str, column: str | None) -> Agg:
    if column is not None and (not isinstance(column, str) or not column):
        raise ConfigError(f"{func}(column)", column, "a column name")
    return Agg(func, column)


def sum(column: str) -> Agg:
    """Sum of ``column`` (nulls skipped; null when the window has no value)."""
    return _agg("sum", column)


def min(column: str) -> Agg:
    return _agg("min", column)


def max(column: str) -> Agg:
    return _agg("max", column)


def mean(column: str) -> Agg:
    """Mean of ``column`` as a double (nulls skipped)."""
    return _agg("mean", column)


def first(column: str) -> Agg:
    """The value of ``column`` at the earliest event time of the window (ties: arrival order)."""
    return _agg("first", column)


def last(column: str) -> Agg:
    """The value of ``column`` at the latest event time of the window (ties: the last to arrive)."""
    return _agg("last", column)


def count_distinct(column: str) -> Agg:
    """The number of distinct non-null values of ``column``."""
    return _agg("count_distinct", column)


def check_aggs(aggs: dict[str, object]) -> dict[str, Agg]:
    if not aggs:
        raise ConfigError("agg()", aggs, "at least one name=st.<function>(column), e.g. "
                          "n=st.count(), total=st.sum('price')")
    out = {}
    for name, a in aggs.items():
        if not isinstance(a, Agg):
            raise ConfigError(f"agg({name}=...)", a,
                              f"an aggregate: st.{', st.'.join(FUNCTIONS)} (e.g. st.sum('price'))")
        out[name] = a
    return out


def count(arg: str | int | None = None) -> Agg | object:
    """``count()`` counts events, ``count(column)`` non-null values of a column; ``count(n)``
    with an integer is the count window of ``n`` events (``window(st.count(100))``)."""
    if isinstance(arg, int) and not isinstance(arg, bool):
        from .windows import count_window

        return count_window(arg)
    return _agg("count", arg)
