"""Columnar: ``sum(b*2+1) where a % 7 = 3`` (and the same grouped by ``a % 10``) over Arrow data.

a is int64 in [0, 1e6), b float64 in [0, 1); 50M rows (2M with --quick). At each thread count:
Sabot's native engine (``sabot.columnar.aggregate``) against pyarrow.compute (eager), pyarrow
Acero (``Declaration`` with use_threads, the CPU pool sized to the thread count), DuckDB
(``SET threads``) and Polars (a child process with POLARS_MAX_THREADS, since Polars fixes its
pool at import; the child builds the same data from the same seed), and numpy. Data generation
is outside the timed region; every engine's answer is checked against Sabot's; medians of the
repeats. Run alone: ``python -m bench.columnar [--quick] [--threads 1,2] [--repeat N]``.
"""

from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from typing import Any

TITLE = "columnar: sum(b*2+1) where a%7=3 (global and grouped by a%10)"
TIMED = "one query over data already in memory (Arrow table / numpy arrays)"

FULL_ROWS = 50_000_000
QUICK_ROWS = 2_000_000
SEED = 42


def make_data(rows: int) -> dict[str, Any]:
    import numpy as np

    rng = np.random.default_rng(SEED)
    return {"a": rng.integers(0, 1_000_000, rows, dtype=np.int64), "b": rng.random(rows)}


# ----------------------------------------------------------------------------- engines
# Each returns a zero-argument callable that runs the query and returns its answer:
# the global sum (float), or {k: sum} for the grouped query.


def _sabot(table: Any, threads: int, grouped: bool) -> Callable[[], Any]:
    import pyarrow.compute as pc
    from sabot import columnar

    where = pc.equal(pc.modulo(pc.field("a"), 7), 3)
    value = pc.field("b") * 2 + 1
    by = {"k": pc.modulo(pc.field("a"), 10)} if grouped else None

    def run() -> Any:
        out = columnar.aggregate(table, {"s": ("sum", value)}, by=by, where=where, threads=threads,
                                 native=True)
        if grouped:
            return {int(k): s for k, s in zip(out.column("k").to_pylist(), out.column("s").to_pylist())}
        return out.column("s")[0].as_py()

    return run


def _pyarrow_eager(table: Any, threads: int, grouped: bool) -> Callable[[], Any]:
    import pyarrow as pa
    import pyarrow.compute as pc

    def run() -> Any:
        a = table.column("a")
        mask = pc.equal(pc.modulo(a, 7), 3)
        kept = table.filter(mask)
        v = pc.add(pc.multiply(kept.column("b"), 2), 1)
        if not grouped:
            return pc.sum(v).as_py()
        t = pa.table({"k": pc.modulo(kept.column("a"), 10), "v": v})
        g = t.group_by("k").aggregate([("v", "sum")])
        return {int(k): s for k, s in zip(g.column("k").to_pylist(), g.column("v_sum").to_pylist())}

    return run


def _acero(table: Any, threads: int, grouped: bool) -> Callable[[], Any]:
    import pyarrow as pa
    import pyarrow.compute as pc
    from pyarrow import acero

    where = pc.equal(pc.modulo(pc.field("a"), 7), 3)
    proj = acero.ProjectNodeOptions([pc.modulo(pc.field("a"), 10), pc.field("b") * 2 + 1], ["k", "v"])
    agg = acero.AggregateNodeOptions([("v", "hash_sum" if grouped else "sum", None, "s")],
                                     keys=["k"] if grouped else None)
    decl = acero.Declaration.from_sequence([
        acero.Declaration("table_source", acero.TableSourceNodeOptions(table)),
        acero.Declaration("filter", acero.FilterNodeOptions(where)),
        acero.Declaration("project", proj),
        acero.Declaration("aggregate", agg),
    ])

    def run() -> Any:
        previous = pa.cpu_count()
        pa.set_cpu_count(threads)
        try:
            out = decl.to_table(use_threads=threads > 1)
        finally:
            pa.set_cpu_count(previous)
        if grouped:
            return {int(k): s for k, s in zip(out.column("k").to_pylist(), out.column("s").to_pylist())}
        return out.column("s")[0].as_py()

    return run


def _duckdb(table: Any, threads: int, grouped: bool) -> Callable[[], Any]:
    import duckdb

    con = duckdb.connect()
    con.execute(f"SET threads={threads}")
    con.register("t", table)
    if grouped:
        sql = "SELECT a % 10 AS k, sum(b * 2 + 1) FROM t WHERE a % 7 = 3 GROUP BY k"
    else:
        sql = "SELECT sum(b * 2 + 1) FROM t WHERE a % 7 = 3"

    def run() -> Any:
        rows = con.execute(sql).fetchall()
        return {int(k): s for k, s in rows} if grouped else rows[0][0]

    return run


