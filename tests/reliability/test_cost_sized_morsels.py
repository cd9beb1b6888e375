"""Morsels sized by their measured cost, on real processes over loopback.

Morsels are cut by bytes (MORSEL_SIZE_KB), so 75 items of a 20 ms function make a morsel of
1.5 s. The coordinator learns each job's cost per item and runs such a morsel in pieces of
about SABOT_MORSEL_TARGET_S (coordinator/morsel_pieces.py):

* pieces: a job's morsels run in pieces and its results equal a serial run's, in order;
* a worker SIGKILLed in the middle of a morsel costs the piece it held, not the morsel: the
  items run twice are counted by the function itself, one file per worker;
* chaos: workers killed and replaced during one job (4 times in the default run, 20 with
  ``-m slow``) and the coordinator SIGKILLed and restarted on its data dir once, in between:
  the job completes with every result exactly once, equal to a serial run's.
"""

from __future__ import annotations

import random
import signal
import threading
import time
from pathlib import Path
from typing import Any, Iterator

import pytest

import sabot_test_nodes as nodes

TARGET_S = 0.1
SETTINGS = {
    **nodes.CHAOS_SETTINGS,
    "SABOT_HEARTBEAT_S": "0.2",
    "SABOT_NODE_TIMEOUT_S": "1.5",
    "SABOT_MORSEL_TARGET_S": str(TARGET_S),
}


@pytest.fixture
def cluster(tmp_path: Path) -> Iterator[Any]:
    c = nodes.Cluster(tmp_path / "cluster", SETTINGS)
    yield c
    c.stop()


def counters(cluster: Any) -> dict[str, Any]:
    return dict(cluster.coordinator.request("GET", "/stats").json.get("counters", {}))


def calls(path: Path) -> list[int]:
    """The item numbers a worker's function was called with, in order."""
    if not path.exists():
        return []
    return [int(line) for line in path.read_text().split()]


def test_costly_morsels_run_in_pieces(cluster: Any) -> None:
    cluster.start_coordinator()
    cluster.add_worker()
    procs = nodes.chaos_procs()
    # 1,600 items of ~2 ms: 16 morsels of 100 (~0.2 s each, twice the target).
    items = procs.make_items(1600)
    job_id = cluster.coordinator.submit(items, "chaos_ms")
    job = cluster.coordinator.wait_job(job_id, timeout=120)
    assert job["status"] == "completed", job
    assert job["result"] == [procs.answer(x) for x in items]
    assert job["progress"]["morsels_total"] == 16, job["progress"]
    # Some morsels ran as more than one piece (the first pieces measure the cost).
    assert counters(cluster)["morsel_pieces_assigned"] > 16

    # A cheap function's morsels run whole: no piece is cut once its cost is known.
    before = counters(cluster)["morsel_pieces_assigned"]
    cheap = cluster.coordinator.wait_job(cluster.coordinator.submit(items, "chaos_fast"), 60)
    assert cheap["result"] == [procs.answer(x) for x in items]
    probes = counters(cluster)["morsel_pieces_assigned"] - before
    assert probes < 16, probes  # at most the probes of the morsels sent before the first result


