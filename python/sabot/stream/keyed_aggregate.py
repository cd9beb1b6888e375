"""Keyed aggregation over the whole stream (no windows): ``keyed_agg(stream.key_by(...), ...)``
and ``agg_until(stream.key_by(...), column, ...)``.

::

    from sabot.stream.keyed_aggregate import agg_until, keyed_agg

    winners = agg_until(pairs.key_by("id", "category"), "expires", final=st.max("price"))
    average = keyed_agg(winners.key_by("category"), avg_final=st.mean("final"))

The state is one Arrow table, one row per live key, holding each aggregate's partial state (the
same partials and merges as the windowed aggregation: sum, count, min, max, mean). A batch is
aggregated once per key (native grouped aggregation), concatenated with the state and merged
again: no Python runs per key or per event.

- ``keyed_agg``: an updating result. After every batch, the current row of each key the batch
  changed (its event time: the latest of the key's rows in that batch). The last row per key is
  the answer; the state keeps every key seen (as a SQL GROUP BY on a stream does), and each
  batch merges it whole: the cost of a batch grows with the keys.
- ``agg_until(column)``: each key's group closes at the largest value of ``column`` among its
  rows (an event time, e.g. an auction's expiry). When the watermark reaches it, the key's row is
  emitted once (its event time: that value) and its state dropped. A row that comes for a key
  after its group closed starts a new group, emitted at the next watermark. A group without any
  ``column`` value closes at the end of the input.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from .. import columnar
from ..errors import ConfigError
from .aggregates import NATIVE, Agg, check_aggs
from .chunk import Chunk, to_batch
from .durations import MAX_TIME
from .event_time import extract_ms
from .graph import Node
from .operator import Operator
from .partials import Partials
from .stream import DataStream, KeyedStream

TS = "__ts"
TMAX = "__tmax"  # the group's latest event time
UNTIL = "__until"  # the group's end (agg_until)
BATCH_TMAX = "__batch_tmax"  # the latest event time of the key in the current batch (null in the state)


def check_native(aggs: dict[str, Agg], keys: list[str], method: str) -> None:
    for name, a in aggs.items():
        if a.func not in NATIVE:
            raise ConfigError(f"{method}({name}=st.{a.func}(...))", a.func,
                              f"one of st.{', st.'.join(NATIVE)} (windows take the others)")
        if name in keys or name.startswith("__"):
            raise ConfigError(f"{method}({name}=...)", name,
                              "an output name that is not a key column and does not start with __")


class KeyedAggregate(Operator):
    state_attrs = ("groups",)

    def __init__(self, name: str, keys: list[str], aggs: dict[str, Agg], until: str | None,
                 time_unit: str, threads: int | None) -> None:
        super().__init__(name)
        self.keys = keys
        self.aggs = aggs
        self.until = until
        self.time_unit = time_unit
        self.threads = threads
        self.groups: pa.Table | None = None  # keys, partials, TMAX (, UNTIL)
        self.value_columns = sorted({a.column for a in aggs.values() if a.column is not None})
        self._partial_specs: dict[str, object] = {TMAX: ("max", TS)}
        self._merge_specs: dict[str, object] = {TMAX: ("max", TMAX)}
        if until is None:
            self._partial_specs[BATCH_TMAX] = ("max", TS)
            self._merge_specs[BATCH_TMAX] = ("max", BATCH_TMAX)
        for out, a in aggs.items():
            for pcol, func, col in a.partials(out):
                self._partial_specs[pcol] = func if col is None else (func, col)
            for pcol, func in a.merges(out):
                self._merge_specs[pcol] = (func, pcol)
        if until is not None:
            self._partial_specs[UNTIL] = ("max", UNTIL)
            self._merge_specs[UNTIL] = ("max", UNTIL)
        self._finalize = Partials(keys, aggs, threads).finalize

    # -- input ----------------------------------------------------------------------------------
    def process(self, chunk: Chunk, port: int) -> None:
        if chunk.num_rows == 0:
            return
        part = columnar.aggregate(self._table(chunk), self._partial_specs, by=self.keys,
                                  threads=self.threads)
        if self.groups is None or self.groups.num_rows == 0:
            merged = part
        else:
            state = self.groups
            if self.until is None:  # the state's rows are in no batch
                state = state.append_column(BATCH_TMAX, pa.nulls(state.num_rows, pa.int64()))
            both = pa.concat_tables([state, part.select(state.column_names)],
                                    promote_options="permissive")
            merged = columnar.aggregate(both, self._merge_specs, by=self.keys, threads=self.threads)
        if self.until is not None:
            self.groups = merged
            return
        # an updating result: the current rows of the keys this batch changed
        self.groups = merged.drop_columns([BATCH_TMAX])
        out = merged.filter(pc.is_valid(merged.column(BATCH_TMAX)))
        self._emit_rows(out, np.asarray(out.column(BATCH_TMAX).to_numpy(), dtype=np.int64))

    def _table(self, chunk: Chunk) -> pa.Table:
        batch = chunk.batch
        names = set(batch.schema.names)
        wanted = self.keys + self.value_columns + ([self.until] if self.until else [])
        missing = [c for c in wanted if c not in names]
        if missing:
            raise KeyError(f"{self.name}: column(s) {missing} not in the stream; it has "
                           f"{batch.schema.names}")
        cols = {c: batch.column(c) for c in self.keys + self.value_columns}
        cols[TS] = pa.array(chunk.ts, pa.int64())
        if self.until is not None:
            col = batch.column(self.until)
            if pa.types.is_null(col.type):  # no value in this batch
                cols[UNTIL] = pa.nulls(len(col), pa.int64())
            else:
                ms, bad = extract_ms(col, self.time_unit)
                cols[UNTIL] = pa.array(ms, pa.int64(), mask=bad)
        return pa.table(cols)

    # -- closing groups (agg_until) ---------------------------------------------------------------
    def on_watermark(self, watermark: int) -> None:
        if self.until is None or self.groups is None or self.groups.num_rows == 0:
            return
        end = pc.fill_null(self.groups.column(UNTIL), MAX_TIME)
        closed = np.asarray(pc.less_equal(end, watermark).to_numpy(zero_copy_only=False))
        if not closed.any():
            return
        mask = pa.array(closed)
        done = self.groups.filter(mask)
        self.groups = self.groups.filter(pc.invert(mask))
        until = done.column(UNTIL)
        ts = np.asarray(pc.if_else(pc.is_valid(until), until, done.column(TMAX)).to_numpy(),
                        dtype=np.int64)
        order = np.argsort(ts, kind="stable")
        self._emit_rows(done.take(pa.array(order)), ts[order])

    # -- output ---------------------------------------------------------------------------------
    def _emit_rows(self, merged: pa.Table, ts: np.ndarray) -> None:
        if merged.num_rows == 0:
            return
        cols: dict[str, object] = {k: merged.column(k) for k in self.keys}
        cols.update(self._finalize(merged))
        self.emit(Chunk(to_batch(pa.table(cols)), ts))

    def state_size(self) -> int:
        """Live keys (for tests and metrics)."""
        return 0 if self.groups is None else self.groups.num_rows


def keyed_agg(keyed: KeyedStream, *, name: str | None = None, **aggs: Agg) -> DataStream:
    """Aggregates per key over the whole stream, as an updating result: after every batch, the
    current row (the keys, one column per aggregate) of each key the batch changed."""
    return _derive(keyed, None, name, aggs, "keyed_agg")


def agg_until(keyed: KeyedStream, until: str, *, name: str | None = None,
              **aggs: Agg) -> DataStream:
    """Aggregates per key, each key's group ending at the event time in column ``until`` (the
    largest among its rows): one row per group (the keys, one column per aggregate) once the
    watermark reaches that time; then its state is dropped."""
    if not isinstance(until, str) or not until:
        raise ConfigError("agg_until(until)", until, "the name of a column of event times")
    return _derive(keyed, until, name, aggs, "agg_until")


def _derive(keyed: Any, until: str | None, name: str | None, aggs: dict[str, Agg],
            method: str) -> DataStream:
    if not isinstance(keyed, KeyedStream):
        raise ConfigError(f"{method}(keyed)", type(keyed).__name__, "a stream's key_by(...)")
    checked = check_aggs(aggs)
    check_native(checked, keyed.keys, method)
    s = keyed.stream
    keys, unit, threads = keyed.keys, s.time_unit, s.env.threads
    label = name or s.env.next_name(method)
    node = Node(label, lambda ctx: KeyedAggregate(label, keys, checked, until, unit, threads),
                [(s.node, None)], partition=[list(keys)])
    return DataStream(s.env, node, None, unit)


__all__ = ["KeyedAggregate", "agg_until", "check_native", "keyed_agg"]