def _numpy(arrays: dict[str, Any], grouped: bool) -> Callable[[], Any]:
    import numpy as np

    a, b = arrays["a"], arrays["b"]

    def run() -> Any:
        mask = a % 7 == 3
        v = b[mask] * 2 + 1
        if not grouped:
            return float(v.sum())
        k = a[mask] % 10
        sums = np.bincount(k, weights=v, minlength=10)
        present = np.bincount(k, minlength=10) > 0
        return {int(i): float(sums[i]) for i in range(10) if present[i]}

    return run


_POLARS_CHILD = r"""
import json, sys, time
import numpy as np
import polars as pl
sys.path.insert(0, {root!r})
from bench.columnar import make_data
rows, repeat, grouped = {rows}, {repeat}, {grouped}
df = pl.DataFrame(make_data(rows))
q = df.lazy().filter(pl.col("a") % 7 == 3)
if grouped:
    q = q.group_by((pl.col("a") % 10).alias("k")).agg((pl.col("b") * 2 + 1).sum().alias("s"))
else:
    q = q.select((pl.col("b") * 2 + 1).sum().alias("s"))
times = []
for i in range(repeat + 1):
    t0 = time.perf_counter()
    out = q.collect()
    t = time.perf_counter() - t0
    if i:
        times.append(t)
if grouped:
    answer = {{int(k): s for k, s in zip(out["k"].to_list(), out["s"].to_list())}}
else:
    answer = out["s"][0]
print(json.dumps({{"times": times, "answer": answer, "threads": pl.thread_pool_size(),
                   "version": pl.__version__}}))
"""


def _polars_child(rows: int, threads: int, repeat: int, grouped: bool) -> dict[str, Any]:
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    code = _POLARS_CHILD.format(root=root, rows=rows, repeat=repeat, grouped=grouped)
    env = dict(os.environ, POLARS_MAX_THREADS=str(threads))
    proc = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True,
                          timeout=1800, check=False)
    if proc.returncode != 0:
        raise RuntimeError(proc.stderr.strip().splitlines()[-1] if proc.stderr.strip() else "polars failed")
    out = json.loads(proc.stdout.strip().splitlines()[-1])
    if grouped:
        out["answer"] = {int(k): v for k, v in out["answer"].items()}
    return out


# ----------------------------------------------------------------------------- running


def _available(module: str) -> tuple[bool, str]:
    import importlib.util

    if importlib.util.find_spec(module) is None:
        return False, f"{module} is not installed (pip install {module})"
    return True, ""


def _row(case: str, engine: str, rows: int, times: list[float], answer: Any, params: dict[str, Any],
         status: str = "ok", error: str | None = None) -> dict[str, Any]:
    row: dict[str, Any] = {
        "benchmark": "columnar",
        "case": case,
        "engine": engine,
        "metric": "rows/s",
        "samples": [rows / t for t in times],
        "higher_is_better": True,
        "params": params,
        "seconds": statistics.median(times) if times else None,
        "items": rows,
        "answer": answer,
        "timed": TIMED,
        "status": status,
    }
    if error:
        row["error"] = error
    return row