def test_a_killed_worker_costs_a_piece_not_its_morsel(cluster: Any, tmp_path: Path) -> None:
    cluster.start_coordinator()
    procs = nodes.chaos_procs()
    files = {}
    for name in ("a", "b"):
        files[name] = tmp_path / f"calls-{name}.txt"
        cluster.add_worker(wait=False, **{procs.CALLS_FILE_VAR: str(files[name])})
    cluster.wait_workers(2)
    victim, victim_file = cluster.workers[0], files["a"]
    # 1,200 items of 20 ms: 16 morsels of 75 (1.5 s each); pieces of ~0.1 s (~5 items).
    items = procs.make_items(1200)
    job_id = cluster.coordinator.submit(items, "chaos_slow_counted")
    # Kill the victim deep in a morsel: past its 40th item of the morsel it is in (counted by
    # morsel number, as a whole morsel would have run them all on it).
    per_morsel = 75
    deadline = time.monotonic() + 120
    while True:
        seen = calls(victim_file)
        if seen:
            current = seen[-1] // per_morsel
            if sum(1 for n in seen if n // per_morsel == current) >= 40:
                break
        assert time.monotonic() < deadline, cluster.logs()
        time.sleep(0.01)
    victim.signal(signal.SIGKILL)
    cluster.add_worker(wait=False, **{procs.CALLS_FILE_VAR: str(tmp_path / "calls-c.txt")})
    job = cluster.coordinator.wait_job(job_id, timeout=180)
    assert job["status"] == "completed", job
    assert job["result"] == [procs.answer(x) for x in items]
    everything = [n for f in (files["a"], files["b"], tmp_path / "calls-c.txt")
                  for n in calls(f)]
    ran_twice = len(everything) - len(set(everything))
    assert set(everything) == set(range(len(items)))
    nodes.record("worker kill -9 in a costly morsel", variant="ci", jobs=1, items=len(items),
                 kills=1, items_run_twice=ran_twice, morsel_items=per_morsel,
                 pieces=counters(cluster)["morsel_pieces_assigned"])
    # A whole morsel would have run its 40+ items again; a piece is ~5 (a probe ~9).
    assert ran_twice < 20, ran_twice


def wait_job_across_restarts(cluster: Any, job_id: str, timeout: float) -> dict[str, Any]:
    """Wait for the job, riding over the moments the coordinator is down."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            return cluster.coordinator.wait_job(job_id, timeout=max(1.0, deadline -
                                                                    time.monotonic()))
        except (OSError, ValueError, AssertionError):  # refused, reset or 503 while it restarts
            assert time.monotonic() < deadline, cluster.logs()
            time.sleep(0.2)


def run_chaos(cluster: Any, items_count: int, kills: int, variant: str) -> None:
    cluster.start_coordinator()
    for _ in range(3):
        cluster.add_worker(wait=False)
    cluster.wait_workers(3)
    procs = nodes.chaos_procs()
    items = procs.make_items(items_count)
    job_id = cluster.coordinator.submit(items, "chaos_slow")
    rng = random.Random(16)
    done = threading.Event()
    killed: list[int] = []
    restarts: list[float] = []
    problems: list[str] = []

    def chaos() -> None:
        time.sleep(1.5)
        while len(killed) < kills and not done.is_set():
            if len(killed) == kills // 2 and not restarts:
                # The coordinator too, once, mid-run: killed and restarted on its data dir.
                cluster.coordinator.kill()
                time.sleep(0.5)
                try:
                    cluster.restart_coordinator()
                except Exception as exc:  # reported by the test, not lost in the thread
                    problems.append(repr(exc))
                    return
                restarts.append(time.time())
            live = [w for w in cluster.workers if w.running()]
            if live:
                victim = rng.choice(live)
                victim.signal(signal.SIGKILL)
                killed.append(victim.pid)
                try:
                    cluster.add_worker(wait=False)
                except Exception as exc:
                    problems.append(repr(exc))
                    return
            done.wait(rng.uniform(0.6, 1.6))

    thread = threading.Thread(target=chaos, daemon=True)
    thread.start()
    try:
        job = wait_job_across_restarts(cluster, job_id, timeout=600)
    finally:
        done.set()
        thread.join(60)
    assert not problems, problems
    assert len(killed) >= min(kills, 3) and restarts, (len(killed), cluster.logs())
    assert job["status"] == "completed", job
    expected = [procs.answer(x) for x in items]
    got = job["result"]
    numbers = [int(str(v).split(":", 1)[0]) for v in got]
    lost = len(set(range(items_count)) - set(numbers))
    duplicated = len(numbers) - len(set(numbers))
    wrong = sum(1 for v in got if v not in expected)
    stats = counters(cluster)  # (of the coordinator since its restart)
    nodes.record("worker kill -9 chaos, cost-sized morsels, coordinator killed once",
                 variant=variant, jobs=1, items=items_count,
                 morsels=int(job["progress"]["morsels_total"]), kills=len(killed),
                 coordinator_kills=len(restarts), results_checked=len(got), lost=lost,
                 duplicated=duplicated, wrong=wrong,
                 pieces_after_restart=stats.get("morsel_pieces_assigned"))
    assert (lost, duplicated, wrong) == (0, 0, 0)
    assert got == expected
    # The morsels really were cost-sized after the restart as well.
    assert stats.get("morsel_pieces_assigned", 0) > 0, stats


def test_chaos_with_cost_sized_morsels_and_a_coordinator_kill(cluster: Any) -> None:
    run_chaos(cluster, items_count=3000, kills=4, variant="ci")


@pytest.mark.slow
def test_chaos_with_cost_sized_morsels_20_kills(cluster: Any) -> None:
    run_chaos(cluster, items_count=20000, kills=20, variant="slow")
