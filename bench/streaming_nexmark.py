"""Nexmark q0-q5, q7, q8 on Sabot beside Flink, Bytewax, Pathway and Quix Streams, same machine, same run, same files.

One event set from Sabot's Nexmark generator (seed 1; ``1,000,000`` events, ``--quick``: 50,000)
is written once as JSON lines (``persons.jsonl``, ``auctions.jsonl``, ``bids.jsonl``, times as
epoch ms); every engine reads and parses those files in its timed region, in its own idiom:

- **sabot**: ``env.from_files(..., format="jsonl")`` and the queries of
  ``sabot.stream.nexmark.queries``, into a ``to_callable`` sink; at parallelism 1 and 2, and at 1
  with a checkpoint every 10 s into a local ``state_dir``.
- **flink**: Flink SQL (the Nexmark project's query texts over ``filesystem``/``json`` tables with
  an event-time watermark) on PyFlink's local mini-cluster at parallelism 1 and 2, and at 1 with
  checkpoints every 10 s (``hashmap`` state, ``filesystem`` checkpoint storage in a temporary
  folder); sink: a ``filesystem`` table (``debezium-json``, so updating results can be written).
- **bytewax**, **pathway**, **quix streams**: their documented operators (windows, joins,
  reductions), one worker / thread; Quix Streams reads topics that a local Kafka-protocol broker
  (Tansu) was loaded with before the run (untimed), as Kafka is its only source.
- **duckdb (oracle)**: the batch answer over the whole files (``sabot.stream.nexmark.queries.SQL``);
  every engine's answer is compared with it (row count and a checksum of the sorted canonical
  rows, ``bench.nexmark_data``) and a different one is marked **DIFFERENT**.

Each (engine, query) runs in a process of its own (``bench.nexmark_child``): the engine is
started, warmed on a small event set (untimed), then timed on the measured set. Metrics:
events/s (the events of the files the query reads: bids for q0-q2, q5, q7; people and auctions
for q3, q8; auctions and bids for q4), events/s per core (divided by the parallelism), events per
CPU-second (the CPU time the process and its descendants, a JVM for Flink, used in the timed
region) and peak RSS of that process tree. A peer that is not installed shows as "not
available"; a query an engine cannot express shows as "not available" with the reason.
Flink, Pathway and Quix Streams pin versions of pyarrow / confluent-kafka that clash with
Sabot's, so they run from their own virtual environments under ``bench/.peers/`` (see
docs/performance.md).
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from . import nexmark_data as nd
from .harness import ERROR, NOT_AVAILABLE, OK, REPO_ROOT

TITLE = ("Nexmark q0-q5, q7, q8: Sabot beside Flink, Bytewax, Pathway and Quix Streams "
         "(same files, same run)")
TIMED = ("the child process runs the query once over a small warm-up set, then the timed run: "
         "read + parse the JSON-lines files, run the query, collect the output in the engine's "
         "sink (Flink: its filesystem sink; Quix Streams: its topics); per core = events/s / "
         "parallelism; per CPU-second = events / CPU seconds of the process tree")
QUERIES = ("q0", "q1", "q2", "q3", "q4", "q5", "q7", "q8")
SEED = 1
EVENTS, QUICK_EVENTS = 1_000_000, 50_000
WARMUP_EVENTS, QUICK_WARMUP_EVENTS = 50_000, 10_000
RUN_TIMEOUT_S = 400
PEERS_DIR = REPO_ROOT / "bench" / ".peers"
CHECKPOINT_S = 10


@dataclass(frozen=True)
class Config:
    """One engine setting measured on every query."""

    name: str          # the row's engine column
    module: str        # bench.nexmark_<module>
    parallelism: int = 1
    checkpoint_s: int | None = None
    venv: str | None = None  # bench/.peers/<venv> when its pins clash with Sabot's
    oracle: bool = False
    broker: bool = False  # reads Kafka topics loaded from the files (Quix Streams)


def configs(quick: bool) -> list[Config]:
    base = [Config("duckdb (oracle)", "duckdb", parallelism=1, oracle=True),
            Config("sabot", "sabot"),
            Config(f"sabot, checkpoints {CHECKPOINT_S}s", "sabot", checkpoint_s=CHECKPOINT_S)]
    if quick:
        return base
    return base + [
        Config("sabot p=2", "sabot", parallelism=2),
        Config("flink p=1", "flink", venv="flink"),
        Config(f"flink p=1, checkpoints {CHECKPOINT_S}s", "flink", checkpoint_s=CHECKPOINT_S,
               venv="flink"),
        Config("flink p=2", "flink", parallelism=2, venv="flink"),
        Config("bytewax", "bytewax"),
        Config("pathway", "pathway", venv="pathway"),
        Config("quix streams", "quix", venv="quix", broker=True),
    ]


def _python(cfg: Config) -> str:
    if cfg.venv:
        py = PEERS_DIR / cfg.venv / "bin" / "python"
        if py.exists():
            return str(py)
    return sys.executable


def _child_env() -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = str(REPO_ROOT)
    return env


def availability(cfg: Config) -> tuple[bool, str, dict[str, str]]:
    """(available, version-or-reason, queries it cannot express -> why), asked of the engine's
    own interpreter."""
    code = ("import json; from bench import nexmark_%s as m; "
            "print(json.dumps([m.availability(), m.SKIP]))" % cfg.module)
    try:
        p = subprocess.run([_python(cfg), "-c", code], cwd=REPO_ROOT, env=_child_env(),
                           capture_output=True, text=True, timeout=120)
    except (OSError, subprocess.SubprocessError) as exc:
        return False, f"cannot start its interpreter: {exc}", {}
    if p.returncode != 0:
        return False, (p.stderr.strip().splitlines() or ["failed"])[-1][:300], {}
    (ok, info), skip = json.loads(p.stdout.strip().splitlines()[-1])
    if not ok and cfg.venv and not (PEERS_DIR / cfg.venv).exists():
        info += f" (its pins clash with Sabot's: install it in bench/.peers/{cfg.venv}, see docs/performance.md)"
    return bool(ok), str(info), dict(skip)


def measure(cfg: Config, query: str, files: dict[str, Path], warm: dict[str, Path],
            workdir: Path, options: dict[str, Any] | None = None) -> dict[str, Any]:
    spec = {"engine": cfg.module, "query": query, "parallelism": cfg.parallelism,
            "options": options or {},
            "checkpoint_s": cfg.checkpoint_s, "workdir": str(workdir),
            "files": {k: str(v) for k, v in files.items()},
            "warmup_files": {k: str(v) for k, v in warm.items()}}
    workdir.mkdir(parents=True, exist_ok=True)
    try:
        p = subprocess.run([_python(cfg), "-m", "bench.nexmark_child", json.dumps(spec)],
                           cwd=REPO_ROOT, env=_child_env(), capture_output=True, text=True,
                           timeout=RUN_TIMEOUT_S)
    except subprocess.TimeoutExpired:
        return {"ok": False, "error": f"run exceeded {RUN_TIMEOUT_S} s"}
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    for line in reversed(p.stdout.splitlines()):
        if line.startswith("@@nexmark-result "):
            return json.loads(line.split(" ", 1)[1])
    tail = (p.stderr.strip().splitlines() or [f"exit status {p.returncode}"])[-1]
    return {"ok": False, "error": f"the child printed no result: {tail[:400]}"}


def _rows_for(cfg: Config, query: str, events: int, read: int, status: str, error: str | None,
              results: list[dict[str, Any]], version: str) -> list[dict[str, Any]]:
    case = f"{query}, {events:,} events"
    base: dict[str, Any] = {
        "case": case, "engine": cfg.name, "timed": TIMED, "status": status, "version": version,
        "params": {"query": query, "events": events, "events_read": read,
                   "threads": cfg.parallelism, "checkpoint_interval_s": cfg.checkpoint_s}}
    if cfg.oracle:
        base.update(oracle=True, scale_reference=True)
    if error:
        base["error"] = error
    metrics = [("events/s", True, lambda r: read / r["seconds"]),
               ("events/s per core", True, lambda r: read / r["seconds"] / cfg.parallelism),
               ("events per CPU-second", True, lambda r: read / max(r["cpu_seconds"], 1e-9)),
               ("peak RSS (MB)", False, lambda r: r["peak_rss_bytes"] / 2**20)]
    rows = []
    for metric, higher, fn in metrics:
        row = dict(base, metric=metric, higher_is_better=higher,
                   samples=[fn(r) for r in results], params=dict(base["params"]))
        if results:
            row["answer"] = results[-1]["answer"]
            row["params"].update({f"info_{k}": v for k, v in results[-1]["info"].items()})
        rows.append(row)
    return rows


def run(quick: bool, threads: list[int], repeat: int | None = None,
        queries: list[str] | None = None, engines: list[str] | None = None) -> list[dict[str, Any]]:
    """Every query on every engine setting (``queries`` / ``engines``: only those, by query name
    and by the engine column's name)."""
    events = QUICK_EVENTS if quick else EVENTS
    warm_events = QUICK_WARMUP_EVENTS if quick else WARMUP_EVENTS
    repeats = repeat or 1
    root = Path(tempfile.mkdtemp(prefix="sabot-nexmark-"))
    rows: list[dict[str, Any]] = []
    with contextlib.ExitStack() as stack:
        stack.callback(shutil.rmtree, root, ignore_errors=True)
        counts = nd.write(root / "events", events, SEED)
        nd.write(root / "warmup", warm_events, SEED)
        files, warm = nd.paths(root / "events"), nd.paths(root / "warmup")
        print(f"  event files: {counts} ({sum(p.stat().st_size for p in files.values()) / 1e6:.0f}"
              " MB of JSON lines)", file=sys.stderr)
        live = []
        options: dict[str, Any] = {}
        for cfg in configs(quick):
            if engines is not None and cfg.name not in engines:
                continue
            ok, info, skip = availability(cfg)
            if ok and cfg.broker and not options:
                try:
                    options = _load_broker(stack, files, warm)
                except Exception as exc:  # noqa: BLE001 - the peer is then not available
                    ok, info = False, f"no Kafka broker for it: {exc.__class__.__name__}: {exc}"
            live.append((cfg, ok, info, skip))
            if not ok:
                print(f"  {cfg.name}: not available ({info})", file=sys.stderr)
        for q in queries or QUERIES:
            read = sum(counts[k] for k in nd.READS[q])
            done: dict[str, list[dict[str, Any]]] = {c.name: [] for c, *_ in live}
            errors: dict[str, str] = {}
            for rep in range(repeats):
                order = live[rep % len(live):] + live[:rep % len(live)]
                for cfg, ok, info, skip in order:
                    if not ok or q in skip or cfg.name in errors:
                        continue
                    r = measure(cfg, q, files, warm, root / "work",
                                options if cfg.broker else None)
                    if r.get("ok"):
                        done[cfg.name].append(r)
                        print(f"  {q} / {cfg.name}: {read / r['seconds'] / 1e6:.3f} M events/s"
                              f" ({r['seconds']:.2f} s, {r['cpu_seconds']:.2f} CPU s, "
                              f"{r['peak_rss_bytes'] / 2**20:.0f} MB), {r['answer']['rows']:,} rows",
                              file=sys.stderr)
                    else:
                        errors[cfg.name] = r.get("error", "failed")
                        print(f"  {q} / {cfg.name}: failed: {errors[cfg.name]}", file=sys.stderr)
            for cfg, ok, info, skip in live:
                if not ok:
                    status, err = NOT_AVAILABLE, info
                elif q in skip:
                    status, err = NOT_AVAILABLE, f"{q} not run: {skip[q]}"
                elif cfg.name in errors:
                    status, err = ERROR, errors[cfg.name]
                else:
                    status, err = OK, None
                rows += _rows_for(cfg, q, events, read, status, err, done[cfg.name],
                                  info if ok else "")
    return rows


def _load_broker(stack: contextlib.ExitStack, files: dict[str, Path],
                 warm: dict[str, Path]) -> dict[str, Any]:
    """Start the Tansu broker (stopped with ``stack``) and load the bid files into topics, and
    for the joins (``nexmark_quix.JOINED``) the two files each joins reads merged in event-time
    order into one topic (keyed ``nexmark_quix.merged_topic``)."""
    import heapq
    import time

    from .nexmark_broker import Broker
    from .nexmark_quix import JOINED, merged_topic

    broker = stack.enter_context(Broker())
    scratch = Path(tempfile.mkdtemp(prefix="sabot-nexmark-merged-"))
    stack.callback(shutil.rmtree, scratch, ignore_errors=True)
    t0 = time.perf_counter()
    topics = {str(p): broker.load(p) for p in (warm["bid"], files["bid"])}
    for n, fs in enumerate((warm, files)):
        for kinds in dict.fromkeys(JOINED.values()):
            key = merged_topic(fs, next(q for q, k in JOINED.items() if k == kinds))
            if key in topics:
                continue
            path = scratch / f"{n}-{'-'.join(kinds)}.jsonl"
            with contextlib.ExitStack() as opened:
                ins = [opened.enter_context(open(fs[k], "rb")) for k in kinds]
                lines = heapq.merge(*ins, key=lambda line: json.loads(line)["date_time"])
                with open(path, "wb") as out:
                    out.writelines(lines)
            topics[key] = broker.load(path)
    print(f"  Kafka broker (Tansu) at {broker.servers}, bid files and merged files for the "
          f"joins loaded in {time.perf_counter() - t0:.1f} s (untimed)", file=sys.stderr)
    return {"servers": broker.servers, "topics": topics}


# --------------------------------------------------------------------------- the summary table

PEERS = ("flink p=1", f"flink p=1, checkpoints {CHECKPOINT_S}s", "flink p=2", "bytewax",
         "pathway", "quix streams")


def _median(rows: list[dict[str, Any]], engine: str, case: str, metric: str) -> float | None:
    for r in rows:
        if r["engine"] == engine and r["case"] == case and r["metric"] == metric \
                and r["status"] == OK and r.get("median"):
            return r["median"]
    return None


def summarize(rows: list[dict[str, Any]]) -> str:
    """The Nexmark tables: per core and per CPU-second, every engine beside Sabot's ratio
    against it (checkpointed Sabot against checkpointed Flink), and whether each answer equals
    the oracle's."""
    return "\n\n".join(_table(rows, m, text) for m, text in (
        ("events/s per core", "Events/s per core (events the query reads / seconds / "
                              "parallelism)"),
        ("events per CPU-second", "Events per CPU-second (events the query reads / CPU seconds "
                                  "of the engine's processes in the timed region: counts the "
                                  "threads an engine uses beyond its parallelism)"))
        if any(r["metric"] == m for r in rows))


def _table(rows: list[dict[str, Any]], metric: str, title: str) -> str:
    cases = list(dict.fromkeys(r["case"] for r in rows if r.get("case", "-") != "-"))
    engines = list(dict.fromkeys(r["engine"] for r in rows))
    ck = f"sabot, checkpoints {CHECKPOINT_S}s"
    oracle = {r["case"]: r.get("answer") for r in rows if r.get("oracle") and r["status"] == OK}
    md = [f"{title}; in brackets, how many times Sabot's figure is the peer's (checkpointed "
          "Sabot against checkpointed Flink, plain Sabot against the rest); ✗ = answer differs "
          "from DuckDB's; n/a = not available or not run (the reason is in the rows below).", "",
          "| query | " + " | ".join(engines) + " |", "|---" + "|---:" * len(engines) + "|"]
    for case in cases:
        cells = [case]
        for e in engines:
            v = _median(rows, e, case, metric)
            if v is None:
                cells.append("n/a")
                continue
            text = f"{v / 1e3:,.0f} k" if v < 1e6 else f"{v / 1e6:.2f} M"
            ref = _median(rows, ck if "checkpoints" in e else "sabot", case, metric)
            if not e.startswith(("sabot", "duckdb")) and ref:
                text += f" ({ref / v:.1f}x)"
            ans = next((r.get("answer") for r in rows if r["engine"] == e and r["case"] == case
                        and r["status"] == OK), None)
            if oracle.get(case) is not None and ans is not None and ans != oracle[case]:
                text += " ✗"
            cells.append(text)
        md.append("| " + " | ".join(cells) + " |")
    return "\n".join(md)


# --------------------------------------------------------------------------- a subset, by hand

def main(argv: list[str] | None = None) -> int:
    """``python -m bench.streaming_nexmark [--queries q4,q5] [--engine NAME]... [--repeat N]
    [--quick]``: some queries on some engine settings, the summary table on stdout (the full
    suite and its published results are ``python -m bench run --only streaming_nexmark``)."""
    import argparse

    from .harness import complete_row

    names = [c.name for c in configs(False)]
    parser = argparse.ArgumentParser(prog="python -m bench.streaming_nexmark",
                                     description="Nexmark on a subset of queries and engines.")
    parser.add_argument("--queries", default=",".join(QUERIES),
                        help=f"comma-separated subset of {','.join(QUERIES)}")
    parser.add_argument("--engine", action="append", choices=names, default=None,
                        help="an engine setting (repeat the option for several; default: all)")
    parser.add_argument("--repeat", type=int, default=1, help="runs per engine and query")
    parser.add_argument("--quick", action="store_true", help=f"{QUICK_EVENTS:,} events")
    args = parser.parse_args(argv)
    queries = [q.strip() for q in args.queries.split(",") if q.strip()]
    bad = [q for q in queries if q not in QUERIES]
    if bad or not queries or args.repeat < 1:
        parser.error(f"--queries {args.queries!r} / --repeat {args.repeat}: queries from "
                     f"{','.join(QUERIES)}, a positive repeat")
    rows = [complete_row(r, "streaming_nexmark")
            for r in run(args.quick, [1], args.repeat, queries, args.engine)]
    print(summarize(rows))
    return 0


if __name__ == "__main__":
    sys.exit(main())
