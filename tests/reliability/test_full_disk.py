"""A coordinator whose data disk fills up (#16 item 1), on a real 20 MB tmpfs: it keeps running
in a degraded mode instead of dying. Submits it cannot journal are refused at once with HTTP
507 naming SABOT_DATA_DIR and the free space, /health and /ready answer 503 with the reason (a
liveness probe notices), reads go on being served, results it cannot journal are kept, and
once space returns it accepts submits again on its own, with every acknowledged job's result
right, also after a SIGKILL and restart.

Needs the right to mount a tmpfs (root); skipped with the reason otherwise."""

from __future__ import annotations

import asyncio
import os
import subprocess
import time
from pathlib import Path
from typing import Any, Iterator

import pytest

import sabot_test_nodes as nodes
from sabot import JournalUnwritableError
from sabot.config import load_config
from sabot.distributed import create_distributed_coordinator, submit_distributed_job

ITEM = "x" * 1000
ITEMS = [ITEM] * 1500  # ~1.5 MB a job; processor "len" answers 1000 per item


@pytest.fixture
def small_disk(tmp_path: Path) -> Iterator[Path]:
    mount = tmp_path / "disk"
    mount.mkdir()
    if os.geteuid() != 0:
        pytest.skip("mounting a tmpfs needs root")
    proc = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=20m", "tmpfs", str(mount)],
                          capture_output=True, text=True, check=False)
    if proc.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {proc.stderr.strip()}")
    try:
        yield mount
    finally:
        subprocess.run(["umount", "-l", str(mount)], check=False)


def _submit(node: Any, items: list[str]) -> nodes.HttpReply:
    return node.request("POST", "/submit_job", {"data": items, "processor_func": "len"},
                        timeout=30)


async def _submit_over_zeromq(cluster: nodes.Cluster, coordinator: nodes.NodeProcess) -> str:
    """A submit from the Python API (ZeroMQ, CURVE), as a remote client sends it."""
    config = load_config(env={"SABOT_CLUSTER_KEY_FILE": str(cluster.key_file)})
    handle = create_distributed_coordinator("127.0.0.1", coordinator.http_port, config=config)
    try:
        return await submit_distributed_job(handle, ITEMS[:10], "len")
    finally:
        await handle.stop()


def _wait(what: str, check: Any, node: nodes.NodeProcess, timeout: float = 60) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if value:
            return value
        assert node.running(), f"the coordinator exited:\n{node.log_tail()}"
        assert time.monotonic() < deadline, f"{what} after {timeout} s:\n{node.log_tail()}"
        time.sleep(0.1)


def test_a_full_data_disk_refuses_submits_serves_reads_and_recovers_on_its_own(
        tmp_path: Path, small_disk: Path) -> None:
    filler = small_disk / "filler"
    filler.write_bytes(b"\0" * (6 << 20))  # freed later: "space returns"
    data_dir = small_disk / "data"
    cluster = nodes.Cluster(tmp_path / "c")
    coordinator = cluster.start_coordinator(SABOT_DATA_DIR=str(data_dir))
    try:
        # Fill the disk: no worker yet, so every job keeps its input in the journal. The disk
        # fills over a few seconds, as it does in use, not in one burst: the journal's
        # checkpoints (every 0.2 s) fold its WAL into the database file as it goes. (A burst
        # leaves everything in the WAL, and folding that in later needs as much room again.)
        acknowledged: list[str] = []
        refused = None
        for _ in range(40):
            reply = _submit(coordinator, ITEMS)  # never a hang: the request's timeout is 30 s
            if reply.status != 200:
                refused = reply
                break
            acknowledged.append(reply.json["job_id"])
            time.sleep(0.3)
        assert refused is not None, "the disk never filled up"
        assert refused.status == 507, refused
        body = refused.json
        assert "SABOT_DATA_DIR" in body["error"] and "free" in body["error"], body
        assert body["data_dir"] == str(data_dir) and isinstance(body["free_bytes"], int), body
        assert refused.headers.get("Retry-After"), refused.headers
        assert acknowledged

        # Degraded, not dead: health fails with the reason, reads are served.
        health = coordinator.request("GET", "/health")
        assert health.status == 503 and health.json["status"] == "failing", health
        assert "journal cannot be written" in health.json["problem"], health
        assert coordinator.request("GET", "/ready").status == 503
        listed = {j["job_id"] for j in coordinator.request("GET", "/jobs?limit=100").json["jobs"]}
        assert set(acknowledged) <= listed
        stats = coordinator.request("GET", "/stats")
        assert stats.status == 200, stats
        assert stats.json["coordinator"]["journal_status"]["state"] == "unwritable"
        assert _submit(coordinator, ITEMS[:10]).status == 507  # still refused, at once
        with pytest.raises(JournalUnwritableError, match="SABOT_DATA_DIR") as refusal:
            asyncio.run(_submit_over_zeromq(cluster, coordinator))
        assert refusal.value.data_dir == str(data_dir)

        # A worker runs the acknowledged jobs; results the journal cannot take are kept.
        cluster.add_worker()
        for job_id in acknowledged:
            job = coordinator.wait_job(job_id, timeout=120)
            assert job["status"] == "completed" and job["result"] == [1000] * len(ITEMS), \
                job["status"]
        # The disk is as full as it was: still refusing (it tries again once there is room).
        assert coordinator.request("GET", "/health").status == 503

        # Space returns: it accepts submits again by itself, no restart.
        filler.unlink()
        freed = time.monotonic()
        _wait("still failing", lambda: coordinator.request("GET", "/health").status == 200,
              coordinator)
        resumed_s = time.monotonic() - freed
        assert coordinator.request("GET", "/ready").status == 200
        after = _submit(coordinator, ITEMS[:100])
        assert after.status == 200, after
        acknowledged.append(after.json["job_id"])
        assert coordinator.wait_job(after.json["job_id"])["result"] == [1000] * 100
        assert coordinator.running()
        log = coordinator.log_text()
        assert "cannot be written" in log and "can be written again" in log

        # Nothing acknowledged is lost: after a SIGKILL and restart every job and result is
        # there (what was kept in memory was written once space returned).
        coordinator.kill()
        restarted = cluster.restart_coordinator()
        checked = 0
        for job_id in acknowledged:
            job = restarted.wait_job(job_id, timeout=120)
            assert job["status"] == "completed", job["status"]
            assert job["result"] == [1000] * len(job["result"]) and \
                len(job["result"]) in (len(ITEMS), 100)
            checked += len(job["result"])
        nodes.record("full data disk (20 MB tmpfs)", variant="ci", jobs=len(acknowledged),
                     kills=1, results_checked=checked, lost=0, duplicated=0,
                     submits_refused=3, seconds_to_resume_after_space_freed=round(
                         resumed_s, 2), coordinator_exited=0)
    finally:
        cluster.stop()
