"""Load and soak on a real coordinator with two workers (daemon processes on loopback).

* burst: 1,000 HTTP submits open at the same moment; every one is acknowledged (no 5xx, no
  dropped connection) and every job completes with its own correct result.
* soak: small jobs one after another (500 in the default run, 10,000 with ``-m slow``); all
  complete correctly while the coordinator's RSS, open file descriptors and journal size are
  sampled. Open descriptors must not grow with the number of jobs; the figures go to the results
  file for docs/reliability.md. The slow form also waits for the retention purge
  (SABOT_RESULT_TTL_S) and checks that the finished jobs left the journal.
"""

from __future__ import annotations

import asyncio
import sqlite3
import time
from pathlib import Path
from typing import Any, Iterator

import aiohttp
import pytest

import sabot_test_nodes as nodes

TTL_S = 2


def _cluster(root: Path, ttl_s: float) -> Iterator[Any]:
    c = nodes.Cluster(root, {"SABOT_HEARTBEAT_S": "0.5", "SABOT_RESULT_TTL_S": str(ttl_s)})
    c.start_coordinator()
    for _ in range(2):
        c.add_worker(wait=False)
    c.wait_workers(2)
    yield c
    c.stop()


@pytest.fixture
def cluster(tmp_path: Path) -> Iterator[Any]:
    """Results kept TTL_S: the soak reads each job's result as soon as it is done, and its slow
    form waits for the purge."""
    yield from _cluster(tmp_path / "cluster", TTL_S)


@pytest.fixture
def burst_cluster(tmp_path: Path) -> Iterator[Any]:
    """Results kept an hour: the burst reads its 1,000 results one by one after all the
    submits, and the first ones finished long before the last is read (with TTL_S a loaded
    machine let some expire first: 410 job_expired, a failure of the test, not the node)."""
    yield from _cluster(tmp_path / "cluster", 3600)


def journal_bytes(cluster: Any) -> int:
    data = cluster.root / "coordinator-data"
    return sum(p.stat().st_size for p in data.rglob("*") if p.is_file())


def journal_jobs(cluster: Any) -> int:
    """Jobs rows in the coordinator's SQLite journal (read-only, beside the running node)."""
    total = 0
    for db in (cluster.root / "coordinator-data").rglob("*"):
        if db.suffix in (".db", ".sqlite", ".sqlite3") and db.is_file():
            con = sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=10)
            try:
                total += int(con.execute("SELECT COUNT(*) FROM jobs").fetchone()[0])
            finally:
                con.close()
    return total


async def burst(url: str, count: int) -> tuple[list[tuple[str, int]], dict[int, int]]:
    statuses: dict[int, int] = {}
    accepted: list[tuple[str, int]] = []
    connector = aiohttp.TCPConnector(limit=0, force_close=True)
    timeout = aiohttp.ClientTimeout(total=300)
    async with aiohttp.ClientSession(connector=connector, timeout=timeout) as session:
        start = asyncio.Event()

        async def one(i: int) -> None:
            await start.wait()
            async with session.post(url + "/submit_job",
                                    json={"data": [i, i + 1], "processor_func": "square"}) as r:
                statuses[r.status] = statuses.get(r.status, 0) + 1
                if r.status == 200:
                    accepted.append(((await r.json())["job_id"], i))

        tasks = [asyncio.ensure_future(one(i)) for i in range(count)]
        await asyncio.sleep(0.1)
        start.set()
        await asyncio.gather(*tasks)
    return accepted, statuses


def run_burst(cluster: Any, count: int, variant: str) -> None:
    rss0, fds0 = cluster.coordinator.rss_and_fds()
    accepted, statuses = asyncio.run(burst(cluster.coordinator.url, count))
    assert statuses == {200: count}, statuses
    wrong = 0
    for job_id, i in accepted:
        job = cluster.coordinator.wait_job(job_id, timeout=300)
        assert job["status"] == "completed", job
        wrong += job["result"] != [i * i, (i + 1) * (i + 1)]
    assert len({j for j, _ in accepted}) == count  # distinct job ids: no submit merged
    rss1, fds1 = cluster.coordinator.rss_and_fds()
    nodes.record("concurrent HTTP submits", variant=variant, jobs=count, acknowledged=len(accepted),
                 results_checked=2 * count, lost=0, duplicated=0, wrong=wrong,
                 coordinator_rss_mib_before=round(rss0 / 2**20, 1),
                 coordinator_rss_mib_after=round(rss1 / 2**20, 1),
                 coordinator_fds_before=fds0, coordinator_fds_after=fds1)
    assert wrong == 0


def test_1000_concurrent_http_submits(burst_cluster: Any) -> None:
    run_burst(burst_cluster, 1000, "ci")


def run_soak(cluster: Any, jobs: int, variant: str) -> None:
    samples: list[dict[str, float]] = []
    every = max(1, jobs // 10)
    warmup = every  # the first samples include imports, pools and caches warming up
    t0 = time.monotonic()
    for i in range(jobs):
        job_id = cluster.coordinator.submit([i, i + 1, i + 2], "square")
        job = cluster.coordinator.wait_job(job_id, timeout=120)
        assert job["result"] == [i * i, (i + 1) ** 2, (i + 2) ** 2], job
        if (i + 1) % every == 0:
            rss, fds = cluster.coordinator.rss_and_fds()
            samples.append({"jobs": i + 1, "rss_mib": round(rss / 2**20, 1), "fds": fds,
                            "journal_kib": round(journal_bytes(cluster) / 1024, 1),
                            "seconds": round(time.monotonic() - t0, 1)})
    first = next(s for s in samples if s["jobs"] >= warmup)
    last = samples[-1]
    figures: dict[str, Any] = {
        "jobs": jobs, "results_checked": 3 * jobs, "lost": 0, "duplicated": 0,
        "rss_mib_after_warmup": first["rss_mib"], "rss_mib_end": last["rss_mib"],
        "fds_after_warmup": first["fds"], "fds_end": last["fds"],
        "journal_kib_after_warmup": first["journal_kib"], "journal_kib_end": last["journal_kib"],
        "samples": samples,
    }
    if variant == "slow":
        # Past the TTL and the coordinator's purge (once a minute), the journal holds none of
        # the finished jobs: its size is bounded by the retention setting, not by history.
        deadline = time.monotonic() + 150
        while journal_jobs(cluster) > 0:
            assert time.monotonic() < deadline, journal_jobs(cluster)
            time.sleep(2)
        figures["journal_jobs_after_purge"] = journal_jobs(cluster)
        figures["journal_kib_after_purge"] = round(journal_bytes(cluster) / 1024, 1)
    nodes.record("sequential small jobs (soak)", variant=variant, **figures)
    # Descriptors do not grow with jobs (a leak of one per job would show hundreds here).
    assert last["fds"] <= first["fds"] + 16, samples


def test_small_jobs_in_sequence(cluster: Any) -> None:
    run_soak(cluster, 500, "ci")


@pytest.mark.slow
@pytest.mark.timeout(900)  # 10,000 jobs polled over HTTP, then up to 150 s for the purge
def test_10000_small_jobs_in_sequence(cluster: Any) -> None:
    run_soak(cluster, 10_000, "slow")
