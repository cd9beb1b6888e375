"""Kafka message values to Arrow: JSON objects decoded in blocks by pyarrow's reader, raw bytes as
a binary column, and the messages that cannot be decoded as :class:`BadMessage`.

The JSON path builds no Python object per record: the values of a poll are joined with newlines
into one block of JSON lines and read by ``pyarrow.json.read_json`` (with the schema, when one is
given, as its explicit schema). Only when a block fails is it split in halves, again and again,
until the failing messages stand alone; they come back with the reason and the good ones still
come through. Without a schema, the types are those the reader infers for the block; on that
error path the first pieces that decode fix the types the others must fit.
"""

from __future__ import annotations

import io
import json
from dataclasses import dataclass

import pyarrow as pa
import pyarrow.json as pajson


@dataclass(frozen=True)
class BadMessage:
    """A message whose value could not be decoded, with where it is in Kafka and why."""

    topic: str
    partition: int
    offset: int
    value: bytes | None
    reason: str


@dataclass(frozen=True)
class Decoded:
    """What one block of values decoded to: ``table`` holds the good records in message order
    (None when there are none), ``rows`` the index of each of its rows in the input (None when
    every value decoded, in order), ``bad`` the (index, reason) of each value that did not."""

    table: pa.Table | None
    rows: list[int] | None
    bad: list[tuple[int, str]]


def decode_raw(values: list[bytes | None]) -> pa.Table:
    """The values as one binary column ``value`` (a message without a value is a null)."""
    return pa.table({"value": pa.array(values, pa.binary())})


def decode_json(values: list[bytes | None], schema: pa.Schema | None) -> Decoded:
    """One JSON object per value, decoded as a block; see the module's description."""
    keep: list[int] | None = None  # indices of the values that go to the reader
    bad: list[tuple[int, str]] = []
    if None in values or b"" in values:
        keep = [i for i, v in enumerate(values) if v]
        bad = [(i, _empty_reason(v)) for i, v in enumerate(values) if not v]
    block = values if keep is None else [values[i] for i in keep]
    if not block:
        return Decoded(None, [], bad)
    joined = b"\n".join(block)  # type: ignore[arg-type]
    if joined.count(b"\n") != len(block) - 1 or b"\r" in joined:
        # Some values span lines (pretty-printed JSON): put each on one line (only those).
        keep = list(range(len(values))) if keep is None else keep
        block, keep, more = _one_line_each(block, keep)
        bad = sorted(bad + more)
        if not block:
            return Decoded(None, [], bad)
        joined = b"\n".join(block)  # type: ignore[arg-type]
    table = _read(joined, len(block), schema, infer_new=schema is None)
    if table is not None:
        return Decoded(table, keep, bad)
    # Only on this error path: find the values at fault.
    pieces: list[pa.Table] = []
    rows: list[int] = []
    found: list[tuple[int, str]] = []
    _bisect(block, 0, len(block), schema, [schema], pieces, rows, found)
    positions = keep if keep is not None else list(range(len(values)))
    bad = sorted(bad + [(positions[i], reason) for i, reason in found])
    if not pieces:
        return Decoded(None, [], bad)
    table = pieces[0] if len(pieces) == 1 else pa.concat_tables(pieces, promote_options="default")
    if schema is not None:
        table = table.select(schema.names)
    return Decoded(table, [positions[i] for i in rows], bad)


def _empty_reason(value: bytes | None) -> str:
    return "no value (a tombstone)" if value is None else "empty value"


def _one_line_each(
    block: list[bytes | None], keep: list[int]
) -> tuple[list[bytes | None], list[int], list[tuple[int, str]]]:
    out: list[bytes | None] = []
    kept: list[int] = []
    bad: list[tuple[int, str]] = []
    for value, index in zip(block, keep):
        assert value is not None
        if b"\n" in value or b"\r" in value:
            try:
                value = json.dumps(json.loads(value), separators=(",", ":"),
                                   ensure_ascii=False).encode()
            except (ValueError, UnicodeDecodeError) as exc:
                bad.append((index, f"not JSON: {exc}"))
                continue
        out.append(value)
        kept.append(index)
    return out, kept, bad


def _utf8(data: bytes) -> bool:
    if data.isascii():
        return True
    try:
        data.decode("utf-8")
    except UnicodeDecodeError:
        return False
    return True


def _read(joined: bytes, count: int, schema: pa.Schema | None, *, infer_new: bool) -> pa.Table | None:
    """The block as a table of exactly ``count`` rows, or None when it is not that."""
    if not _utf8(joined):
        return None
    if schema is None:
        opts = pajson.ParseOptions()
    else:
        opts = pajson.ParseOptions(
            explicit_schema=schema, unexpected_field_behavior="infer" if infer_new else "ignore")
    try:
        table = pajson.read_json(io.BytesIO(joined), parse_options=opts)
    except (pa.ArrowInvalid, pa.ArrowTypeError, pa.ArrowNotImplementedError):
        return None
    return table if table.num_rows == count else None


def _open_schema(schema: pa.Schema) -> pa.Schema | None:
    """An inferred schema as the types later pieces must fit; fields that were all null stay
    open (the next piece may give them a type)."""
    fields = [f for f in schema if not pa.types.is_null(f.type)]
    return pa.schema(fields) if fields else None


def _bisect(
    block: list[bytes | None], lo: int, hi: int, given: pa.Schema | None,
    ref: list[pa.Schema | None], pieces: list[pa.Table], rows: list[int],
    bad: list[tuple[int, str]],
) -> None:
    """Decode block[lo:hi], halving the parts that fail; ``ref[0]`` is the schema the parts must
    fit (the given one, or what the pieces decoded so far inferred)."""
    joined = b"\n".join(block[lo:hi])  # type: ignore[arg-type]
    table = _read(joined, hi - lo, ref[0], infer_new=given is None)
    if table is not None:
        pieces.append(table)
        rows.extend(range(lo, hi))
        if given is None:
            merged = table.schema if ref[0] is None else pa.unify_schemas(
                [ref[0], table.schema], promote_options="default")
            ref[0] = _open_schema(merged)
        return
    if hi - lo == 1:
        bad.append((lo, _reason(block[lo], ref[0], given is not None)))
        return
    mid = (lo + hi) // 2
    _bisect(block, lo, mid, given, ref, pieces, rows, bad)
    _bisect(block, mid, hi, given, ref, pieces, rows, bad)


def _reason(value: bytes | None, ref: pa.Schema | None, given: bool) -> str:
    """Why one value does not decode (this runs only for values that failed)."""
    assert value is not None
    try:
        value.decode("utf-8")
    except UnicodeDecodeError as exc:
        return f"not UTF-8 text: {exc}"
    try:
        record = json.loads(value)
    except ValueError as exc:
        return f"not JSON: {exc}"
    if not isinstance(record, dict):
        return f"not a JSON object but a JSON {_json_kind(record)}"
    opts = pajson.ParseOptions() if ref is None else pajson.ParseOptions(
        explicit_schema=ref, unexpected_field_behavior="ignore" if given else "infer")
    try:
        pajson.read_json(io.BytesIO(value), parse_options=opts)
    except (pa.ArrowInvalid, pa.ArrowTypeError, pa.ArrowNotImplementedError) as exc:
        if given:
            return f"does not fit the schema: {exc}"
        return f"its types differ from those of the messages before it: {exc}"
    return "not decodable as one JSON object"


def _json_kind(value: object) -> str:
    if isinstance(value, list):
        return "array"
    if isinstance(value, str):
        return "string"
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "boolean"
    return "number"
