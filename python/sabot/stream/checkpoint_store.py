"""Checkpoints on disk: one directory per checkpoint under ``state_dir``, committed atomically.

A checkpoint ``chk-NNNNNNNN`` holds, per operator, its Arrow tables (window panes, join
buffers, collected output) as Arrow IPC files and the rest of its state (keyed-state values,
timers, source positions, small bookkeeping) pickled, with the tables referenced by file name.
Everything is first written under ``.chk-NNNNNNNN.tmp``, fsynced, then a ``manifest.json`` with
each file's size and CRC-32, and the directory is renamed into place: a checkpoint counts only
once that rename happened. Reading checks every file against the manifest; a damaged checkpoint
is skipped with a warning naming the file, and the previous complete one is used.
"""

from __future__ import annotations

import io
import json
import logging
import os
import pickle
import shutil
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import pyarrow as pa

from ..crc import crc32
from ..durable import fsync_dir, write_fsynced
from ..errors import CheckpointError

log = logging.getLogger(__name__)

FORMAT = 1
PREFIX = "chk-"
MANIFEST = "manifest.json"


@dataclass(frozen=True)
class Captured:
    """An operator state taken on the job's thread: its pickled Python part and the (immutable)
    Arrow tables it references. Writing it needs nothing else, so it may run on another thread."""

    pickled: bytes
    tables: list[pa.Table]


class _Pickler(pickle.Pickler):
    def __init__(self, f: io.BytesIO, tables: list[pa.Table]) -> None:
        super().__init__(f, protocol=pickle.HIGHEST_PROTOCOL)
        self.tables = tables

    def persistent_id(self, obj: Any) -> Any:
        if isinstance(obj, pa.RecordBatch):
            obj = pa.Table.from_batches([obj])
            self.tables.append(obj)
            return ("batch", len(self.tables) - 1)
        if isinstance(obj, pa.Table):
            self.tables.append(obj)
            return ("table", len(self.tables) - 1)
        return None


class _Unpickler(pickle.Unpickler):
    def __init__(self, f: io.BytesIO, tables: list[pa.Table]) -> None:
        super().__init__(f)
        self.tables = tables

    def persistent_load(self, pid: Any) -> Any:
        kind, i = pid
        t = self.tables[i]
        if kind == "batch":
            return t.combine_chunks().to_batches()[0] if t.num_rows else \
                pa.RecordBatch.from_pylist([], schema=t.schema)
        return t


def capture(state: dict[str, Any]) -> Captured:
    tables: list[pa.Table] = []
    buf = io.BytesIO()
    _Pickler(buf, tables).dump(state)
    return Captured(buf.getvalue(), tables)


def _ipc_bytes(t: pa.Table) -> memoryview:
    """``t`` as an Arrow IPC file, in Arrow's buffer (no copy into a Python bytes object)."""
    sink = pa.BufferOutputStream()
    with pa.ipc.new_file(sink, t.schema) as w:
        w.write_table(t)
    return memoryview(sink.getvalue())


def write(directory: str, epoch: int, meta: dict[str, Any], states: dict[str, Captured],
          before_commit: Callable[[], None] | None = None) -> int:
    """Write checkpoint ``epoch`` of ``states`` (operator name -> captured state) into
    ``directory`` (a checkpoint's own directory is made inside it); ``before_commit`` runs
    once every file but the manifest is written. Returns its size in bytes."""
    os.makedirs(directory, exist_ok=True)
    name = f"{PREFIX}{epoch:08d}"
    tmp = os.path.join(directory, f".{name}.tmp")
    if os.path.exists(tmp):
        shutil.rmtree(tmp)
    os.makedirs(tmp)
    files: dict[str, dict[str, int]] = {}
    operators: dict[str, dict[str, Any]] = {}
    for i, (op, cap) in enumerate(states.items()):
        tables = []
        for j, t in enumerate(cap.tables):
            fname = f"op{i:03d}-t{j:05d}.arrow"
            data = _ipc_bytes(t)
            write_fsynced(os.path.join(tmp, fname), data)
            files[fname] = {"bytes": len(data), "crc32": crc32(data)}
            tables.append(fname)
        fname = f"op{i:03d}.pickle"
        write_fsynced(os.path.join(tmp, fname), cap.pickled)
        files[fname] = {"bytes": len(cap.pickled), "crc32": crc32(cap.pickled)}
        operators[op] = {"state": fname, "tables": tables}
    if before_commit is not None:
        before_commit()
    manifest = dict(meta, format=FORMAT, epoch=epoch, created=time.time(), operators=operators,
                    files=files)
    write_fsynced(os.path.join(tmp, MANIFEST), json.dumps(manifest, indent=1).encode())
    fsync_dir(tmp)
    final = os.path.join(directory, name)
    if os.path.exists(final):  # a savepoint path reused, or a checkpoint never committed
        shutil.rmtree(final)
    os.rename(tmp, final)
    fsync_dir(directory)
    return sum(f["bytes"] for f in files.values())