def run(quick: bool, threads: list[int], repeat: int | None = None) -> list[dict[str, Any]]:
    """Rows (one per case, engine) for the harness; see the module docstring."""
    import pyarrow as pa
    from sabot import _native

    rows = QUICK_ROWS if quick else FULL_ROWS
    repeat = repeat or (1 if quick else 5)
    arrays = make_data(rows)
    table = pa.table(arrays)  # zero-copy over the numpy arrays
    out: list[dict[str, Any]] = []
    for grouped in (False, True):
        query = "sum(b*2+1) where a%7=3" + (" group by a%10" if grouped else "")
        for t in threads:
            case = f"{query}, {rows // 1_000_000}M rows, threads={t}"
            params = {"rows": rows, "threads": t, "grouped": grouped, "repeat": repeat}
            engines: list[tuple[str, Callable[[], Callable[[], Any]], tuple[bool, str]]] = [
                ("sabot", lambda t=t, g=grouped: _sabot(table, t, g),
                 (_native.get_core() is not None, _native.native_status())),
                ("pyarrow.compute", lambda t=t, g=grouped: _pyarrow_eager(table, t, g), (True, "")),
                ("acero", lambda t=t, g=grouped: _acero(table, t, g), (True, "")),
                ("duckdb", lambda t=t, g=grouped: _duckdb(table, t, g), _available("duckdb")),
                ("numpy", lambda g=grouped: _numpy(arrays, g), (True, "")),
            ]
            # Engines take turns within each repeat, so a change in machine load hits all alike.
            runners: dict[str, Callable[[], Any]] = {}
            answers: dict[str, Any] = {}
            times: dict[str, list[float]] = {}
            failed: dict[str, str] = {}
            for name, make, (ok, why) in engines:
                if not ok:
                    failed[name] = why
                    continue
                try:
                    runners[name] = make()
                    answers[name] = runners[name]()  # warm-up, and the answer
                    times[name] = []
                except Exception as exc:  # noqa: BLE001 - a peer failing is reported, not fatal
                    failed[name] = f"{type(exc).__name__}: {exc}"
                    runners.pop(name, None)
            for _ in range(repeat):
                for name, fn in list(runners.items()):
                    try:
                        t0 = time.perf_counter()
                        fn()
                        times[name].append(time.perf_counter() - t0)
                    except Exception as exc:  # noqa: BLE001 - reported in the row
                        failed[name] = f"{type(exc).__name__}: {exc}"
                        del runners[name]
            for name, _, (ok, _why) in engines:
                if name in failed:
                    status = "not available" if not ok else "error"
                    out.append(_row(case, name, rows, [], None, params, status, failed[name]))
                else:
                    out.append(_row(case, name, rows, times[name], answers[name], params))
            ok, why = _available("polars")
            if not ok:
                out.append(_row(case, "polars", rows, [], None, params, "not available", why))
                continue
            try:
                res = _polars_child(rows, t, repeat, grouped)
                out.append(_row(case, "polars", rows, res["times"], res["answer"],
                                {**params, "polars_threads": res["threads"]}))
            except Exception as exc:  # noqa: BLE001 - reported in the row
                out.append(_row(case, "polars", rows, [], None, params, "error", f"{type(exc).__name__}: {exc}"))
    _check(out)
    return out


def _close(a: Any, b: Any) -> bool:
    import math

    if isinstance(a, dict) and isinstance(b, dict):
        return a.keys() == b.keys() and all(_close(a[k], b[k]) for k in a)
    return isinstance(a, float) and isinstance(b, float) and math.isclose(a, b, rel_tol=1e-9)


def _check(rows: list[dict[str, Any]]) -> None:
    """Mark each row's answer against Sabot's in the same case (answer_ok)."""
    for r in rows:
        ref = next((x for x in rows if x["case"] == r["case"] and x["engine"] == "sabot"
                    and x["status"] == "ok"), None)
        if r["status"] == "ok" and ref is not None:
            r["answer_ok"] = _close(r["answer"], ref["answer"])


def table_markdown(rows: list[dict[str, Any]]) -> str:
    """Mrows/s per engine and case, with Sabot's ratio to each peer."""
    lines = ["| case | engine | Mrows/s (median) | Sabot / engine | answer |", "|---|---|---:|---:|---|"]
    for case in dict.fromkeys(r["case"] for r in rows):
        group = [r for r in rows if r["case"] == case]
        sabot = next((r for r in group if r["engine"] == "sabot" and r["status"] == "ok"), None)
        for r in group:
            if r["status"] != "ok":
                lines.append(f"| {case} | {r['engine']} | {r['status']} | | {r.get('error', '')} |")
                continue
            med = statistics.median(r["samples"]) / 1e6
            ratio = statistics.median(sabot["samples"]) / statistics.median(r["samples"]) if sabot else None
            ok = {True: "ok", False: "**differs**", None: ""}[r.get("answer_ok")]
            lines.append(f"| {case} | {r['engine']} | {med:,.0f} | {ratio:.2f}x | {ok} |" if ratio
                         else f"| {case} | {r['engine']} | {med:,.0f} | | {ok} |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    import argparse

    parser = argparse.ArgumentParser(prog="python -m bench.columnar", description=TITLE)
    parser.add_argument("--quick", action="store_true", help=f"{QUICK_ROWS:,} rows instead of {FULL_ROWS:,}")
    parser.add_argument("--threads", default="1,2", help="comma-separated thread counts (default 1,2)")
    parser.add_argument("--repeat", type=int, default=None, help="timed repeats per engine (default 5; quick 1)")
    parser.add_argument("--json", default=None, help="also write the raw rows to this file")
    args = parser.parse_args(argv)
    threads = sorted({int(x) for x in args.threads.split(",") if x.strip()})
    rows = run(args.quick, threads, args.repeat)
    print(table_markdown(rows))
    if args.json:
        with open(args.json, "w") as f:
            json.dump(rows, f, indent=1, default=str)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
