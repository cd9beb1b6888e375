"""Arrow rows to Kafka message values and keys: one JSON object per row, built column by column
with Arrow compute (no Python dict per row), and raw values from a ``value`` column.

How values are written in JSON: integers, decimals and finite floats as numbers (a float keeps a
fraction: ``3.0``), NaN and infinities as ``null``, booleans as ``true``/``false``, strings
escaped per RFC 8259, timestamps as ISO-8601 text (``2024-05-01T12:00:00.250Z`` for a zoned
timestamp, converted to UTC; without the ``Z`` for a naive one, which Sabot reads as UTC), dates
and times of day as ISO-8601 text, durations as integers in their unit, structs as nested objects,
nulls as ``null``. Lists, maps and other nested types go through ``json.dumps`` per value (the one
per-value path). Binary columns must hold UTF-8 text.
"""

from __future__ import annotations

import json
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc

from ..errors import ConfigError
from .kafka_errors import KafkaConnectorError

_NEEDS_ESCAPE = r'[\\"\x00-\x1f]'
_CONTROL = {"\b": "\\b", "\f": "\\f", "\n": "\\n", "\r": "\\r", "\t": "\\t"}


def json_values(batch: pa.RecordBatch | pa.Table) -> pa.Array:
    """One JSON object per row of the batch, as a string array (one chunk)."""
    if batch.num_columns == 0:
        return pa.array(["{}"] * batch.num_rows, pa.string())
    parts: list[Any] = []
    for i, name in enumerate(batch.schema.names):
        parts.append(("{" if i == 0 else ",") + json.dumps(name) + ":")
        parts.append(_column(_one_chunk(batch.column(i)), name))
    parts.append("}")
    return pc.binary_join_element_wise(*parts, "")


def raw_values(batch: pa.RecordBatch | pa.Table) -> list[bytes | None]:
    """The ``value`` column (binary or string) as the message values."""
    if "value" not in batch.schema.names:
        raise ConfigError("batch", batch.schema.names,
                          "a column named 'value' (binary or string) with format='raw'")
    column = _one_chunk(batch.column(batch.schema.get_field_index("value")))
    if not (_is_text(column.type) or _is_binary(column.type)):
        raise ConfigError("value", str(column.type), "a binary or string column with format='raw'")
    return column.cast(pa.large_binary()).to_pylist()


def key_values(batch: pa.RecordBatch | pa.Table, key: str) -> list[bytes | None]:
    """The message keys from column ``key``: text and binary as they are, other scalars as their
    text (``42``, ``true``, ISO timestamps), nulls as no key."""
    if key not in batch.schema.names:
        raise ConfigError("key", key, "a column of the batch: " + ", ".join(batch.schema.names))
    column = _one_chunk(batch.column(batch.schema.get_field_index(key)))
    if pa.types.is_dictionary(column.type):
        column = column.dictionary_decode()
    if _is_binary(column.type) or _is_text(column.type):
        return column.cast(pa.large_binary()).to_pylist()
    if pa.types.is_timestamp(column.type):
        text = _timestamp_text(column)
    elif _is_nested(column.type):
        raise ConfigError("key", key, f"a column of scalars (this one is {column.type})")
    else:
        try:
            text = column.cast(pa.string())
        except (pa.ArrowInvalid, pa.ArrowNotImplementedError) as exc:
            raise ConfigError("key", key, f"a column castable to text ({exc})") from None
    return text.cast(pa.large_binary()).to_pylist()


def _one_chunk(column: pa.Array | pa.ChunkedArray) -> pa.Array:
    if isinstance(column, pa.ChunkedArray):
        return column.combine_chunks() if column.num_chunks != 1 else column.chunk(0)
    return column


def _is_text(t: pa.DataType) -> bool:
    return pa.types.is_string(t) or pa.types.is_large_string(t) or pa.types.is_string_view(t)


def _is_binary(t: pa.DataType) -> bool:
    return (pa.types.is_binary(t) or pa.types.is_large_binary(t) or pa.types.is_binary_view(t)
            or pa.types.is_fixed_size_binary(t))


