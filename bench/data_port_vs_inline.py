"""Peers on other hosts: bulk jobs through the coordinator's data port against every byte over
its ZeroMQ port, in one run.

A client and 2 workers with data dirs of their own (as on other hosts: they share no spool with
the coordinator) run the cluster suite's two bulk jobs, the 10M-item ``square`` and numpy 3x+1
over 40M int64, once with the data port (the default) and once with ``SABOT_SPOOL=0`` on every
node (what such peers got before the data port: inputs and results inline, through the
coordinator's core thread and journal). The two take turns ``--rounds`` times; each turn starts a
cluster, warms it up and times ``--jobs`` jobs per case. Printed: items/s (median of the jobs)
and the MB that crossed the coordinator's ZeroMQ port per job.

    python -m bench.data_port_vs_inline [--rounds 2] [--jobs 3] [--quick]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import time
import urllib.request
from typing import Any

import numpy as np

from .cluster import LocalSabotCluster
from .workloads import affine, square

WORKERS = 2


class _Cluster(LocalSabotCluster):
    """The suite's cluster with workers elsewhere; ``spool=False``: SABOT_SPOOL=0 everywhere."""

    def __init__(self, spool: bool) -> None:
        self.spool = spool
        super().__init__(WORKERS, shared=False)

    def _env(self) -> dict[str, str]:
        env = super()._env()
        if not self.spool:
            env["SABOT_SPOOL"] = "0"
        return env


def _zmq_bytes(cluster: LocalSabotCluster) -> int:
    url = f"http://127.0.0.1:{cluster.port}/stats"
    with urllib.request.urlopen(url, timeout=10) as resp:
        counters = json.loads(resp.read())["counters"]
    return int(counters["bytes_received"]) + int(counters["bytes_sent"])


def _turn(spool: bool, jobs: int, n_big: int, n_array: int) -> dict[str, tuple[float, float]]:
    import sabot

    cluster = _Cluster(spool)
    cluster.start()
    env = {**cluster.env, "SABOT_DATA_DIR": os.path.join(cluster.dir, "client-data")}
    coordinator = sabot.create_distributed_coordinator("127.0.0.1", cluster.port,
                                                       config=sabot.load_config(env=env))
    loop = asyncio.new_event_loop()

    async def job(data: Any, func: Any) -> Any:
        job_id = await sabot.submit_distributed_job(coordinator, data, func)
        return await sabot.get_distributed_job_result(coordinator, job_id, timeout=900)

    out: dict[str, tuple[float, float]] = {}
    try:
        cases = ((f"square {n_big:,}", list(range(n_big)), square),
                 (f"numpy 3x+1 {n_array:,}", np.arange(n_array, dtype=np.int64),
                  sabot.batch(affine)))
        for name, data, func in cases:
            loop.run_until_complete(job(data[:100_000], func))  # (the pools start)
            rates, crossed = [], []
            for _ in range(jobs):
                before, t0 = _zmq_bytes(cluster), time.perf_counter()
                loop.run_until_complete(job(data, func))
                rates.append(len(data) / (time.perf_counter() - t0))
                crossed.append((_zmq_bytes(cluster) - before) / 1e6)
            out[name] = (statistics.median(rates), statistics.median(crossed))
    finally:
        loop.run_until_complete(coordinator.stop())
        loop.close()
        cluster.stop()
    return out


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--jobs", type=int, default=3)
    parser.add_argument("--quick", action="store_true", help="200k items and 1M int64")
    args = parser.parse_args(argv)
    n_big, n_array = (200_000, 1_000_000) if args.quick else (10_000_000, 40_000_000)
    for _ in range(args.rounds):
        for spool in (True, False):
            what = "data port" if spool else "inline (SABOT_SPOOL=0)"
            for name, (rate, mb) in _turn(spool, args.jobs, n_big, n_array).items():
                print(f"{what:24} {name:24} {rate / 1e6:8.2f} M items/s  "
                      f"{mb:9.2f} MB over ZeroMQ per job", flush=True)


if __name__ == "__main__":
    main()
