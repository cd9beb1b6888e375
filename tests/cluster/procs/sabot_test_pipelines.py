"""Registered pipelines for the cluster tests (SABOT_PROCESSORS=sabot_test_pipelines)."""

from __future__ import annotations

from typing import Any

import pyarrow as pa
import pyarrow.compute as pc
from sabot import stream as st
from sabot.stream.nexmark.queries import QUERIES


@st.pipeline("nexmark")
def nexmark(env: Any, query: str = "q8", events: int = 50_000, rate: int | None = None) -> Any:
    return QUERIES[query](env.nexmark(events, rate=rate, batch_size=4096))


def _tag(batch: pa.RecordBatch) -> pa.RecordBatch:
    return batch.append_column("big", pc.greater(batch.column("price"), 1_000_000))


@st.pipeline("tagged-bids")
def tagged_bids(env: Any, events: int = 20_000) -> Any:
    # a function of this module runs on the workers: it must be importable there too
    return env.nexmark(events).bids.select("auction", "price").map(_tag)
