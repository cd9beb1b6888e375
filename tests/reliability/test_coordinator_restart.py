"""The coordinator SIGKILLed at random points of its jobs and restarted on the same data dir.

Kill points: during submits (requests in flight, some acknowledged, some not), mid-run (morsels
out on workers), and during result collection (a client paging through a result). After each
restart, on the same SABOT_DATA_DIR and ports, the workers find it again. At the end:

* every acknowledged job completes, with every result exactly once and equal to a serial run;
* every other job the coordinator knows of (a submit that was not acknowledged) is complete and
  correct too — never half-done, never with missing or extra items.

The default run kills 3 times (one per point); ``-m slow`` kills 10 times at random points.
"""

from __future__ import annotations

import random
import threading
import time
from pathlib import Path
from typing import Any, Iterator

import pytest

import sabot_test_nodes as nodes

SETTINGS = {
    **nodes.CHAOS_SETTINGS,
    "SABOT_HEARTBEAT_S": "0.2",
    "SABOT_NODE_TIMEOUT_S": "1.5",
    "MORSEL_SIZE_KB": "1",
    "SABOT_MAX_ATTEMPTS": "25",
}
POINTS = ("submit", "mid-run", "collection")


@pytest.fixture
def cluster(tmp_path: Path) -> Iterator[Any]:
    c = nodes.Cluster(tmp_path / "cluster", SETTINGS)
    yield c
    c.stop()


class Submitter:
    """Submits jobs of distinct sizes, so any job found later tells which input it had."""

    def __init__(self, cluster: Any) -> None:
        self.cluster = cluster
        self.procs = nodes.chaos_procs()
        self.next_size = {"chaos_slow": 120, "chaos_fast": 4000}
        self.acked: dict[str, int] = {}
        self.unacked: list[int] = []
        self.lock = threading.Lock()

    def submit(self, processor: str = "chaos_slow") -> str | None:
        with self.lock:
            n = self.next_size[processor]
            self.next_size[processor] += 1
        try:
            reply = self.cluster.coordinator.request(
                "POST", "/submit_job",
                {"data": self.procs.make_items(n), "processor_func": processor}, timeout=30)
        except Exception:  # connection refused/reset while the coordinator is down: no ack
            with self.lock:
                self.unacked.append(n)
            return None
        assert reply.status == 200, reply  # an answer is an ack or a refusal, never a 5xx
        with self.lock:
            self.acked[reply.json["job_id"]] = n
        return str(reply.json["job_id"])


def kill_during_submits(cluster: Any, sub: Submitter, rng: random.Random) -> None:
    # Larger bodies (4000+ items, a fast function), so the kill lands inside some submits.
    threads = [threading.Thread(target=sub.submit, args=("chaos_fast",)) for _ in range(8)]
    for t in threads:
        t.start()
        time.sleep(rng.uniform(0, 0.02))
    time.sleep(rng.uniform(0, 0.05))
    cluster.coordinator.kill()
    for t in threads:
        t.join(60)


def kill_mid_run(cluster: Any, sub: Submitter, rng: random.Random) -> None:
    ids = [sub.submit() for _ in range(2)]
    deadline = time.monotonic() + 60
    while True:
        progress = cluster.coordinator.job(str(ids[0]))["progress"]
        if progress["done"] > 0:
            break
        assert time.monotonic() < deadline, cluster.logs()
        time.sleep(0.05)
    time.sleep(rng.uniform(0, 0.5))
    cluster.coordinator.kill()


def kill_during_collection(cluster: Any, sub: Submitter, rng: random.Random) -> None:
    job_id = str(sub.submit())
    cluster.coordinator.wait_job(job_id, timeout=120)
    stop = threading.Event()

    def page_through() -> None:
        offset = 0
        while not stop.is_set():
            try:
                page = cluster.coordinator.job(job_id, f"?offset={offset}&limit=7")
            except Exception:
                return  # the coordinator died under the client: expected here
            offset = page.get("next_offset") or 0

    reader = threading.Thread(target=page_through)
    reader.start()
    time.sleep(rng.uniform(0.05, 0.3))
    cluster.coordinator.kill()
    stop.set()
    reader.join(30)


def run_kills(cluster: Any, kills: int, variant: str, seed: int) -> None:
    rng = random.Random(seed)
    cluster.start_coordinator()
    for _ in range(2):
        cluster.add_worker(wait=False)
    cluster.wait_workers(2)
    sub = Submitter(cluster)
    points = []
    for i in range(kills):
        point = POINTS[i] if i < len(POINTS) else rng.choice(POINTS)
        points.append(point)
        {"submit": kill_during_submits, "mid-run": kill_mid_run,
         "collection": kill_during_collection}[point](cluster, sub, rng)
        assert not cluster.coordinator.running()
        cluster.restart_coordinator()
        cluster.wait_workers(2)
    procs = sub.procs
    checked = lost = duplicated = wrong = 0
    for job_id, n in sub.acked.items():
        job = cluster.coordinator.wait_job(job_id, timeout=300)
        assert job["status"] == "completed", (job_id, job, cluster.logs())
        expected = [procs.answer(x) for x in procs.make_items(n)]
        got = job["result"]
        checked += len(got)
        lost += len(set(expected) - set(got))
        duplicated += len(got) - len(set(got))
        wrong += sum(1 for a, b in zip(got, expected) if a != b)
    # Jobs the coordinator knows of but never acknowledged: complete and correct, never half.
    listed = cluster.coordinator.request("GET", "/jobs?limit=10000").json["jobs"]
    extra = [j for j in listed if j["job_id"] not in sub.acked]
    for j in extra:
        n = int(j["items"])
        assert n in sub.unacked, (j, sub.unacked)
        job = cluster.coordinator.wait_job(j["job_id"], timeout=300)
        assert job["status"] == "completed", job
        assert job["result"] == [procs.answer(x) for x in procs.make_items(n)]
        checked += len(job["result"])
    nodes.record("coordinator SIGKILL and restart", variant=variant, jobs=len(sub.acked),
                 kills=kills, kill_points=points, unacknowledged_submits=len(sub.unacked),
                 unacknowledged_found_complete=len(extra), results_checked=checked, lost=lost,
                 duplicated=duplicated, wrong=wrong)
    assert (lost, duplicated, wrong) == (0, 0, 0)
    assert sub.acked, "no submit was acknowledged: the test proved nothing"


def test_coordinator_killed_at_each_point_and_restarted(cluster: Any) -> None:
    run_kills(cluster, kills=3, variant="ci", seed=5)


@pytest.mark.slow
def test_coordinator_killed_10_times_at_random_points(cluster: Any) -> None:
    run_kills(cluster, kills=10, variant="slow", seed=11)
