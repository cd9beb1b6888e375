"""Decoding JSON lines and CSV into Arrow batches (pyarrow's readers: native, whole blocks),
finding the bad records one by one only when a block fails."""

from __future__ import annotations

import io
import json

import pyarrow as pa
import pyarrow.csv as pacsv
import pyarrow.json as pajson

from .bad_records import BadRecord, rows_to_batch

FORMATS = ("jsonl", "csv", "parquet")


def parse_jsonl(block: bytes, schema: pa.Schema | None) -> tuple[pa.Table | None, list[BadRecord]]:
    """Complete lines of JSON objects as a table, and the lines that are not records."""
    if not block.strip():
        return None, []
    opts = pajson.ParseOptions(explicit_schema=schema, unexpected_field_behavior="ignore") \
        if schema is not None else pajson.ParseOptions()
    try:
        return pajson.read_json(io.BytesIO(block), parse_options=opts), []
    except (pa.ArrowInvalid, pa.ArrowTypeError):
        pass
    rows, bad = [], []
    for line in block.splitlines():
        if not line.strip():
            continue
        try:
            rec = json.loads(line)
        except ValueError as exc:
            bad.append(BadRecord(line.decode("utf-8", "replace"), f"not JSON: {exc}"))
            continue
        if not isinstance(rec, dict):
            bad.append(BadRecord(line.decode("utf-8", "replace"), "not a JSON object"))
            continue
        rows.append(rec)
    batch, more = rows_to_batch(rows, schema) if rows else (None, [])
    return (pa.Table.from_batches([batch]) if batch is not None else None), bad + more


def parse_jsonl_columns(block: bytes, columns: pa.Schema) -> pa.Table | None:
    """Only ``columns`` of complete JSON-lines records (their types given: the other fields are
    skipped, not decoded), or None where a line does not fit them (then parse the block whole,
    :func:`parse_jsonl`, which finds the bad lines)."""
    opts = pajson.ParseOptions(explicit_schema=columns, unexpected_field_behavior="ignore")
    try:
        return pajson.read_json(io.BytesIO(block), parse_options=opts)
    except (pa.ArrowInvalid, pa.ArrowTypeError):
        return None


def infer_jsonl_types(block: bytes) -> pa.Schema | None:
    """The types pyarrow infers for these JSON lines, or None where they are not all records."""
    try:
        return pajson.read_json(io.BytesIO(block)).schema if block.strip() else None
    except (pa.ArrowInvalid, pa.ArrowTypeError):
        return None


def parse_csv(data: bytes, schema: pa.Schema | None) -> pa.Table:
    conv = pacsv.ConvertOptions(column_types=schema) if schema is not None else None
    return pacsv.read_csv(io.BytesIO(data), convert_options=conv)
