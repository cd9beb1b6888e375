"""The Nexmark event set every engine of ``streaming_nexmark`` reads, and the form answers are
compared in.

``write(folder, events, seed)`` makes the events once with Sabot's generator
(``sabot.stream.nexmark.generator``, deterministic per seed) and writes them as JSON lines,
one file per kind: ``persons.jsonl``, ``auctions.jsonl``, ``bids.jsonl``, times (``date_time``,
``expires``) as epoch milliseconds. Each file is in event-time order.

``answer(query, rows)`` turns an engine's output (a pyarrow Table, or a list of dicts) into
``{"rows": n, "checksum": sha256}`` over the query's canonical columns (``COLUMNS``), sorted,
times as epoch milliseconds, floats rounded to 4 decimals: two engines agree exactly when
their answers are equal.
"""

from __future__ import annotations

import datetime as _dt
import hashlib
import json
from collections.abc import Iterable
from pathlib import Path
from typing import Any

KINDS = ("person", "auction", "bid")
FILES = {"person": "persons.jsonl", "auction": "auctions.jsonl", "bid": "bids.jsonl"}
TIME_COLUMNS = ("date_time", "expires")

#: What each query's answer is made of (the columns every engine's output is compared on).
COLUMNS: dict[str, tuple[str, ...]] = {
    "q0": ("auction", "bidder", "price", "date_time", "extra"),
    "q1": ("auction", "bidder", "price", "date_time", "extra"),
    "q2": ("auction", "price"),
    "q3": ("name", "city", "state", "id"),
    "q4": ("category", "avg_final"),
    "q5": ("auction", "num", "window_start"),
    "q7": ("auction", "price", "bidder", "date_time", "extra"),
    "q8": ("id", "name", "window_start"),
}

#: Columns that are real numbers (an engine may write 227.000 as 227).
REAL = {"q1": ("price",), "q4": ("avg_final",)}

#: The kinds of events each query reads (its "events" are the rows of these files).
READS: dict[str, tuple[str, ...]] = {
    "q0": ("bid",), "q1": ("bid",), "q2": ("bid",), "q3": ("person", "auction"),
    "q4": ("auction", "bid"), "q5": ("bid",), "q7": ("bid",), "q8": ("person", "auction"),
}


def paths(folder: Path) -> dict[str, Path]:
    return {k: folder / FILES[k] for k in KINDS}


def write(folder: Path, events: int, seed: int) -> dict[str, int]:
    """Write the event set (if not there yet); returns the number of rows per kind."""
    from sabot.stream.nexmark.generator import GeneratorConfig, generate

    folder.mkdir(parents=True, exist_ok=True)
    meta = folder / "events.json"
    if meta.is_file():
        done = json.loads(meta.read_text())
        if done.get("events") == events and done.get("seed") == seed:
            return done["rows"]
    import pyarrow as pa

    cfg = GeneratorConfig(seed=seed)
    rows: dict[str, int] = {}
    for kind in KINDS:
        n = 0
        with open(folder / FILES[kind], "w") as f:
            for batch in generate(cfg, kind, 0, events):
                for i, f_ in enumerate(batch.schema):
                    if pa.types.is_timestamp(f_.type):
                        batch = batch.set_column(i, f_.name, batch.column(i).cast(pa.int64()))
                for rec in batch.to_pylist():
                    f.write(json.dumps(rec, separators=(",", ":")))
                    f.write("\n")
                n += batch.num_rows
        rows[kind] = n
    meta.write_text(json.dumps({"events": events, "seed": seed, "rows": rows}))
    return rows


def _ms(v: Any) -> Any:
    if isinstance(v, _dt.datetime):
        if v.tzinfo is None:
            v = v.replace(tzinfo=_dt.UTC)
        return int(round(v.timestamp() * 1000))
    return v


def _norm(v: Any) -> str:
    v = _ms(v)
    if isinstance(v, float):
        return f"{round(v, 4):.4f}"
    if hasattr(v, "is_finite") and not isinstance(v, (int, str)):  # decimal.Decimal
        return f"{round(float(v), 4):.4f}"
    return str(v)


def rows_of(query: str, out: Any) -> Iterable[tuple[Any, ...]]:
    """The canonical columns of ``out`` (a pyarrow Table/RecordBatch or a list of dicts)."""
    cols = COLUMNS[query]
    if hasattr(out, "column_names"):
        data = [out.column(c).to_pylist() for c in cols]
        return zip(*data)
    return (tuple(r[c] for c in cols) for r in out)


def answer(query: str, out: Any) -> dict[str, Any]:
    """``{"rows": n, "checksum": ...}`` of an engine's output for ``query``."""
    real = [c in REAL.get(query, ()) for c in COLUMNS[query]]
    lines = sorted("\x1f".join(_norm(float(v) if r and v is not None else v)
                                for v, r in zip(row, real)) for row in rows_of(query, out))
    h = hashlib.sha256()
    for line in lines:
        h.update(line.encode())
        h.update(b"\n")
    return {"rows": len(lines), "checksum": h.hexdigest()[:16]}
