"""A function that hangs, then a cancel; and a worker that dies while its pool processes run.

* cancel: one worker with MAX_WORKERS=2 and no morsel timeout runs 40 items of a function that
  sleeps for an hour; the job is cancelled over HTTP while its items run. The pool processes
  that ran them are killed (and replaced), and a following 50-item job completes correctly on
  the same worker.
* orphans: a worker whose pool processes are busy in user code gets SIGTERM (or SIGKILL); its
  pool processes are gone shortly after (no process outlives the node that started it).
"""

from __future__ import annotations

import signal
import time
from pathlib import Path
from typing import Any, Iterator

import psutil
import pytest

import sabot_test_nodes as nodes

SETTINGS = {
    **nodes.CHAOS_SETTINGS,
    "SABOT_HEARTBEAT_S": "0.2",
    "SABOT_NODE_TIMEOUT_S": "2",
    "MAX_WORKERS": "2",
}
#: Generous: a deadline for something that happens in well under a second when it works.
DEADLINE_S = 60.0


@pytest.fixture
def cluster(tmp_path: Path) -> Iterator[Any]:
    c = nodes.Cluster(tmp_path / "cluster", SETTINGS)
    c.start_coordinator()
    yield c
    c.stop()


def pool_children(worker: Any) -> list[psutil.Process]:
    """The worker's pool processes (children running sabot's pool main)."""
    out = []
    for p in psutil.Process(worker.pid).children(recursive=True):
        try:
            if "sabot.engine.worker_process" in " ".join(p.cmdline()):
                out.append(p)
        except psutil.NoSuchProcess:
            continue
    return out


def busy_pool(worker: Any, at_least: int) -> list[int]:
    """The pids of ``worker``'s pool processes once it has ``at_least`` of them."""
    deadline = time.monotonic() + DEADLINE_S
    while True:
        pids = [p.pid for p in pool_children(worker)]
        if len(pids) >= at_least:
            return pids
        assert time.monotonic() < deadline, ("no pool process", worker.log_tail())
        time.sleep(0.1)


def wait_gone(pids: list[int], what: str, logs: Any) -> float:
    """Seconds until none of ``pids`` runs (zombies count as gone); fails after DEADLINE_S."""
    t0 = time.monotonic()
    while True:
        alive = [pid for pid in pids if psutil.pid_exists(pid) and
                 _status(pid) not in (psutil.STATUS_ZOMBIE, psutil.STATUS_DEAD, None)]
        if not alive:
            return time.monotonic() - t0
        assert time.monotonic() - t0 < DEADLINE_S, (f"{what}: {alive} still run", logs())
        time.sleep(0.1)


def _status(pid: int) -> str | None:
    try:
        return psutil.Process(pid).status()
    except psutil.NoSuchProcess:
        return None


def test_cancel_kills_hung_calls_and_the_worker_takes_the_next_job(cluster: Any) -> None:
    procs = nodes.chaos_procs()
    worker = cluster.add_worker()
    cluster.wait_workers(1)
    coordinator = cluster.coordinator
    hang = procs.make_items(40, pad=10, kind="hang")
    hung_id = coordinator.submit(hang, "chaos_fault")
    # Its items are running: the coordinator shows the morsel on the worker, and the worker's
    # pool processes have it.
    deadline = time.monotonic() + DEADLINE_S
    while not any(n.get("running", 0) for n in cluster.alive_workers()):
        assert time.monotonic() < deadline, cluster.logs()
        time.sleep(0.1)
    time.sleep(2.0)  # the items are inside their hour-long sleep by now
    before = busy_pool(worker, at_least=2)
    reply = coordinator.request("DELETE", f"/job/{hung_id}")
    assert reply.status == 200 and reply.json["status"] == "cancelled", reply
    # The processes that ran the hung calls are killed ...
    killed_s = wait_gone(before, "pool processes of the cancelled job", cluster.logs)
    # ... and the worker takes the next job at once.
    items = procs.make_items(50)
    t0 = time.monotonic()
    job = coordinator.wait_job(coordinator.submit(items, "chaos_slow"), timeout=120)
    next_job_s = time.monotonic() - t0
    assert job["status"] == "completed", (job, cluster.logs())
    assert job["result"] == [procs.answer(x) for x in items]
    # Replaced: the pool runs again, with fresh processes.
    assert worker.running()
    after = [p.pid for p in pool_children(worker)]
    assert after and not set(after) & set(before), (before, after)
    nodes.record("hung function cancelled, then a new job", variant="ci", jobs=2,
                 results_checked=len(items), lost=0, duplicated=0,
                 hung_processes_killed=len(before),
                 seconds_cancel_to_processes_gone=round(killed_s, 2),
                 seconds_next_job=round(next_job_s, 2))


@pytest.mark.parametrize(("sig", "cancel_first"),
                         [(signal.SIGTERM, False), (signal.SIGTERM, True), (signal.SIGKILL, False)],
                         ids=["sigterm", "cancel-then-sigterm", "sigkill"])
def test_no_pool_process_outlives_its_worker(cluster: Any, sig: int, cancel_first: bool) -> None:
    procs = nodes.chaos_procs()
    worker = cluster.add_worker()
    cluster.wait_workers(1)
    coordinator = cluster.coordinator
    job_id = coordinator.submit(procs.make_items(40, pad=10, kind="hang"), "chaos_fault")
    deadline = time.monotonic() + DEADLINE_S
    while not any(n.get("running", 0) for n in cluster.alive_workers()):
        assert time.monotonic() < deadline, cluster.logs()
        time.sleep(0.1)
    time.sleep(1.0)
    children = busy_pool(worker, at_least=2)
    if cancel_first:
        assert coordinator.request("DELETE", f"/job/{job_id}").status == 200
        time.sleep(1.0)
    worker.signal(sig)
    worker.proc.wait(DEADLINE_S)  # the worker itself ends (SIGTERM: drains, then exits)
    gone_s = wait_gone(children, f"pool processes after {signal.Signals(sig).name}",
                       cluster.logs)
    what = "cancel, then " if cancel_first else ""
    nodes.record(f"worker {what}{signal.Signals(sig).name} with busy pool processes", variant="ci",
                 jobs=1, kills=1, pool_processes=len(children),
                 seconds_worker_exit_to_pool_gone=round(gone_s, 2))
