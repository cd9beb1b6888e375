"""The fluent API: DataStream, KeyedStream, WindowedStream and the windowed aggregation's result.

Every method returns a new stream (a node of the lazy graph) except the sinks, which register
an end of the graph with the environment (``env.execute`` runs them) or, for ``collect()``, run
the job at once.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import pyarrow as pa
import pyarrow.compute as pc

from ..errors import ConfigError
from .aggregates import Agg, check_aggs
from .durations import DurationLike, to_ms
from .graph import Node
from .windows import CountWindows, SessionWindows, TimeWindows, WindowSpec

if TYPE_CHECKING:
    from .env import StreamEnv

EMIT_MODES = ("final", "update")


class DataStream:
    """A stream of Arrow record batches with event times."""

    def __init__(self, env: StreamEnv, node: Node, time_column: str | None,
                 time_unit: str = "ms") -> None:
        self.env = env
        self.node = node
        self.time_column = time_column
        self.time_unit = time_unit

    def _derive(self, kind: str, make: Callable[[Any], Any], name: str | None = None,
                inputs: list[tuple[Node, str | None]] | None = None,
                time_column: str | None | bool = True,
                partition: list[list[str] | None] | None = None) -> DataStream:
        label = name or self.env.next_name(kind)
        node = Node(label, lambda ctx, _m=make, _l=label: _m(_l), inputs or [(self.node, None)],
                    partition=partition)
        tc = self.time_column if time_column is True else time_column
        return DataStream(self.env, node, tc or None, self.time_unit)

    # -- stateless ------------------------------------------------------------------------------
    def filter(self, predicate: pc.Expression, *, name: str | None = None) -> DataStream:
        """Rows where the pyarrow compute expression is true (native, no Python per row)."""
        from .stateless import Filter

        if not isinstance(predicate, pc.Expression):
            raise ConfigError("filter(predicate)", predicate,
                              "a pyarrow.compute.Expression, e.g. pc.field('price') > 100")
        threads = self.env.threads
        return self._derive("filter", lambda n: Filter(n, predicate, threads), name)

    def select(self, *columns: str, name: str | None = None, **exprs: Any) -> DataStream:
        """Keep ``columns`` and add ``name=expression`` columns (pyarrow compute expressions)."""
        from .stateless import Select

        spec: dict[str, Any] = {}
        for c in columns:
            if not isinstance(c, str):
                raise ConfigError("select(*columns)", c, "column names (str)")
            spec[c] = pc.field(c)
        for k, e in exprs.items():
            if not isinstance(e, (pc.Expression, str)):
                raise ConfigError(f"select({k}=...)", e, "a pyarrow.compute.Expression or a column name")
            spec[k] = e
        if not spec:
            raise ConfigError("select()", "nothing", "at least one column or name=expression")
        threads = self.env.threads
        keeps_time = self.time_column in spec if self.time_column else False
        return self._derive("select", lambda n: Select(n, spec, threads), name,
                            time_column=self.time_column if keeps_time else None)

    def map(self, fn: Callable[[pa.RecordBatch], Any], *, name: str | None = None) -> DataStream:
        """``fn(batch) -> RecordBatch | Table``, called once per batch."""
        return self._udf(fn, False, name)

    def flat_map(self, fn: Callable[[pa.RecordBatch], Any], *, name: str | None = None) -> DataStream:
        """``fn(batch)`` returning any number of rows: a batch, a table, a list of dicts, an
        iterable of batches, or None."""
        return self._udf(fn, True, name)

    def _udf(self, fn: Callable[..., Any], flat: bool, name: str | None) -> DataStream:
        from .stateless import BatchUDF

        if not callable(fn):
            raise ConfigError("map(fn)" if not flat else "flat_map(fn)", fn,
                              "a function of a pyarrow RecordBatch")
        tc, unit = self.time_column, self.time_unit
        kind = "flat_map" if flat else "map"
        return self._derive(kind, lambda n: BatchUDF(n, fn, flat, tc, unit),
                            name or self.env.next_name(f"{kind}({getattr(fn, '__name__', 'fn')})"))

    def union(self, *others: DataStream) -> DataStream:
        """This stream and ``others`` as one (watermark: the minimum of theirs)."""
        from .stateless import Union

        for o in others:
            if not isinstance(o, DataStream) or o.env is not self.env:
                raise ConfigError("union(*others)", o, "streams of the same StreamEnv")
        inputs = [(self.node, None)] + [(o.node, None) for o in others]
        k = len(inputs)
        return self._derive("union", lambda n: Union(n, k), inputs=inputs)

    # -- keyed and windowed ---------------------------------------------------------------------
    def key_by(self, *columns: str) -> KeyedStream:
        if not columns or not all(isinstance(c, str) and c for c in columns):
            raise ConfigError("key_by(*columns)", columns, "one or more column names")
        return KeyedStream(self, list(columns))

    def window(self, spec: WindowSpec, *, allowed_lateness: DurationLike = 0) -> WindowedStream:
        """A window over the whole stream (no key)."""
        return WindowedStream(self, [], spec, allowed_lateness)

    def interval_join(self, other: DataStream, *, on: Any, lower: DurationLike | None,
                      upper: DurationLike | None, name: str | None = None) -> DataStream:
        """Pairs with equal keys whose times satisfy
        ``self.time + lower <= other.time <= self.time + upper``; ``lower=None, upper=None``
        is a regular (unbounded) join."""
        from .interval_join import IntervalJoin, join_keys

        left_on, right_on = join_keys(on)
        lo = None if lower is None else to_ms(lower, "interval_join(lower)", allow_negative=True)
        hi = None if upper is None else to_ms(upper, "interval_join(upper)", allow_negative=True)
        if lo is not None and hi is not None and lo > hi:
            raise ConfigError("interval_join(lower, upper)", (lower, upper), "lower <= upper")
        return self._derive(
            "interval_join", lambda n: IntervalJoin(n, left_on, right_on, lo, hi), name,
            inputs=[(self.node, None), (other.node, None)], time_column=None,
            partition=[left_on, right_on])

    def window_join(self, other: DataStream, *, on: Any, window: TimeWindows,
                    name: str | None = None) -> DataStream:
        """Pairs with equal keys in the same window; emitted when the window closes, with
        ``window_start`` and ``window_end``."""
        from .interval_join import join_keys
        from .window_join import WindowJoin

        if not isinstance(window, TimeWindows):
            raise ConfigError("window_join(window)", window, "st.tumbling(...) or st.sliding(...)")
        left_on, right_on = join_keys(on)
        return self._derive("window_join", lambda n: WindowJoin(n, left_on, right_on, window), name,
                            inputs=[(self.node, None), (other.node, None)], time_column=None,
                            partition=[left_on, right_on])

    def lookup_join(self, table: Any, *, on: Any, how: str = "left",
                    name: str | None = None) -> DataStream:
        """Join each batch with a static table (a pyarrow Table or anything pa.table takes),
        or with the latest row per key of a changelog stream (a DataStream)."""
        from .interval_join import join_keys
        from .lookup_join import HOWS, LookupJoin

        if how not in HOWS:
            raise ConfigError("lookup_join(how)", how, " or ".join(HOWS))
        left_on, right_on = join_keys(on)
        if isinstance(table, DataStream):
            return self._derive("lookup_join", lambda n: LookupJoin(n, left_on, right_on, how, None),
                                name, inputs=[(self.node, None), (table.node, None)],
                                partition=[left_on, right_on])
        try:
            static = table if isinstance(table, pa.Table) else pa.table(table)
        except (TypeError, ValueError, pa.ArrowInvalid) as exc:
            raise ConfigError("lookup_join(table)", type(table).__name__,
                              "a pyarrow Table (or what pa.table accepts) or a DataStream") from exc
        return self._derive("lookup_join", lambda n: LookupJoin(n, left_on, right_on, how, static),
                            name)

    # -- side outputs ---------------------------------------------------------------------------
    def dead_letters(self) -> DataStream:
        """The records this source could not use (columns source, record, reason), when it was
        made with ``bad_records="dead_letter"``."""
        if getattr(self.node, "is_source", False) is not True:
            raise ConfigError("dead_letters()", self.node.name, "a stream made by an env.from_* source")
        node = Node(self.env.next_name("dead_letters"), lambda ctx: _pass("dead_letters"),
                    [(self.node, "dead_letter")])
        return DataStream(self.env, node, None)

    # -- sinks ----------------------------------------------------------------------------------
    def _sink(self, kind: str, make: Callable[[str], Any]) -> Node:
        label = self.env.next_name(kind)
        node = Node(label, lambda ctx: make(label), [(self.node, None)])
        self.env.add_sink(node)
        return node

    def to_callable(self, fn: Callable[[pa.RecordBatch], Any]) -> None:
        """Call ``fn(batch)`` with every output batch."""
        from .sinks import CallableSink

        if not callable(fn):
            raise ConfigError("to_callable(fn)", fn, "a function of a pyarrow RecordBatch")
        self._sink("to_callable", lambda n: CallableSink(n, fn))

    def print(self) -> None:
        """Print every output row (as a dict) on stdout."""
        from .sinks import PrintSink

        self._sink("print", lambda n: PrintSink(n))

    def discard(self) -> None:
        """Run the pipeline and drop its output (benchmarks)."""
        from .sinks import DiscardSink

        self._sink("discard", lambda n: DiscardSink(n))

    def to_files(self, directory: str, *, format: str = "parquet",
                 roll_every: int | DurationLike | None = None) -> None:
        """Write output files into ``directory`` (see :mod:`.file_sink`)."""
        from .file_sink import FileSink, check_args

        fmt, roll_rows, roll_ms = check_args(format, roll_every)
        # (as this process sees it: also on a cluster)
        where = os.path.abspath(directory) if isinstance(directory, (str, os.PathLike)) \
            else directory
        self._sink("to_files", lambda n: FileSink(n, where, fmt, roll_rows, roll_ms))

    def to_kafka(self, topic: str, *, bootstrap_servers: str, key: str | None = None,
                 format: str = "json", exactly_once: bool = False,
                 transactional_id: str | None = None, config: dict[str, Any] | None = None) -> None:
        """Write rows as messages of the Kafka ``topic`` (see :mod:`.to_kafka`): at least once,
        or with ``exactly_once=True`` in transactions committed with each checkpoint (needs
        ``StreamEnv(state_dir=...)``). ``key`` names the column used as the message key."""
        from ..connectors import KafkaBatchSink
        from .to_kafka import KafkaSink

        if exactly_once is True and self.env.checkpoint is None:
            raise ConfigError("to_kafka(exactly_once)", True,
                              "exactly_once=True on a StreamEnv with checkpoints "
                              "(StreamEnv(state_dir=..., checkpoint_interval=...)): its "
                              "transactions commit with them")
        options = {"bootstrap_servers": bootstrap_servers, "key": key, "format": format,
                   "exactly_once": exactly_once, "transactional_id": transactional_id,
                   "config": config}
        # check every option now, not when the job starts
        KafkaBatchSink(topic, **dict(options, transactional_id=transactional_id or (
            "sabot-check" if exactly_once is True else None)))
        self._sink("to_kafka", lambda n: KafkaSink(n, topic, options))

    def collect(self) -> Any:
        """A bounded stream: run the job and return its output as a pyarrow Table. An unbounded
        one: an async iterator of output batches (the job runs while you iterate)."""
        if self.node.bounded:
            return self.env.run_collect(self.node)
        return self.env.iterate(self.node)

    async def collect_async(self) -> pa.Table:
        """``collect()`` of a bounded stream, awaited inside a running event loop."""
        return await self.env.run_collect_async(self.node)


def _pass(name: str) -> Any:
    from .stateless import Union

    return Union(name, 1)


class KeyedStream:
    """A stream partitioned by key columns: windows, per-key state and timers."""

    def __init__(self, stream: DataStream, keys: list[str]) -> None:
        self.stream = stream
        self.keys = keys

    def window(self, spec: WindowSpec, *, allowed_lateness: DurationLike = 0) -> WindowedStream:
        return WindowedStream(self.stream, self.keys, spec, allowed_lateness)

    def process(self, fn: Any, *, state: dict[str, Any] | None = None,
                on_timer: Callable[..., Any] | None = None, name: str | None = None) -> DataStream:
        """Call ``fn(key, batch, ctx)`` once per key and batch, with per-key state
        (``ctx.state(name)``) and timers (``ctx.timers``); ``on_timer(key, timestamp, ctx)``
        runs when a timer fires. Either may return rows (a batch, table or list of dicts)."""
        from .keyed_process import KeyedProcess, check_state

        if not callable(fn) and not hasattr(fn, "process"):
            raise ConfigError("process(fn)", fn, "a function of (key, batch, ctx) or an object "
                              "with process(key, batch, ctx) and on_timer(key, timestamp, ctx)")
        descriptors = check_state(state or {})
        s = self.stream
        keys, tc, unit = self.keys, s.time_column, s.time_unit
        label = name or s.env.next_name(f"process({getattr(fn, '__name__', type(fn).__name__)})")
        return s._derive("process", lambda n: KeyedProcess(n, keys, fn, on_timer, descriptors, tc, unit),
                         label, time_column=tc, partition=[list(keys)])

    # Operators that do not need the key pass through to the stream.
    def __getattr__(self, item: str) -> Any:
        if item in ("filter", "select", "map", "flat_map"):
            def keyed(*args: Any, **kwargs: Any) -> KeyedStream:
                return KeyedStream(getattr(self.stream, item)(*args, **kwargs), self.keys)
            return keyed
        raise AttributeError(item)


class WindowedStream:
    def __init__(self, stream: DataStream, keys: list[str], spec: WindowSpec,
                 allowed_lateness: DurationLike) -> None:
        if not isinstance(spec, (TimeWindows, SessionWindows, CountWindows)):
            raise ConfigError("window(spec)", spec, "st.tumbling(size), st.sliding(size, slide), "
                              "st.session(gap) or st.count(n)")
        self.stream = stream
        self.keys = keys
        self.spec = spec
        self.lateness = to_ms(allowed_lateness, "allowed_lateness", allow_zero=True)

    def agg(self, **aggs: Agg) -> WindowResult:
        """Aggregates per key and window: output rows carry the key columns, ``window_start``,
        ``window_end`` and one column per aggregate."""
        checked = check_aggs(aggs)
        return WindowResult(self, checked)

    def reduce(self, fn: Callable[[pa.RecordBatch], Any]) -> WindowResult:
        """Fold each key's rows of each window with ``fn(batch) -> row`` (a dict or a one-row
        batch with the same columns), which must be associative (see :mod:`.window_reduce`).
        Output rows: the reduced row, ``window_start`` and ``window_end``. Every kind of window
        (see :mod:`.window_reduce`, :mod:`.session_reduce`, :mod:`.count_reduce`)."""
        if not callable(fn):
            raise ConfigError("reduce(fn)", fn, "a function of a RecordBatch returning one row")
        return WindowResult(self, {}, reducer=fn)


class WindowResult(DataStream):
    """The output of ``window(...).agg(...)`` or ``.reduce(fn)``; ``emit()`` and ``late()``
    refine it."""

    def __init__(self, windowed: WindowedStream, aggs: dict[str, Agg],
                 reducer: Callable[[pa.RecordBatch], Any] | None = None) -> None:
        s = windowed.stream
        self._w = windowed
        self._aggs = aggs
        self._reducer = reducer
        self._mode = "final"
        label = s.env.next_name(f"window({windowed.spec.kind}){'.reduce' if reducer else ''}")
        node = Node(label, lambda ctx: self._make(label), [(s.node, None)],
                    partition=[list(windowed.keys)])
        super().__init__(s.env, node, "window_end", "ms")
        self._late: DataStream | None = None

    def _make(self, label: str) -> Any:
        w = self._w
        threads = self.env.threads
        if self._reducer is not None:
            return self._make_reduce(label)
        if isinstance(w.spec, TimeWindows):
            from .window_aggregate import WindowAggregate

            return WindowAggregate(label, w.keys, w.spec, self._aggs, w.lateness, self._mode, threads)
        if isinstance(w.spec, SessionWindows):
            from .session_aggregate import SessionAggregate

            return SessionAggregate(label, w.keys, w.spec, self._aggs, w.lateness, self._mode, threads)
        from .count_aggregate import CountAggregate

        return CountAggregate(label, w.keys, w.spec, self._aggs, self._mode, threads)

    def _make_reduce(self, label: str) -> Any:
        w, fn = self._w, self._reducer
        assert fn is not None
        if isinstance(w.spec, TimeWindows):
            from .window_reduce import WindowReduce

            return WindowReduce(label, w.keys, w.spec, fn, w.lateness, self._mode)
        if isinstance(w.spec, SessionWindows):
            from .session_reduce import SessionReduce

            return SessionReduce(label, w.keys, w.spec.gap, fn, w.lateness, self._mode)
        from .count_reduce import CountReduce

        return CountReduce(label, w.keys, w.spec.n, fn, self._mode)

    def emit(self, mode: str) -> WindowResult:
        """``"final"``: one row per key and window when the watermark passes its end (again
        for late updates within the allowed lateness); ``"update"``: after every batch, the
        current row of each window the batch changed."""
        if mode not in EMIT_MODES:
            raise ConfigError("emit(mode)", mode, " or ".join(EMIT_MODES))
        self._mode = mode
        return self

    def late(self) -> DataStream:
        """The events that arrived after their windows closed (allowed lateness included)."""
        if self._late is None:
            node = Node(self.env.next_name("late"), lambda ctx: _pass("late"), [(self.node, "late")])
            self._late = DataStream(self.env, node, self._w.stream.time_column, self._w.stream.time_unit)
        return self._late


__all__ = ["EMIT_MODES", "DataStream", "KeyedStream", "WindowResult", "WindowedStream"]
