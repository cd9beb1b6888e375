"""The head of a pipeline: reads event times, routes bad records, tracks partition watermarks."""

from __future__ import annotations

import time
from typing import Any

import numpy as np
import pyarrow as pa

from ..errors import BadRecordError
from . import bad_records
from .bad_records import BadRecord
from .chunk import Chunk
from .durations import MAX_TIME
from .event_time import extract_ms
from .operator import Operator
from .rescale import Ownership, merge_watermarks
from .source import SEVERAL, Source
from .watermarks import PartitionWatermarks, WatermarkStrategy, monotonous


class SourceOperator(Operator):
    #: ``position`` is the source's position after the last item pushed (set by the job).
    state_attrs = ("position", "tracker", "_idle", "events")

    def __init__(self, name: str, source: Source, timestamp: str | None, timestamp_unit: str,
                 watermark: WatermarkStrategy | None, bad_policy: str) -> None:
        super().__init__(name, inputs=0)
        self.source = source
        self.timestamp = timestamp
        self.unit = timestamp_unit
        self.strategy = watermark or monotonous()
        self.bad_policy = bad_policy
        self.tracker = PartitionWatermarks(self.strategy, source.partitions)
        self._idle = False
        self.events = 0
        self.position: object = None
        #: On a cluster: this instance reads no partition of an unbounded source (it is idle).
        self.silent = False
        #: On a cluster: the partitions this instance's share of the source declared.
        self.owned: set[object] = set()

    def assign(self, instance: int, instances: int) -> None:
        """On a cluster, before :meth:`open`: read only ``instance``'s share of the partitions
        (see :meth:`Source.split`); its watermark is the minimum over those alone."""
        source, owned = self.source.split(instance, instances)
        self.source = source
        self.owned = set(owned)
        self.tracker = PartitionWatermarks(self.strategy, 0)
        for p in owned:
            self.tracker.touch(p)
        self.silent = not owned and not source.bounded and not getattr(source, "dynamic", False)

    def rescale(self, parts: list[dict[str, Any]], own: Ownership) -> dict[str, Any]:
        return {"__watermarks": merge_watermarks(parts, 0, own),
                "position": self.source.rescale_position([p["position"] for p in parts], own),
                "tracker": PartitionWatermarks.merged(
                    [p["tracker"] for p in parts],
                    # declared partitions as the split source says; others as they appeared
                    lambda p: p in self.owned or (p not in self._declared(parts)
                                                  and own.partition(p))),
                "_idle": False,
                "events": sum(p["events"] for p in parts) if own.instance == 0 else 0}

    @staticmethod
    def _declared(parts: list[dict[str, Any]]) -> set[object]:
        """(Partitions some old instance declared: Nexmark's 0 on every one of them.)"""
        return set().union(*(p.get("owned", set()) for p in parts))

    def snapshot(self) -> dict[str, Any]:
        state = super().snapshot()
        state["owned"] = set(self.owned)
        return state

    def restore(self, state: dict) -> None:
        super().restore(state)
        self.tracker.restart_clock()
        if self.position is not None:
            self.source.seek(self.position)

    def push(self, partition: object, payload: pa.RecordBatch | list[BadRecord],
             advance: bool = True) -> None:
        if partition is SEVERAL:
            for p, b in payload:  # type: ignore[misc]
                self.tracker.touch(p)
            for p, b in payload:  # type: ignore[misc]
                self.push(p, b, advance=False)
            self.advance()
            return
        if isinstance(payload, list):
            self._bad(payload)
            self.tracker.touch(partition)
            return
        batch = payload
        if batch.num_rows == 0:
            self.tracker.touch(partition)
            return
        if self.timestamp is None:
            ts = np.full(batch.num_rows, int(time.time() * 1000), dtype=np.int64)
        else:
            if self.timestamp not in batch.schema.names:
                cols = ", ".join(f"{f.name} ({f.type})" for f in batch.schema)
                self._bad([BadRecord(r, f"missing timestamp column {self.timestamp!r}")
                           for r in batch.slice(0, 1).to_pylist()], whole=batch, cols=cols)
                return
            try:
                ts, bad = extract_ms(batch.column(self.timestamp), self.unit)
            except (TypeError, pa.ArrowInvalid) as exc:
                raise BadRecordError(self.name, batch.slice(0, 1).to_pylist()[0], str(exc)) from exc
            if bad is not None:
                idx = np.flatnonzero(bad)
                rows = batch.take(pa.array(idx)).to_pylist()
                self._bad([BadRecord(r, f"timestamp column {self.timestamp!r} is null or not a "
                                        "time (ISO-8601, epoch number or Arrow timestamp)")
                           for r in rows])
                keep = np.flatnonzero(~bad)
                batch = batch.take(pa.array(keep, pa.int64()))
                ts = ts[keep]
                if batch.num_rows == 0:
                    self.tracker.touch(partition)
                    return
        self.events += batch.num_rows
        self.tracker.observe(partition, int(ts.max()))
        self.emit(Chunk(batch, ts))
        if advance:
            self.advance()

    def _bad(self, bad: list[BadRecord], whole: pa.RecordBatch | None = None,
             cols: str | None = None) -> None:
        if not bad:
            return
        if self.bad_policy == "fail":
            b = bad[0]
            reason = b.reason if cols is None else f"{b.reason}; the records have: {cols}"
            raise BadRecordError(self.name, b.record, reason)
        if whole is not None:
            bad = [BadRecord(r, bad[0].reason) for r in whole.to_pylist()]
        if self.ctx is not None:
            self.ctx.record_bad(self.name, len(bad))
        self.emit_side("dead_letter", Chunk(bad_records.to_batch(self.name, bad),
                                            np.full(len(bad), max(self.watermark, 0), dtype=np.int64)))

    def advance(self) -> None:
        """Recompute the merged watermark (after data, or on a tick for idleness)."""
        wm = None if self.silent or self.source.idle_share else self.tracker.current()
        if wm is None:
            if not self._idle:
                self._idle = True
                self.emit_idle(True)
            return
        if self._idle:
            self._idle = False
            self.emit_idle(False)
        if wm > self.watermark:
            self.watermark = wm
            self.emit_watermark(wm)

    def end(self) -> None:
        self.tracker.end_all()
        self._idle = False
        if self.watermark < MAX_TIME:
            self.watermark = MAX_TIME
            self.emit_watermark(MAX_TIME)

    def process(self, chunk: Chunk, port: int) -> None:  # pragma: no cover - no inputs
        raise RuntimeError("a source has no inputs")
