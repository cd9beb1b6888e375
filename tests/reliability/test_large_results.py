"""Results larger than the coordinator's memory (#16 item 4), on real processes on loopback.

* never fetched: twelve jobs of ~40 MB results each (480 MB in all) with SABOT_RESULT_MEMORY_MB
  =64: the coordinator's RSS (VmRSS of /proc/<pid>/status) stays within its budget of what it
  was before the jobs (plus what is in flight), also while idle afterwards; every result is
  right when fetched later, and again after a SIGKILL and a restart on the same data dir. The
  results live in files under SABOT_DATA_DIR/results, not in the journal's rows.
* retention: finished jobs' results are kept by bytes (SABOT_RESULT_RETENTION_MB) and by age
  (SABOT_RESULT_TTL_S): past the bytes the oldest job goes, past the age every one goes, their
  files with them, and asking for a job that went answers HTTP 410 saying by which setting
  (the Python API raises JobExpiredError), never a hang or a 500.

``-m slow`` runs the long form: ~100 MB results, a 128 MB budget.
"""

from __future__ import annotations

import asyncio
import contextlib
import sqlite3
import threading
import time
from pathlib import Path
from typing import Any, Iterator

import pytest

import sabot_test_nodes as nodes
from sabot import JobExpiredError
from sabot.config import load_config
from sabot.distributed import create_distributed_coordinator, get_distributed_job_result

MIB = 1 << 20


def _rss_mib(pid: int) -> float:
    with open(f"/proc/{pid}/status", encoding="ascii") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    raise AssertionError(f"no VmRSS in /proc/{pid}/status")


class PeakRss:
    """Samples a process's RSS every 50 ms on a thread: the most it reached."""

    def __init__(self, pid: int) -> None:
        self.pid = pid
        self.peak = 0.0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                self.peak = max(self.peak, _rss_mib(self.pid))
            except (OSError, AssertionError):
                pass
            self._stop.wait(0.05)

    def stop(self) -> float:
        self._stop.set()
        self._thread.join()
        return self.peak


def _wait_completed(node: Any, job_id: str, timeout: float = 180) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while True:
        job = node.job(job_id, "?limit=0")
        if job["status"] == "completed":
            return job
        assert job["status"] in ("pending", "running"), job
        assert time.monotonic() < deadline, f"job {job_id} still {job['status']}"
        time.sleep(0.1)


def _check_results(node: Any, jobs: dict[str, list[str]]) -> int:
    """Every job's whole result equals a serial run; returns the items checked."""
    procs = nodes.chaos_procs()
    checked = 0
    for job_id, items in jobs.items():
        job = node.wait_job(job_id, timeout=180)
        assert job["status"] == "completed", job["status"]
        result = job["result"]
        assert len(result) == len(items), (job_id, len(result))
        bad = [i for i, (got, item) in enumerate(zip(result, items))
               if got != procs.big_answer(item)]
        assert not bad, f"job {job_id}: {len(bad)} wrong item(s), first {bad[0]}"
        checked += len(result)
    return checked


@pytest.fixture
def big_cluster(tmp_path: Path, request: pytest.FixtureRequest) -> Iterator[Any]:
    budget = 128 if nodes.slow_enabled(request.config) else 64
    c = nodes.Cluster(tmp_path / "cluster", {
        **nodes.CHAOS_SETTINGS, "MORSEL_SIZE_KB": "4", "SABOT_RESULT_MEMORY_MB": str(budget)})
    c.budget_mib = budget
    yield c
    c.stop()