def _is_nested(t: pa.DataType) -> bool:
    return pa.types.is_nested(t)


def _column(values: pa.Array, name: str) -> pa.Array:
    """The column's values as JSON texts (``null`` where null)."""
    t = values.type
    if pa.types.is_dictionary(t):
        return _column(values.dictionary_decode(), name)
    if pa.types.is_null(t):
        return pa.array(["null"] * len(values), pa.string())
    if pa.types.is_boolean(t) or pa.types.is_integer(t) or pa.types.is_decimal(t):
        text = values.cast(pa.string())
    elif pa.types.is_floating(t):
        text = _float_text(values)
    elif _is_text(t):
        text = _quoted(values.cast(pa.string()))
    elif _is_binary(t):
        try:
            text = _quoted(values.cast(pa.string()))
        except pa.ArrowInvalid:
            raise KafkaConnectorError(
                f"column {name!r} holds bytes that are not UTF-8 text: JSON values must be text"
                " (use format='raw' for bytes, or decode the column first)") from None
    elif pa.types.is_timestamp(t):
        text = _quoted(_timestamp_text(values))
    elif pa.types.is_date(t) or pa.types.is_time(t):
        text = _quoted(values.cast(pa.string()))
    elif pa.types.is_duration(t):
        text = values.cast(pa.int64()).cast(pa.string())
    elif pa.types.is_struct(t):
        text = _struct_text(values, name)
    else:
        text = _python_text(values)
    return pc.fill_null(text, "null")


def _float_text(values: pa.Array) -> pa.Array:
    text = values.cast(pa.string())
    finite = pc.is_finite(values)
    text = pc.if_else(finite, text, pa.scalar(None, pa.string()))
    whole = pc.match_substring_regex(text, r"^-?[0-9]+$")
    return pc.if_else(whole, pc.binary_join_element_wise(text, ".0", ""), text)


def _quoted(text: pa.Array) -> pa.Array:
    if pc.any(pc.match_substring_regex(text, _NEEDS_ESCAPE)).as_py():
        text = pc.replace_substring(text, "\\", "\\\\")
        text = pc.replace_substring(text, '"', '\\"')
        if pc.any(pc.match_substring_regex(text, r"[\x00-\x1f]")).as_py():
            for code in range(0x20):
                char = chr(code)
                text = pc.replace_substring(text, char, _CONTROL.get(char, f"\\u{code:04x}"))
    return pc.binary_join_element_wise('"', text, '"', "")


def _timestamp_text(values: pa.Array) -> pa.Array:
    t = values.type
    if t.tz is not None:
        values = values.cast(pa.timestamp(t.unit, "UTC"))
    return pc.replace_substring(values.cast(pa.string()), " ", "T", max_replacements=1)


def _struct_text(values: pa.StructArray, name: str) -> pa.Array:
    t = values.type
    if t.num_fields == 0:
        inner: pa.Array = pa.array(["{}"] * len(values), pa.string())
    else:
        parts: list[Any] = []
        children = values.flatten()
        for i in range(t.num_fields):
            field = t.field(i)
            parts.append(("{" if i == 0 else ",") + json.dumps(field.name) + ":")
            parts.append(_column(children[i], f"{name}.{field.name}"))
        parts.append("}")
        inner = pc.binary_join_element_wise(*parts, "")
    return pc.if_else(values.is_valid(), inner, pa.scalar(None, pa.string()))


def _python_text(values: pa.Array) -> pa.Array:
    return pa.array(
        [None if v is None else json.dumps(v, default=_plain, separators=(",", ":"),
                                           ensure_ascii=False)
         for v in values.to_pylist()], pa.string())


def _plain(value: Any) -> Any:
    if isinstance(value, (bytes, bytearray)):
        return value.decode("utf-8", "replace")
    if hasattr(value, "isoformat"):
        return value.isoformat()
    return str(value)
