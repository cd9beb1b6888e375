"""Losing worker nodes never fails a job while a worker remains, with the default settings
(SABOT_MAX_ATTEMPTS=3, SABOT_NODE_TIMEOUT_S=5, 64 KiB morsels).

* rounds: every worker is SIGKILLed while it holds morsels, replaced, and killed again — three
  rounds, so the same morsels are lost three times (as many as SABOT_MAX_ATTEMPTS). The job
  completes with every result exactly once, and its status shows the morsels lost with nodes.
* one after another: three workers, a long job, a worker SIGKILLed every ~2.5 s and replaced at
  once (6 kills in CI, 24 with ``-m slow``): the job completes with every result exactly once.

Both measure how long the coordinator takes from a worker's death to noticing it (its morsels
are requeued in the same turn): the connection's close, seen at once, not the heartbeat
timeout.
"""

from __future__ import annotations

import random
import signal
import statistics
import threading
import time
from pathlib import Path
from typing import Any, Iterator

import pytest

import sabot_test_nodes as nodes

SETTINGS = {**nodes.CHAOS_SETTINGS}  # everything else at its default
#: Generous: a deadline for what takes seconds when it works.
DEADLINE_S = 120.0


@pytest.fixture
def cluster(tmp_path: Path) -> Iterator[Any]:
    c = nodes.Cluster(tmp_path / "cluster", SETTINGS)
    yield c
    c.stop()


def check_exactly_once(items: list[str], job: dict[str, Any]) -> dict[str, int]:
    """Compare with a serial run: (checked, lost, duplicated, wrong)."""
    procs = nodes.chaos_procs()
    expected = [procs.answer(x) for x in items]
    result = job["result"]
    got: dict[int, str] = {}
    duplicated = 0
    for value in result:
        n = int(str(value).split(":", 1)[0])
        duplicated += n in got
        got[n] = value
    lost = sum(1 for n in range(len(items)) if n not in got)
    wrong = sum(1 for n, v in got.items() if n >= len(expected) or v != expected[n])
    return {"results_checked": len(result), "lost": lost, "duplicated": duplicated,
            "wrong": wrong, "in_order": int(result == expected)}


def node_states(cluster: Any) -> dict[int, str]:
    nodes_ = cluster.coordinator.request("GET", "/nodes", timeout=10).json["nodes"]
    return {int(n["pid"]): str(n.get("status", n.get("state"))) for n in nodes_
            if n.get("role") == "worker" and n.get("pid")}


def seconds_until_dead(cluster: Any, pids: list[int], killed_at: float) -> float:
    """From ``killed_at`` until the coordinator lists every one of ``pids`` as not alive
    (polled every 20 ms: an upper bound of when it noticed)."""
    while True:
        states = node_states(cluster)
        if all(states.get(p, "dead") != "alive" for p in pids):
            return time.monotonic() - killed_at
        assert time.monotonic() - killed_at < DEADLINE_S, (states, cluster.logs())
        time.sleep(0.02)


def wait_running(cluster: Any, workers: list[Any]) -> None:
    """Until each of ``workers`` holds a morsel, as the coordinator sees it."""
    pids = {w.pid for w in workers}
    deadline = time.monotonic() + DEADLINE_S
    while True:
        busy = {int(n["pid"]) for n in cluster.alive_workers() if n.get("running", 0) > 0}
        if pids <= busy:
            return
        assert time.monotonic() < deadline, (busy, pids, cluster.logs())
        time.sleep(0.05)