def test_results_past_the_memory_budget_live_on_disk_and_survive_a_restart(
        big_cluster: Any, request: pytest.FixtureRequest) -> None:
    slow = nodes.slow_enabled(request.config)
    per_item = (2 if slow else 1) * MIB  # 4 items a morsel (MORSEL_SIZE_KB=4, 1 KB each)
    items_per_job = 50 if slow else 40  # ~100 MB / ~40 MB a job
    budget = big_cluster.budget_mib
    procs = nodes.chaos_procs()
    coordinator = big_cluster.start_coordinator()
    big_cluster.add_worker()
    big_cluster.wait_workers(1)
    time.sleep(1)
    base = _rss_mib(coordinator.pid)
    peak = PeakRss(coordinator.pid)
    jobs: dict[str, list[str]] = {}
    try:
        for n in range(12):
            # Distinct inputs per job (its number in each item's padding), so no two are alike.
            items = [it + f"-{n}" for it in procs.make_big_items(items_per_job, per_item)]
            job_id = coordinator.submit(items, "chaos_big")
            jobs[job_id] = items
            _wait_completed(coordinator, job_id)
        time.sleep(1)
        idle = _rss_mib(coordinator.pid)
    finally:
        top = peak.stop()
    total_mib = sum(len(v) for v in jobs.values()) * per_item / MIB
    # What it took from the system is within the budget: its RSS grew by the budget plus
    # what is in flight at once (a few morsels' results on their way to disk), not by the
    # 480 MB (1.2 GB) its jobs returned; and so is what it says it holds.
    assert idle - base <= budget + 32, (base, idle, total_mib)
    assert top - base <= 2 * budget + 32, (base, top, total_mib)
    stats = coordinator.request("GET", "/stats").json["results"]
    held = stats["memory"]["held_bytes"] / MIB
    assert held <= budget, stats
    # The results are in files beside the journal, not in its rows.
    data_dir = big_cluster.root / "coordinator-data"
    files = list((data_dir / "results").rglob("*.bin"))
    on_disk = sum(f.stat().st_size for f in files)
    assert on_disk >= 0.95 * total_mib * MIB, (on_disk, total_mib)
    assert (data_dir / "coordinator.sqlite3").stat().st_size < 16 * MIB

    checked = _check_results(coordinator, jobs)
    coordinator.kill()
    restarted = big_cluster.restart_coordinator()
    checked_after = _check_results(restarted, jobs)
    nodes.record("large results never fetched", variant="slow" if slow else "ci",
                 jobs=len(jobs), kills=1, results_checked=checked + checked_after, lost=0,
                 duplicated=0, results_mib=round(total_mib), memory_budget_mib=budget,
                 rss_before_mib=round(base), rss_peak_mib=round(top),
                 rss_idle_mib=round(idle), held_mib=round(held, 1))


def _wait_gone(node: Any, job_id: str, timeout: float = 60) -> nodes.HttpReply:
    deadline = time.monotonic() + timeout
    while True:
        reply = node.request("GET", f"/job/{job_id}?limit=0")
        if reply.status != 200:
            return reply
        assert time.monotonic() < deadline, f"job {job_id} still kept after {timeout} s"
        time.sleep(0.1)


def _wait_removed(path: Path, timeout: float = 30) -> None:
    """Files go on the result files' thread, just after the journal lets the job go."""
    deadline = time.monotonic() + timeout
    while path.exists():
        assert time.monotonic() < deadline, f"{path} still there after {timeout} s"
        time.sleep(0.05)


