"""Sabot's benchmark suite: Sabot measured side by side with the engines users would pick instead.

Run it from the repository root::

    python -m bench run [--quick] [--only NAME[,NAME]] [--threads 1,2,4] [--repeat N] [--out DIR]

The suite installs nothing. Peers (joblib, Dask distributed, Ray, DuckDB, Polars; matplotlib for
the plots) come from ``pip install .[bench]``; a peer that is not installed shows as
"not available" in the results instead of failing the run.

Each benchmark is a module of this package with one entry point::

    def run(quick: bool, threads: list[int]) -> list[dict]

(``repeat: int | None`` and ``out_dir: pathlib.Path`` are passed too when the function accepts them.)
It returns one row per (case, engine, metric). The harness (``bench.harness``) fills in what a row
leaves out, checks answers against Sabot's, and writes the raw rows and the summary. Row keys:

==================  ====================================================================
``case``            what was measured inside the benchmark ("square 2M ints", "threads=2")
``engine``          "sabot" (or starting with "sabot"), or the peer's name
``metric``          "items/s", "rows/s", "latency p50 (ms)", "peak RSS (MB)", ...
``samples``         one value per repeat (or ``value`` for a single figure)
``higher_is_better`` True for throughputs, False for latencies, memory, overheads
``answer``          the engine's answer (a checksum or a small result), compared with Sabot's
``status``          "ok" (default), "not available" or "error"; ``error`` says why
``params``          the parameters (items, workers, chunksize, threads, ...)
``timed``           what the timed region covers
``distribution``    optional: every single measurement (latencies), for the plots
==================  ====================================================================
"""

from __future__ import annotations

# The order in which `python -m bench run` runs the benchmarks and lists them in the summary.
BENCHMARKS: tuple[str, ...] = (
    "per_item",
    "cost_sweep",
    "columnar",
    "scheduler",
    "cluster",
    "streaming",
    "streaming_nexmark",
    "streaming_checkpoints",
    "readme_table",
)
