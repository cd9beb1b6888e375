"""Bad records: what a source could not use, with the reason, for the dead-letter output."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

import pyarrow as pa

#: Where a source sends bad records: "fail" (raise BadRecordError) or "dead_letter".
POLICIES = ("fail", "dead_letter")

#: The dead-letter stream's schema.
SCHEMA = pa.schema([("source", pa.string()), ("record", pa.string()), ("reason", pa.string())])


@dataclass(frozen=True)
class BadRecord:
    record: Any  # the record as read (a dict, a line of text, ...)
    reason: str


def record_text(record: Any) -> str:
    if isinstance(record, (bytes, bytearray)):
        return record.decode("utf-8", "replace")
    if isinstance(record, str):
        return record
    try:
        return json.dumps(record, default=str)
    except (TypeError, ValueError):
        return repr(record)


def to_batch(source: str, bad: list[BadRecord]) -> pa.RecordBatch:
    return pa.RecordBatch.from_arrays(
        [pa.array([source] * len(bad), pa.string()),
         pa.array([record_text(b.record) for b in bad], pa.string()),
         pa.array([b.reason for b in bad], pa.string())], schema=SCHEMA)


def rows_to_batch(rows: list[dict], schema: pa.Schema | None) -> tuple[pa.RecordBatch | None, list[BadRecord]]:
    """Records (dicts) as a batch; the ones that do not fit the schema (or the others' types)
    come back as bad records instead of failing the whole batch."""
    try:
        return pa.RecordBatch.from_pylist(rows, schema=schema), []
    except (pa.ArrowInvalid, pa.ArrowTypeError, TypeError, ValueError):
        pass
    # Only on this error path: find the records at fault one by one.
    good: list[dict] = []
    bad: list[BadRecord] = []
    ref = schema
    for r in rows:
        if not isinstance(r, dict):
            bad.append(BadRecord(r, f"not a record (a dict): {type(r).__name__}"))
            continue
        try:
            one = pa.RecordBatch.from_pylist([r], schema=ref)
        except (pa.ArrowInvalid, pa.ArrowTypeError, TypeError, ValueError) as exc:
            bad.append(BadRecord(r, f"does not fit the schema: {exc}"))
            continue
        if ref is None:
            ref = one.schema
        good.append(r)
    batch = pa.RecordBatch.from_pylist(good, schema=ref) if good else None
    return batch, bad