def test_retention_by_bytes_and_age_lets_the_oldest_go_and_says_so(tmp_path: Path) -> None:
    ttl = 6.0
    cluster = nodes.Cluster(tmp_path / "cluster", {
        **nodes.CHAOS_SETTINGS, "MORSEL_SIZE_KB": "4", "SABOT_RESULT_RETENTION_MB": "20",
        "SABOT_RESULT_TTL_S": str(ttl)})
    procs = nodes.chaos_procs()
    try:
        coordinator = cluster.start_coordinator()
        cluster.add_worker()
        cluster.wait_workers(1)
        results_dir = cluster.root / "coordinator-data" / "results"
        # Three jobs of 8 MB results: 24 MB is over the 20 MB kept, so the first one goes
        # once the third finishes.
        jobs: dict[str, list[str]] = {}
        for n in range(3):
            items = [it + f"-{n}" for it in procs.make_big_items(8, MIB)]
            job_id = coordinator.submit(items, "chaos_big")
            jobs[job_id] = items
            _wait_completed(coordinator, job_id)
        first, *kept = jobs
        gone = _wait_gone(coordinator, first)
        assert gone.status == 410, gone
        assert "SABOT_RESULT_RETENTION_MB=20" in gone.json["error"], gone.json
        assert gone.json["code"] == "job_expired" and gone.json["job_id"] == first
        _wait_removed(results_dir / first)
        _check_results(coordinator, {k: jobs[k] for k in kept})
        # The Python API (ZeroMQ) says the same, at once.
        config = load_config(env={"SABOT_CLUSTER_KEY_FILE": str(cluster.key_file)})

        async def fetch() -> Any:
            handle = create_distributed_coordinator("127.0.0.1", coordinator.http_port,
                                                    config=config)
            try:
                return await get_distributed_job_result(handle, first, timeout=30)
            finally:
                await handle.stop()

        t0 = time.monotonic()
        with pytest.raises(JobExpiredError, match="SABOT_RESULT_RETENTION_MB"):
            asyncio.run(fetch())
        answered_s = time.monotonic() - t0

        # Past the age, the others go too (and a restart does not bring them back).
        for job_id in kept:
            reply = _wait_gone(coordinator, job_id, timeout=ttl + 60)
            assert reply.status == 410 and "SABOT_RESULT_TTL_S" in reply.json["error"], reply
            _wait_removed(results_dir / job_id)
        coordinator.kill()
        restarted = cluster.restart_coordinator()
        for job_id in jobs:
            assert restarted.request("GET", f"/job/{job_id}").status == 410
        assert list(results_dir.iterdir()) == []
        db = sqlite3.connect(cluster.root / "coordinator-data" / "coordinator.sqlite3")
        try:
            assert db.execute("SELECT COUNT(*) FROM morsels").fetchone()[0] == 0
        finally:
            db.close()
        nodes.record("result retention by bytes and age", variant="ci", jobs=len(jobs), kills=1,
                     results_checked=16, lost=0, duplicated=0, expired_by_bytes=1,
                     expired_by_age=2, expired_answer="HTTP 410 job_expired",
                     python_api_answer_s=round(answered_s, 2))
    finally:
        cluster.stop()


def _hwm_mib(pid: int) -> float:
    """The most resident memory the process ever had (VmHWM of /proc/<pid>/status)."""
    with open(f"/proc/{pid}/status", encoding="ascii") as f:
        for line in f:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    raise AssertionError(f"no VmHWM in /proc/{pid}/status")


@contextlib.contextmanager
def _sixteen_big_results(tmp_path: Path, **worker_env: str) -> Iterator[dict[str, Any]]:
    """A coordinator and one worker (``worker_env``) with SABOT_NODE_TIMEOUT_S=2 run a job of
    sixteen morsels of ~20 MB results each (32 items of 1 KB input and 10 MB answer, two a
    morsel); yields what the checks need: the coordinator, the job, its items, /stats, the
    coordinator's RSS before and its peak after, the results' MiB."""
    per_item = 10 * MIB
    cluster = nodes.Cluster(tmp_path / "cluster", {
        **nodes.CHAOS_SETTINGS, "MORSEL_SIZE_KB": "4", "SABOT_NODE_TIMEOUT_S": "2",
        "SABOT_HEARTBEAT_S": "0.5"})
    procs = nodes.chaos_procs()
    try:
        coordinator = cluster.start_coordinator()
        cluster.add_worker(**worker_env)
        cluster.wait_workers(1)
        time.sleep(1)
        base = _rss_mib(coordinator.pid)
        items = procs.make_big_items(32, per_item)
        job_id = coordinator.submit(items, "chaos_big")
        job = _wait_completed(coordinator, job_id)
        assert job["progress"]["morsels_total"] == 16, job["progress"]
        yield {"cluster": cluster, "coordinator": coordinator, "job_id": job_id, "job": job,
               "items": items, "hwm": _hwm_mib(coordinator.pid), "base": base,
               "stats": coordinator.request("GET", "/stats").json,
               "total_mib": len(items) * per_item / MIB}
    finally:
        cluster.stop()


