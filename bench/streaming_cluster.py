"""Nexmark q0, q5, q7 and q8 on the cluster: one node against 1 and 2 workers, in one run.

The events come from Sabot's Nexmark generator (``env.nexmark(events)``; each instance of a job
on the cluster generates its own share of the generator's chunks), into a ``discard()`` sink, so
what is timed is the pipeline: generation, the operators and, on the cluster, the exchange
between the instances (Arrow batches over ZeroMQ with CURVE) and the tasks' start. Three cases
take turns ``--repeat`` times per query: ``single node`` (``StreamEnv()`` in this process),
``cluster, 1 worker`` and ``cluster, 2 workers`` (``StreamEnv(cluster=..., instances=n)`` on a
local coordinator with two worker processes). Printed per query: events/s (the events of the
streams the query reads, median of the repeats), events/s per instance and the ratio of the
2-worker per-instance figure to the single node's.

    python -m bench.streaming_cluster [--events 10000000] [--repeat 3] [--quick]
"""

from __future__ import annotations

import argparse
import os
import statistics
import time
from typing import Any

from .cluster import LocalSabotCluster

QUERIES = ("q0", "q5", "q7", "q8")
WORKERS = 2


def _once(query: str, events: int, cluster: str | None, instances: int) -> tuple[float, int]:
    import sabot.stream as st
    from sabot.stream.nexmark.queries import QUERIES as Q

    env = st.StreamEnv() if cluster is None else st.StreamEnv(cluster=cluster,
                                                              instances=instances)
    Q[query](env.nexmark(events)).discard()
    t0 = time.perf_counter()
    res = env.execute(f"nexmark-{query}")
    return time.perf_counter() - t0, res.events


def run(events: int, repeat: int) -> list[dict[str, Any]]:
    cluster = LocalSabotCluster(WORKERS)
    cluster.start()
    for var in ("SABOT_CLUSTER_KEY_FILE", "CLUSTER_NAME"):  # (the client's config: load_config)
        os.environ[var] = cluster.env[var]
    address = f"127.0.0.1:{cluster.port}"
    cases = (("single node", None, 1), ("cluster, 1 worker", address, 1),
             (f"cluster, {WORKERS} workers", address, WORKERS))
    rows = []
    try:
        for query in QUERIES:
            for name, where, n in cases:  # warm-up: the pools, the imports, the task start
                _once(query, min(events, 100_000), where, n)
            rates: dict[str, list[float]] = {name: [] for name, _, _ in cases}
            for _ in range(repeat):
                for name, where, n in cases:
                    secs, read = _once(query, events, where, n)
                    rates[name].append(read / secs)
            base = statistics.median(rates["single node"])
            for name, _where, n in cases:
                rate = statistics.median(rates[name])
                rows.append({"query": query, "case": name, "instances": n,
                             "events_per_s": rate, "per_instance": rate / n,
                             "per_instance_vs_single": rate / n / base,
                             "spread": max(rates[name]) / min(rates[name])})
                print(f"{query:3} {name:20} {rate / 1e6:7.2f} M events/s  "
                      f"{rate / n / 1e6:7.2f} M per instance  "
                      f"{rate / n / base:5.2f}x single node per instance  "
                      f"(repeats within {max(rates[name]) / min(rates[name]):.2f}x)", flush=True)
    finally:
        cluster.stop()
    return rows


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--events", type=int, default=10_000_000)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--quick", action="store_true", help="200,000 events, 1 repeat")
    args = parser.parse_args(argv)
    events, repeat = (200_000, 1) if args.quick else (args.events, args.repeat)
    print(f"Nexmark on the cluster: {events:,} events, {repeat} repeat(s), "
          f"{os.cpu_count()} CPUs", flush=True)
    run(events, repeat)


if __name__ == "__main__":
    main()