@dataclass
class Loaded:
    path: str
    epoch: int
    meta: dict[str, Any]
    states: dict[str, dict[str, Any]]


def _check(path: str) -> dict[str, Any]:
    """The manifest of the checkpoint at ``path`` after checking every file; CheckpointError
    naming the first file at fault."""
    mpath = os.path.join(path, MANIFEST)
    try:
        with open(mpath, "rb") as f:
            manifest = json.loads(f.read())
    except (OSError, ValueError) as exc:
        raise CheckpointError(f"{mpath}: unreadable manifest ({exc})") from exc
    if not isinstance(manifest, dict) or manifest.get("format") != FORMAT:
        raise CheckpointError(f"{mpath}: not a Sabot checkpoint manifest of format {FORMAT}")
    for fname, info in manifest.get("files", {}).items():
        fpath = os.path.join(path, fname)
        try:
            with open(fpath, "rb") as f:
                data = f.read()
        except OSError as exc:
            raise CheckpointError(f"{fpath}: missing ({exc})") from exc
        if len(data) != info["bytes"] or crc32(data) != info["crc32"]:
            raise CheckpointError(f"{fpath}: damaged ({len(data)} bytes, expected "
                                  f"{info['bytes']}; checksum mismatch)")
    return manifest


def load(path: str) -> Loaded:
    """The checkpoint (or savepoint) directory ``path``, checked and decoded."""
    manifest = _check(path)
    states: dict[str, dict[str, Any]] = {}
    for op, entry in manifest["operators"].items():
        tables = []
        for fname in entry["tables"]:
            with pa.memory_map(os.path.join(path, fname)) as src:
                tables.append(pa.ipc.open_file(src).read_all())
        with open(os.path.join(path, entry["state"]), "rb") as f:
            states[op] = _Unpickler(io.BytesIO(f.read()), tables).load()
    return Loaded(path, int(manifest["epoch"]), manifest, states)


def complete(directory: str) -> list[tuple[int, str]]:
    """(epoch, path) of the committed checkpoint directories under ``directory``, oldest first."""
    if not os.path.isdir(directory):
        return []
    out = []
    for name in os.listdir(directory):
        if name.startswith(PREFIX) and name[len(PREFIX):].isdigit():
            out.append((int(name[len(PREFIX):]), os.path.join(directory, name)))
    return sorted(out)


def latest(directory: str) -> Loaded | None:
    """The newest checkpoint under ``directory`` that reads back whole; damaged ones are
    skipped with a warning naming the file at fault."""
    for _epoch, path in reversed(complete(directory)):
        try:
            return load(path)
        except (CheckpointError, OSError, pickle.UnpicklingError, pa.ArrowInvalid, EOFError,
                KeyError) as exc:
            log.warning("checkpoint %s is damaged and is skipped (%s); trying the one before",
                        path, exc)
    return None


def prune(directory: str, keep: int) -> None:
    """Keep the newest ``keep`` checkpoints; remove older ones and abandoned temporaries."""
    done = complete(directory)
    for _epoch, path in done[:-keep] if keep > 0 else []:
        shutil.rmtree(path, ignore_errors=True)
    for name in os.listdir(directory):
        if name.startswith(f".{PREFIX}") and name.endswith(".tmp"):
            shutil.rmtree(os.path.join(directory, name), ignore_errors=True)
