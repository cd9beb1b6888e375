"""User functions that fail in every way a function can, on a real cluster of 3 workers:
one that raises, one that calls ``os._exit``, one that segfaults (a NULL read through ctypes), and
one that hangs past SABOT_MORSEL_TIMEOUT_S.

Each faulty job ends with a clear error (after SABOT_MAX_ATTEMPTS) — never hangs, never
"completes" — while a healthy job submitted beside it completes with the right result; and
afterwards the cluster still has its workers and runs a new job correctly (no worker lost for
good).
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any, Iterator

import pytest

import sabot_test_nodes as nodes

SETTINGS = {
    **nodes.CHAOS_SETTINGS,
    "SABOT_HEARTBEAT_S": "0.2",
    "SABOT_NODE_TIMEOUT_S": "2",
    "SABOT_MORSEL_TIMEOUT_S": "2",
    "SABOT_MAX_ATTEMPTS": "2",
    "MORSEL_SIZE_KB": "1",
}

#: fault kind -> what the job's error must say
FAULTS = {
    "raise": ["ValueError", "poison item 5 refused on purpose"],
    "exit": ["attempt"],
    "segv": ["attempt"],
    "hang": ["timed out", "SABOT_MORSEL_TIMEOUT_S"],
}


@pytest.fixture
def cluster(tmp_path: Path) -> Iterator[Any]:
    c = nodes.Cluster(tmp_path / "cluster", SETTINGS)
    c.start_coordinator()
    for _ in range(3):
        c.add_worker(wait=False)
    c.wait_workers(3)
    yield c
    c.stop()


def faulty_items(kind: str) -> list[str]:
    procs = nodes.chaos_procs()
    items = procs.make_items(30, pad=10)
    items[5] = items[5].replace(":ok:", f":{kind}:")
    return items


@pytest.mark.parametrize("kind", list(FAULTS))
def test_faulty_function_fails_its_job_only(cluster: Any, kind: str) -> None:
    procs = nodes.chaos_procs()
    bad_id = cluster.coordinator.submit(faulty_items(kind), "chaos_fault")
    good_items = procs.make_items(300)
    good_id = cluster.coordinator.submit(good_items, "chaos_slow")
    bad = cluster.coordinator.wait_job(bad_id, timeout=120)
    assert bad["status"] == "failed", (bad, cluster.logs())
    for needle in FAULTS[kind]:
        assert needle in bad["error"], (needle, bad["error"])
    assert "morsel" in bad["error"]  # says where
    good = cluster.coordinator.wait_job(good_id, timeout=180)
    assert good["status"] == "completed", (good, cluster.logs())
    assert good["result"] == [procs.answer(x) for x in good_items]
    # No worker lost for good: three alive workers (crashed ones restarted or back), and a new
    # job runs correctly on them.
    deadline = time.monotonic() + 20  # a worker that reconnects does so within seconds
    while len(cluster.alive_workers()) < 3:
        assert time.monotonic() < deadline, (cluster.alive_workers(), cluster.logs())
        time.sleep(0.2)
    again_items = procs.make_items(60)
    again = cluster.coordinator.wait_job(cluster.coordinator.submit(again_items, "chaos_fast"),
                                         timeout=120)
    assert again["result"] == [procs.answer(x) for x in again_items]
    nodes.record(f"user function: {kind}", variant="ci", jobs=3, faulty_jobs_failed=1,
                 other_jobs_completed=2, workers_alive_after=len(cluster.alive_workers()),
                 worker_processes_running=sum(w.running() for w in cluster.workers),
                 results_checked=len(good_items) + len(again_items), lost=0, duplicated=0)
