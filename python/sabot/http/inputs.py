"""Job input from a file already on the node (``{"input": {"path", "format", "column"}}``).

Only files inside SABOT_DATA_DIR can be named: the path is resolved (``..`` and symbolic links
included) and refused when it leaves that directory, so an HTTP client cannot read arbitrary
files of the node.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

#: format name -> file name endings that imply it
FORMATS: dict[str, tuple[str, ...]] = {
    "parquet": (".parquet", ".pq"),
    "csv": (".csv",),
    "arrow": (".arrow", ".feather", ".ipc"),
    "jsonl": (".jsonl", ".ndjson"),
}


class InputError(ValueError):
    """The input description is wrong; the message says what is accepted (HTTP 400)."""


def resolve_input_path(root: Path, path: str) -> Path:
    """``path`` (relative to ``root``, or absolute inside it) as a real path inside ``root``."""
    if not path or "\x00" in path:
        raise InputError("input.path must be a non-empty file path inside SABOT_DATA_DIR")
    base = Path(os.path.realpath(root))
    candidate = Path(path)
    if not candidate.is_absolute():
        candidate = base / candidate
    real = Path(os.path.realpath(candidate))
    if real != base and base not in real.parents:
        raise InputError(
            f"input.path {path!r} is outside SABOT_DATA_DIR; only files under the node's data "
            "directory can be read")
    try:
        is_file = real.is_file()
    except OSError as exc:  # a name longer than the file system allows, a path it refuses
        raise InputError(f"input.path {_shown(path)} cannot name a file under SABOT_DATA_DIR: "
                         f"{exc.strerror or exc}") from None
    if not is_file:
        raise InputError(f"input.path {path!r} does not name a file under SABOT_DATA_DIR")
    return real


def _shown(path: str) -> str:
    """``path`` as an error message shows it: cut to its first 80 characters."""
    return repr(path) if len(path) <= 80 else f"{path[:80]!r}... ({len(path)} characters)"


def detect_format(path: Path, fmt: str | None) -> str:
    if fmt is not None:
        if fmt not in FORMATS:
            raise InputError(
                f"input.format {fmt!r} is not supported; accepted: {', '.join(FORMATS)}")
        return fmt
    name = path.name.lower()
    for known, endings in FORMATS.items():
        if name.endswith(endings):
            return known
    raise InputError(
        f"cannot tell the format of {path.name!r} from its name; give input.format "
        f"(one of {', '.join(FORMATS)})")


def read_table(path: Path, fmt: str) -> Any:
    """The file as a pyarrow Table."""
    import pyarrow as pa

    try:
        if fmt == "parquet":
            import pyarrow.parquet as pq

            return pq.read_table(path)
        if fmt == "csv":
            import pyarrow.csv as pcsv

            return pcsv.read_csv(path)
        if fmt == "jsonl":
            if _first_json_char(path) not in (b"{", b""):
                # One bare JSON value per line (1, "a", [1, 2]), as `sabot-node submit --file`
                # accepts: one column named "value".
                return pa.table({"value": pa.array(_json_values(path))})
            import pyarrow.json as pjson

            return pjson.read_json(path)
        with pa.memory_map(str(path)) as source:
            try:
                return pa.ipc.open_file(source).read_all()
            except pa.ArrowInvalid:
                source.seek(0)
                return pa.ipc.open_stream(source).read_all()
    except (pa.ArrowException, OSError) as exc:
        raise InputError(f"cannot read {path.name!r} as {fmt}: {exc}") from None


def _first_json_char(path: Path) -> bytes:
    """The first character of a JSON-lines file that is not white space (b"" when empty)."""
    with open(path, "rb") as fh:
        while chunk := fh.read(1 << 16):
            stripped = chunk.lstrip()
            if stripped:
                return stripped[:1]
    return b""


def _json_values(path: Path) -> list[Any]:
    import json

    values = []
    with open(path, encoding="utf-8") as fh:
        for number, line in enumerate(fh, 1):
            if line.strip():
                try:
                    values.append(json.loads(line))
                except ValueError as exc:
                    raise InputError(f"{path.name!r} line {number} is not valid JSON: "
                                     f"{exc}") from None
    return values


def load_input_column(root: Path, spec: dict[str, Any]) -> Any:
    """The column a job runs over, as a pyarrow Array. ``spec`` is already type-checked."""
    path = resolve_input_path(root, spec["path"])
    table = read_table(path, detect_format(path, spec.get("format")))
    column = spec.get("column")
    if column is None:
        if table.num_columns != 1:
            raise InputError(
                f"{path.name!r} has {table.num_columns} columns ({', '.join(table.column_names)}); "
                "name one with input.column")
        return table.column(0).combine_chunks()
    if column not in table.column_names:
        raise InputError(
            f"input.column {column!r} is not in {path.name!r}; columns: "
            f"{', '.join(table.column_names)}")
    return table.column(column).combine_chunks()


__all__ = [
    "FORMATS",
    "InputError",
    "detect_format",
    "load_input_column",
    "read_table",
    "resolve_input_path",
]
