"""``KeyedStream.process``: a user function per key and batch, with keyed state and timers.

The batch is split by key with one stable sort (vectorized); the function then runs once per
key present in the batch (this is where Python runs per key, not per event) and once per
firing timer. Outputs without the stream's time column take the latest event time of the
key's rows (or the timer's time).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Hashable
from typing import Any

import numpy as np
import pyarrow as pa

from ..errors import CheckpointError, ConfigError, ProcessingError
from .chunk import Chunk
from .durations import MAX_TIME
from .event_time import extract_ms
from .key_ids import key_ids, key_tuples
from .operator import Operator
from .rescale import Ownership, merge_watermarks
from .state import HANDLES, ListState, MapState, StateDescriptor, StateStore, ValueState
from .stateless import as_batches
from .timers import Timers, TimerService


def check_state(state: dict[str, Any]) -> dict[str, StateDescriptor]:
    if not isinstance(state, dict):
        raise ConfigError("process(state=...)", state, "a dict of name -> st.ValueState() / "
                          "st.ListState() / st.MapState()")
    for name, d in state.items():
        if not isinstance(d, (ValueState, ListState, MapState)):
            raise ConfigError(f"process(state={{{name!r}: ...}})", d,
                              "st.ValueState(...), st.ListState(...) or st.MapState(...)")
    return dict(state)


class ProcessContext:
    """The ``ctx`` argument: the current key, its state and timers, the clocks."""

    def __init__(self, op: KeyedProcess) -> None:
        self._op = op
        self.key: Any = None
        self._hkey: Hashable = ()

    def state(self, name: str) -> Any:
        store = self._op.stores.get(name)
        if store is None:
            raise ConfigError("ctx.state(name)", name,
                              f"one of the declared states: {', '.join(self._op.stores) or '(none)'}")
        return HANDLES[store.desc.kind](store, self._hkey)

    @property
    def timers(self) -> Timers:
        return Timers(self._op.timers, self._hkey)

    @property
    def watermark(self) -> int:
        """The current watermark (epoch ms; very negative before the first)."""
        return self._op.watermark

    @property
    def processing_time(self) -> int:
        return int(time.time() * 1000)


class KeyedProcess(Operator):
    def __init__(self, name: str, keys: list[str], fn: Any, on_timer: Callable[..., Any] | None,
                 state: dict[str, StateDescriptor], time_column: str | None, time_unit: str) -> None:
        super().__init__(name)
        self.keys = keys
        if hasattr(fn, "process") and not callable(fn):
            self.fn = fn.process
            self.on_timer = getattr(fn, "on_timer", None)
        else:
            self.fn = fn
            self.on_timer = on_timer
        self.time_column = time_column
        self.time_unit = time_unit
        self.timers = TimerService()
        self.stores = {n: StateStore(n, d, self._clock) for n, d in state.items()}
        self.context = ProcessContext(self)
        self._last_sweep = 0

    def snapshot(self) -> dict[str, Any]:
        state = super().snapshot()
        state["timers"] = self.timers
        state["entries"] = {n: s.entries for n, s in self.stores.items()}
        state["last_sweep"] = self._last_sweep
        return state

    def rescale(self, parts: list[dict[str, Any]], own: Ownership) -> dict[str, Any]:
        width = len(self.keys)
        entries: dict[str, dict[Hashable, list[Any]]] = {n: {} for n in self.stores}
        for p in parts:
            for n, held in p["entries"].items():
                keys = list(held)
                mine = own.keys(keys, width)
                entries.setdefault(n, {}).update(
                    (k, held[k]) for k, keep in zip(keys, mine) if keep)
        timers = TimerService()
        for p in parts:
            found = p["timers"].entries()
            mine = own.keys([key for _kind, key, _ts in found], width)
            for (kind, key, ts), keep in zip(found, mine):
                if keep:
                    timers.add(kind, key, ts)
        return {"__watermarks": merge_watermarks(parts, 1, own), "timers": timers,
                "entries": entries, "last_sweep": max(p["last_sweep"] for p in parts)}

    def restore(self, state: dict[str, Any]) -> None:
        super().restore(state)
        self.timers = state["timers"]
        self._last_sweep = state["last_sweep"]
        missing = set(self.stores) ^ set(state["entries"])
        if missing:
            raise CheckpointError(f"operator {self.name!r}: the checkpoint's keyed states "
                                  f"{sorted(state['entries'])} differ from the declared "
                                  f"{sorted(self.stores)}")
        for n, entries in state["entries"].items():
            self.stores[n].entries = entries

    def _clock(self, kind: str) -> int:
        if kind == "processing":
            return int(time.time() * 1000)
        return max(self.watermark, 0) if self.watermark < MAX_TIME else MAX_TIME

    def _bind(self, key: tuple) -> None:
        self.context._hkey = key
        self.context.key = key[0] if len(key) == 1 else key

    def process(self, chunk: Chunk, port: int) -> None:
        table = pa.Table.from_batches([chunk.batch])
        ids = key_ids(table, self.keys)
        order = np.argsort(ids, kind="stable")
        sorted_ids = ids[order]
        bounds = np.r_[0, np.flatnonzero(np.diff(sorted_ids)) + 1, len(ids)]
        heads = order[bounds[:-1]]
        keys = key_tuples(table.take(pa.array(heads, pa.int64())), self.keys)
        outs: list[Chunk] = []
        for i, key in enumerate(keys):
            idx = order[bounds[i]:bounds[i + 1]]
            part = chunk.take(idx)
            self._bind(key)
            try:
                result = self.fn(self.context.key, part.batch, self.context)
            except Exception as exc:
                raise ProcessingError(
                    f"operator {self.name!r} failed for key {self.context.key!r} on "
                    f"{self.describe_input(part)}: {type(exc).__name__}: {exc}", original=exc) from exc
            outs.extend(self._chunks(result, int(part.ts.max())))
        self._emit_all(outs)

    def _chunks(self, result: Any, default_ts: int) -> list[Chunk]:
        try:
            batches = as_batches(result, f"operator {self.name!r}")
        except TypeError as exc:
            raise ProcessingError(str(exc)) from exc
        out = []
        for b in batches:
            ts = None
            if self.time_column is not None and self.time_column in b.schema.names:
                ts, bad = extract_ms(b.column(self.time_column), self.time_unit)
                if bad is not None:
                    ts = None
            if ts is None:
                ts = np.full(b.num_rows, default_ts, dtype=np.int64)
            out.append(Chunk(b, ts))
        return out

    def _emit_all(self, outs: list[Chunk]) -> None:
        if not outs:
            return
        if len(outs) == 1:
            self.emit(outs[0])
            return
        tables = [c.with_time() for c in outs if c.num_rows]
        if not tables:
            return
        merged = pa.concat_tables(tables, promote_options="permissive")
        self.emit(Chunk.from_table_with_time(merged))

    def _fire(self, due: list[tuple[Hashable, int]], kind: str) -> None:
        if not due or self.on_timer is None:
            return
        outs: list[Chunk] = []
        for key, ts in due:
            self._bind(key)  # type: ignore[arg-type]
            try:
                result = self.on_timer(self.context.key, ts, self.context)
            except Exception as exc:
                raise ProcessingError(
                    f"operator {self.name!r}: on_timer failed for key {self.context.key!r} at "
                    f"{kind} time {ts}: {type(exc).__name__}: {exc}", original=exc) from exc
            outs.extend(self._chunks(result, ts if kind == "event" else max(self.watermark, 0)))
        self._emit_all(outs)

    def on_watermark(self, watermark: int) -> None:
        self._fire(self.timers.due_event(watermark), "event")
        for s in self.stores.values():
            if s.desc.ttl_time == "event":
                s.sweep()

    def on_processing_time(self, now_ms: int) -> None:
        self._fire(self.timers.due_processing(now_ms), "processing")
        if now_ms - self._last_sweep > 1000:
            self._last_sweep = now_ms
            for s in self.stores.values():
                if s.desc.ttl_time == "processing":
                    s.sweep()

    def state_size(self) -> int:
        """Entries held across the declared states (for tests and metrics)."""
        return sum(len(s) for s in self.stores.values())


__all__ = ["KeyedProcess", "ProcessContext", "check_state"]