def test_every_worker_killed_three_rounds_the_job_completes(cluster: Any) -> None:
    procs = nodes.chaos_procs()
    cluster.start_coordinator()
    workers = [cluster.add_worker(wait=False) for _ in range(3)]
    cluster.wait_workers(3)
    items = procs.make_items(6000)
    job_id = cluster.coordinator.submit(items, "chaos_ms")
    detect: list[float] = []
    losses: dict[str, Any] = {}
    for _ in range(3):
        wait_running(cluster, workers)
        pids = [w.pid for w in workers]
        killed_at = time.monotonic()
        for w in workers:
            w.signal(signal.SIGKILL)
        detect.append(seconds_until_dead(cluster, pids, killed_at))
        # While the job runs its status shows what the losses cost: morsels requeued for
        # lost nodes, the most times one morsel was lost.
        losses = cluster.coordinator.job(job_id, "?limit=0")["node_losses"] or losses
        for w in workers:
            w.kill()  # reap
        workers = [cluster.add_worker(wait=False) for _ in range(3)]
        cluster.wait_workers(3)
    job = cluster.coordinator.wait_job(job_id, timeout=300)
    assert job["status"] == "completed", (job.get("error"), cluster.logs())
    figures = check_exactly_once(items, job)
    assert figures["lost"] == 0 and figures["duplicated"] == 0 and figures["wrong"] == 0, figures
    assert losses["requeued"] >= 9 and losses["most_for_one_morsel"] >= 3, losses
    nodes.record("every worker SIGKILLed, three rounds", variant="ci", jobs=1, kills=9,
                 items=len(items), morsels=job["progress"]["morsels_total"],
                 requeued_for_node_loss=losses["requeued"],
                 most_losses_one_morsel=losses["most_for_one_morsel"],
                 seconds_death_to_requeue_max=round(max(detect), 3),
                 seconds_death_to_requeue_median=round(statistics.median(detect), 3),
                 **figures)


def run_one_after_another(cluster: Any, items_count: int, kills: int, min_kills: int,
                          variant: str) -> None:
    procs = nodes.chaos_procs()
    cluster.start_coordinator()
    for _ in range(3):
        cluster.add_worker(wait=False)
    cluster.wait_workers(3)
    items = procs.make_items(items_count)
    job_id = cluster.coordinator.submit(items, "chaos_ms")
    rng = random.Random(16)
    done = threading.Event()
    killed: list[int] = []
    detect: list[float] = []
    problems: list[str] = []
    losses: dict[str, Any] = {"requeued": 0, "most_for_one_morsel": 0}

    def chaos() -> None:
        time.sleep(2.0)
        killed_at = time.monotonic()
        while len(killed) < kills and not done.is_set():
            live = [w for w in cluster.workers if w.running()]
            if live:
                victim = rng.choice(live)
                killed_at = time.monotonic()
                victim.signal(signal.SIGKILL)
                killed.append(victim.pid)
                try:
                    cluster.add_worker(wait=False)
                    detect.append(seconds_until_dead(cluster, [victim.pid], killed_at))
                    seen = cluster.coordinator.job(job_id, "?limit=0")["node_losses"]
                    if seen is not None:
                        losses.update(seen)
                except Exception as exc:  # reported by the test, not lost in the thread
                    problems.append(repr(exc))
                    return
            done.wait(max(0.0, 2.5 - (time.monotonic() - killed_at)))

    thread = threading.Thread(target=chaos, daemon=True)
    thread.start()
    try:
        job = cluster.coordinator.wait_job(job_id, timeout=900)
    finally:
        done.set()
        thread.join(60)
    assert not problems, problems
    assert job["status"] == "completed", (job.get("error"), cluster.logs())
    assert len(killed) >= min_kills, (len(killed), cluster.logs())  # it hit the job
    figures = check_exactly_once(items, job)
    counters = cluster.coordinator.request("GET", "/stats").json.get("counters", {})
    nodes.record("workers SIGKILLed one after another, default settings", variant=variant,
                 jobs=1, kills=len(killed), items=items_count,
                 morsels=job["progress"]["morsels_total"],
                 requeued_for_node_loss=counters.get("morsels_requeued_node_lost"),
                 most_losses_one_morsel_seen=losses["most_for_one_morsel"],
                 duplicates_ignored=counters.get("duplicates_ignored"),
                 seconds_death_to_requeue_max=round(max(detect), 3) if detect else None,
                 seconds_death_to_requeue_median=round(statistics.median(detect), 3)
                 if detect else None, **figures)
    assert figures["lost"] == 0 and figures["duplicated"] == 0 and figures["wrong"] == 0, figures
    assert figures["in_order"] == 1


def test_workers_killed_one_after_another_never_fail_the_job(cluster: Any) -> None:
    run_one_after_another(cluster, items_count=30_000, kills=6, min_kills=3, variant="ci")


@pytest.mark.slow
def test_workers_killed_one_after_another_24_times(cluster: Any) -> None:
    run_one_after_another(cluster, items_count=150_000, kills=24, min_kills=20,
                          variant="slow")