def _no_stall(run: dict[str, Any]) -> dict[str, Any]:
    """Nobody was taken for dead: no morsel was requeued, each was handed out once; the
    coordinator's peak memory grew by far less than the results. Returns the counters."""
    stats, morsels = run["stats"], run["job"]["progress"]["morsels_total"]
    counters = stats["counters"]
    assert counters["morsels_requeued_node_lost"] == 0, counters
    assert counters["morsels_requeued"] == 0, counters
    assert counters["morsels_assigned"] == morsels, counters
    assert counters["results_refused"] == 0, counters
    assert stats["nodes_by_state"].get("dead", 0) == 0, stats["nodes_by_state"]
    assert len(run["cluster"].alive_workers()) == 1
    # (before chunks: each 40 MB result was in memory whole, up to the 256 MB budget)
    assert run["hwm"] - run["base"] < 0.5 * run["total_mib"], \
        (run["base"], run["hwm"], run["total_mib"])
    return counters


def _record_big(run: dict[str, Any], scenario: str, counters: dict[str, Any]) -> None:
    checked = _check_results(run["coordinator"], {run["job_id"]: run["items"]})
    nodes.record(scenario, variant="ci", jobs=1, kills=0, results_checked=checked, lost=0,
                 duplicated=0, results_mib=round(run["total_mib"]), node_timeout_s=2,
                 rss_before_mib=round(run["base"]), rss_hwm_mib=round(run["hwm"]),
                 node_losses=counters["morsels_requeued_node_lost"])


def test_big_morsel_results_travel_in_chunks_without_stalling_heartbeats(
        tmp_path: Path) -> None:
    """Sixteen morsels of ~20 MB results each (320 MB) with SABOT_NODE_TIMEOUT_S=2: a result
    sent as one ZeroMQ message held the worker's heartbeats behind it and the coordinator took
    it whole into memory. In chunks, no worker is taken for dead, every morsel is assigned
    once, and the coordinator never holds more than a fraction of what the job returned. (The
    worker does not use the data port, SABOT_SPOOL=0: its results go over ZeroMQ; the test
    below has them go through the data port.)"""
    with _sixteen_big_results(tmp_path, SABOT_SPOOL="0") as run:
        counters = _no_stall(run)
        morsels = run["job"]["progress"]["morsels_total"]
        assert counters["results_chunked"] == morsels, counters  # (20 MB: 5 chunks each)
        _record_big(run, "big results in chunks", counters)


