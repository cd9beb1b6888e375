"""Streaming dataflow on Arrow batches: event time, watermarks, keyed windows, state, joins.

::

    import pyarrow.compute as pc
    from sabot import stream as st

    env = st.StreamEnv(parallelism=2)
    bids = env.from_collection(rows, timestamp="date_time",
                               watermark=st.bounded_out_of_orderness("5s"))
    hot = (bids.filter(pc.field("price") > 100)
               .key_by("auction")
               .window(st.sliding("10s", slide="2s"))
               .agg(bids=st.count(), max_price=st.max("price")))
    table = hot.collect()

See docs/streaming.md.
"""

from __future__ import annotations

from .aggregates import Agg, count, count_distinct, first, last, max, mean, min, sum
from .durations import MAX_TIME, MIN_TIME
from .env import JobResult, StreamEnv
from .registry import pipeline
from .state import ListState, MapState, ValueState
from .stream import DataStream, KeyedStream, WindowedStream, WindowResult
from .watermarks import WatermarkStrategy, bounded_out_of_orderness, monotonous
from .windows import count_window, session, sliding, tumbling

__all__ = [
    "MAX_TIME",
    "MIN_TIME",
    "Agg",
    "DataStream",
    "JobResult",
    "KeyedStream",
    "ListState",
    "MapState",
    "StreamEnv",
    "pipeline",
    "ValueState",
    "WatermarkStrategy",
    "WindowResult",
    "WindowedStream",
    "bounded_out_of_orderness",
    "count",
    "count_distinct",
    "count_window",
    "first",
    "last",
    "max",
    "mean",
    "min",
    "monotonous",
    "session",
    "sliding",
    "sum",
    "tumbling",
]
