"""Partial aggregate states of one windowed aggregation, per (key, pane).

The states are Arrow tables, one per aggregated batch, kept in three families: the native one
(sum/count/min/max/mean and a hidden event count, on :func:`sabot.columnar.aggregate`), one per
``first``/``last`` and one per ``count_distinct`` (pyarrow grouped kernels). Tables are merged
(compacted) once there are many, so the state grows with the number of live (key, pane) pairs,
not with the stream.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from .. import columnar
from .aggregates import NATIVE, Agg

if TYPE_CHECKING:
    from .rescale import Ownership

#: Hidden per-(key, pane) event count: every group exists in the native family.
COUNT = "__events"
TMIN = "__tmin"
TMAX = "__tmax"
PANE = "__pane"
TS = "__ts"
GROUP = "__group"
COMPACT_AFTER = 16


@dataclass
class _Family:
    kind: str  # "native", "first", "last", "distinct"
    name: str  # the aggregate's output name ("" for native)
    column: str | None
    tables: list[pa.Table] = field(default_factory=list)
    pane_range: list[tuple[int, int]] = field(default_factory=list)


class Partials:
    """Partial states of the aggregates ``aggs`` grouped by ``keys`` and a pane column."""

    def __init__(self, keys: list[str], aggs: dict[str, Agg], threads: int | None) -> None:
        self.keys = keys
        self.aggs = aggs
        self.threads = threads
        self.families = [_Family("native", "", None)]
        for name, a in aggs.items():
            if a.func in ("first", "last"):
                self.families.append(_Family(a.func, name, a.column))
            elif a.func == "count_distinct":
                self.families.append(_Family("distinct", name, a.column))

    # -- building partials ---------------------------------------------------------------------
    def _native_specs(self, merge: bool) -> dict[str, object]:
        specs: dict[str, object] = {COUNT: ("sum", COUNT) if merge else "count_all",
                                    TMIN: ("min", TMIN if merge else TS),
                                    TMAX: ("max", TMAX if merge else TS)}
        for name, a in self.aggs.items():
            if a.func not in NATIVE:
                continue
            if merge:
                for pcol, func in a.merges(name):
                    specs[pcol] = (func, pcol)
            else:
                for pcol, func, col in a.partials(name):
                    specs[pcol] = func if col is None else (func, col)
        return specs

    def _partial(self, fam: _Family, t: pa.Table, group: str) -> pa.Table:
        by = self.keys + [group]
        if fam.kind == "native":
            return columnar.aggregate(t, self._native_specs(False), by=by, threads=self.threads)
        col = fam.column
        if fam.kind == "distinct":
            d = t.select(by + [col]).group_by(by + [col], use_threads=False).aggregate([])
            return d.rename_columns(by + [f"{fam.name}__v"])
        t = t.select(by + [TS, col]).filter(pc.is_valid(t.column(col)))
        return _first_last(t, by, TS, col, fam.kind, fam.name)

    def _merge(self, fam: _Family, t: pa.Table, group: str, final: bool) -> pa.Table:
        by = self.keys + [group]
        if fam.kind == "native":
            return columnar.aggregate(t, self._native_specs(True), by=by, threads=self.threads)
        v = f"{fam.name}__v"
        if fam.kind == "distinct":
            if final:
                out = t.group_by(by, use_threads=False).aggregate([(v, "count_distinct")])
                return out.rename_columns(by + [v])
            d = t.group_by(by + [v], use_threads=False).aggregate([])
            return d.rename_columns(by + [v])
        return _first_last(t, by, f"{fam.name}__ts", v, fam.kind, fam.name)

    def add(self, t: pa.Table) -> None:
        """Aggregate one batch (keys, values, PANE, TS columns) into partial states."""
        if t.num_rows == 0:
            return
        panes = t.column(PANE)
        rng = (pc.min(panes).as_py(), pc.max(panes).as_py())
        for fam in self.families:
            fam.tables.append(self._partial(fam, t, PANE))
            fam.pane_range.append(rng)
            if len(fam.tables) > COMPACT_AFTER:
                self._compact(fam)

    def _compact(self, fam: _Family) -> None:
        merged = self._merge(fam, pa.concat_tables(fam.tables), PANE, final=False)
        lo = min(r[0] for r in fam.pane_range)
        hi = max(r[1] for r in fam.pane_range)
        fam.tables, fam.pane_range = [merged], [(lo, hi)]

    def rescaled(self, parts: list[Partials], own: Ownership) -> Partials:
        """A Partials like this one holding the rows of ``parts`` whose keys ``own`` owns."""
        out = Partials(self.keys, self.aggs, self.threads)
        for i, fam in enumerate(out.families):
            for part in parts:
                src = part.families[i]
                for t, rng in zip(src.tables, src.pane_range):
                    kept = own.keep_rows(t, self.keys)
                    if kept is not None and kept.num_rows:
                        fam.tables.append(kept)
                        fam.pane_range.append(rng)
        return out

    # -- reading and purging -------------------------------------------------------------------
    def purge(self, pane_dead: callable) -> None:
        """Drop the partial rows of panes for which ``pane_dead(pane_array)`` is true."""
        for fam in self.families:
            tables, ranges = [], []
            for t, (lo, hi) in zip(fam.tables, fam.pane_range):
                if pane_dead(np.array([hi]))[0]:
                    continue
                if pane_dead(np.array([lo]))[0]:
                    panes = np.asarray(t.column(PANE).to_numpy())
                    t = t.filter(pa.array(~pane_dead(panes)))
                    if t.num_rows == 0:
                        continue
                    lo = int(pc.min(t.column(PANE)).as_py())
                tables.append(t)
                ranges.append((lo, hi))
            fam.tables, fam.pane_range = tables, ranges

    def drop(self, groups: pa.Table) -> None:
        """Drop the partial rows of the (keys, PANE) pairs in ``groups``."""
        for fam in self.families:
            fam.tables = [t.join(groups, self.keys + [PANE], join_type="left anti")
                          for t in fam.tables]
            keep = [i for i, t in enumerate(fam.tables) if t.num_rows]
            fam.tables = [fam.tables[i] for i in keep]
            fam.pane_range = [fam.pane_range[i] for i in keep]

    def native_table(self) -> pa.Table | None:
        """Every native partial row (keys, PANE, counts and times), or None."""
        tables = self.families[0].tables
        if not tables:
            return None
        return pa.concat_tables(tables) if len(tables) > 1 else tables[0]

    def is_empty(self) -> bool:
        return not self.families[0].tables

    def pane_bounds(self) -> tuple[int, int] | None:
        r = self.families[0].pane_range
        if not r:
            return None
        return min(x[0] for x in r), max(x[1] for x in r)

    def results(self, expand: callable, keys_filter: pa.Table | None = None) -> pa.Table | None:
        """Merged aggregates per (keys, GROUP). ``expand(table)`` maps each partial row to the
        groups (windows) it belongs to and returns the table with a GROUP column, or None.
        ``keys_filter`` restricts to those keys."""
        out: pa.Table | None = None
        for fam in self.families:
            if not fam.tables:
                return None
            t = pa.concat_tables(fam.tables) if len(fam.tables) > 1 else fam.tables[0]
            if keys_filter is not None and self.keys:
                t = t.join(keys_filter, self.keys, join_type="left semi")
            t = expand(t)
            if t is None or t.num_rows == 0:
                return None
            merged = self._merge(fam, t.drop_columns([PANE]), GROUP, final=True)
            if out is None:
                out = merged
            else:
                out = out.join(merged, self.keys + [GROUP], join_type="left outer")
        return out

    def finalize(self, merged: pa.Table) -> dict[str, pa.ChunkedArray]:
        """The user's aggregate columns from merged partials."""
        cols = {}
        for name, a in self.aggs.items():
            if a.func == "count":
                cols[name] = merged.column(f"{name}__n")
            elif a.func == "mean":
                s = pc.cast(merged.column(f"{name}__s"), pa.float64())
                n = merged.column(f"{name}__n")
                zero = pc.equal(n, 0)
                cols[name] = pc.if_else(zero, pa.scalar(None, pa.float64()),
                                        pc.divide(s, pc.cast(pc.max_element_wise(n, 1), pa.float64())))
            elif a.func in ("first", "last", "count_distinct"):
                col = merged.column(f"{name}__v")
                if a.func == "count_distinct":
                    col = pc.fill_null(col, 0)
                cols[name] = col
            else:
                cols[name] = merged.column(f"{name}__{a.func}")
        return cols


def _first_last(t: pa.Table, by: list[str], ts: str, value: str, kind: str, name: str) -> pa.Table:
    """Per group of ``by``: the earliest (first) / latest (last) ``ts`` and the value at it."""
    order = pc.sort_indices(t, [(ts, "ascending")])  # stable: ties keep arrival order
    t = t.take(order)
    ts_func = "min" if kind == "first" else "max"
    g = t.group_by(by, use_threads=False).aggregate([(ts, ts_func), (value, kind)])
    return g.rename_columns(by + [f"{name}__ts", f"{name}__v"]).select(
        by + [f"{name}__ts", f"{name}__v"])