def _partial_file(results_dir: Path, low: int, high: int, timeout: float = 120) -> Path:
    """The first temporary result file seen holding between ``low`` and ``high`` bytes (a
    result whose chunks are coming in), polled as fast as the test can."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for path in results_dir.glob("*/*.bin.tmp"):
            try:
                size = path.stat().st_size
            except FileNotFoundError:
                continue
            if low <= size <= high:
                return path
        time.sleep(0.001)
    raise AssertionError(f"no result was seen coming in chunks under {results_dir}")


def test_a_worker_killed_while_its_result_comes_in_chunks_leaves_no_partial_file(
        tmp_path: Path) -> None:
    """A worker SIGKILLed halfway through sending a 40 MB result (10 chunks of 4 MiB, at most
    4 ahead of their acknowledgements, so it cannot have sent it whole): the partial file is
    discarded, the morsel runs again elsewhere, and every result is right exactly once. (Over
    ZeroMQ: the workers do not use the data port, SABOT_SPOOL=0.)"""
    per_item = 40 * MIB  # 8 items: 8 morsels of one item each
    cluster = nodes.Cluster(tmp_path / "cluster", {
        **nodes.CHAOS_SETTINGS, "MORSEL_SIZE_KB": "4"})
    procs = nodes.chaos_procs()
    try:
        coordinator = cluster.start_coordinator()
        victim = cluster.add_worker(SABOT_SPOOL="0")
        cluster.wait_workers(1)
        results_dir = cluster.root / "coordinator-data" / "results"
        items = procs.make_big_items(8, per_item)
        job_id = coordinator.submit(items, "chaos_big")
        # One chunk appended, at most four more can be on their way: five of ten.
        partial = _partial_file(results_dir, 4 * MIB, 20 * MIB - 1)
        victim.kill()
        cluster.add_worker(SABOT_SPOOL="0")
        job = _wait_completed(coordinator, job_id)
        counters = coordinator.request("GET", "/stats").json["counters"]
        assert counters["results_cut_short"] >= 1, counters
        assert counters["morsels_requeued_node_lost"] >= 1, counters
        # Each morsel's result was taken once, all of them in chunks.
        assert counters["results_chunked"] == job["progress"]["morsels_total"], counters
        assert not list(results_dir.rglob("*.tmp")), list(results_dir.rglob("*.tmp"))
        assert not partial.exists()
        checked = _check_results(coordinator, {job_id: items})
        nodes.record("worker killed mid chunked result", variant="ci", jobs=1, kills=1,
                     results_checked=checked, lost=0, duplicated=0,
                     results_mib=round(len(items) * per_item / MIB),
                     cut_short=counters["results_cut_short"],
                     node_losses=counters["morsels_requeued_node_lost"])
    finally:
        cluster.stop()


def test_big_morsel_results_through_the_data_port_without_stalling_heartbeats(
        tmp_path: Path) -> None:
    """The same sixteen 20 MB results from a worker with a data dir of its own: they go through
    the coordinator's data port as files (not one of them over ZeroMQ, in chunks or whole), no
    worker is taken for dead, every morsel is assigned once, and the coordinator never holds
    more than a fraction of what the job returned."""
    with _sixteen_big_results(tmp_path) as run:
        counters = _no_stall(run)
        assert counters["results_chunked"] == 0, counters
        assert counters["spool_results"] == run["job"]["progress"]["morsels_total"], counters
        total = run["total_mib"] * MIB
        assert counters["data_port_bytes_in"] >= total, counters
        assert counters["bytes_received"] < total // 100, counters
        _record_big(run, "big results through the data port", counters)


def test_a_worker_killed_while_it_puts_a_result_leaves_no_partial_file(
        tmp_path: Path) -> None:
    """A worker with a data dir of its own SIGKILLed halfway through putting a 40 MB result
    through the data port (4 MiB a request): what came never takes the result's name, the
    morsel runs again on another worker, every result is right exactly once, and the upload's
    temporary file goes with the job's spool directory."""
    per_item = 40 * MIB
    cluster = nodes.Cluster(tmp_path / "cluster", {
        **nodes.CHAOS_SETTINGS, "MORSEL_SIZE_KB": "4"})
    procs = nodes.chaos_procs()
    try:
        coordinator = cluster.start_coordinator()
        victim = cluster.add_worker()
        cluster.wait_workers(1)
        spool_dir = cluster.root / "coordinator-data" / "spool"
        items = procs.make_big_items(8, per_item)
        job_id = coordinator.submit(items, "chaos_big")
        deadline = time.monotonic() + 120
        partial = None
        while partial is None:
            assert time.monotonic() < deadline, "no result was seen coming through the port"
            for path in spool_dir.glob("j-*/*.out.up-*.tmp"):
                try:
                    if 4 * MIB <= path.stat().st_size < 20 * MIB:
                        partial = path
                except FileNotFoundError:
                    continue
            time.sleep(0.001)
        final = partial.with_name(partial.name.split(".up-")[0])
        victim.kill()
        assert not final.exists()
        cluster.add_worker()
        job = _wait_completed(coordinator, job_id)
        counters = coordinator.request("GET", "/stats").json["counters"]
        assert counters["morsels_requeued_node_lost"] >= 1, counters
        assert counters["results_chunked"] == 0, counters
        assert counters["spool_results"] == job["progress"]["morsels_total"], counters
        checked = _check_results(coordinator, {job_id: items})
        deadline = time.monotonic() + 30
        while partial.exists():
            assert time.monotonic() < deadline, f"{partial} is still there"
            time.sleep(0.1)
        nodes.record("worker killed mid put of a result to the data port", variant="ci",
                     jobs=1, kills=1, results_checked=checked, lost=0, duplicated=0,
                     results_mib=round(len(items) * per_item / MIB),
                     node_losses=counters["morsels_requeued_node_lost"])
    finally:
        cluster.stop()
