"""A coordinator whose data disk fills up (#16 item 1), on a real 20 MB tmpfs: its core cannot
write the journal, so the node must not go on looking healthy — it exits non-zero with a line
naming the cause and SABOT_DATA_DIR (so a supervisor or the liveness probe restarts it), no
submit waits without bound, and once space returns a restart serves every job it acknowledged.

Needs the right to mount a tmpfs (root); skipped with the reason otherwise."""

from __future__ import annotations

import os
import subprocess
import time
from pathlib import Path
from typing import Any, Iterator

import pytest

import sabot_test_nodes as nodes


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


def _submit(node: Any, items: list[str]) -> int | str:
    try:
        return node.request("POST", "/submit_job", {"data": items, "processor_func": "len"},
                            timeout=30).status
    except OSError as exc:  # the daemon has gone: refused at once, never a hang
        return type(exc).__name__


def test_a_full_data_disk_stops_the_coordinator_clearly_and_loses_no_acknowledged_job(
        tmp_path: Path, small_disk: Path) -> None:
    filler = small_disk / "filler"
    filler.write_bytes(b"\0" * (6 << 20))  # freed later: "space returns"
    cluster = nodes.Cluster(tmp_path / "c", {"SABOT_DATA_DIR": str(small_disk / "data")})
    coordinator = cluster.start_coordinator(SABOT_DATA_DIR=str(small_disk / "data"))
    try:
        items = ["x" * 1000] * 1500  # ~1.5 MB a job
        acknowledged, answers = [], []
        for _ in range(40):
            t = time.monotonic()
            answer = _submit(coordinator, items)
            assert time.monotonic() - t < 30, "a submit waited on a core that cannot answer"
            answers.append(answer)
            if answer != 200:
                break
            acknowledged.append(answer)
        assert answers[-1] != 200, answers  # the disk filled up
        assert coordinator.proc is not None
        code = coordinator.proc.wait(30)
        text = coordinator.log_text()
        coordinator.kill()  # (reaped: closes its log)
        assert code not in (0, None), text
        assert "disk is full" in text and "SABOT_DATA_DIR" in text, text
        # Space returns: a restart on the same dir comes up and serves what it acknowledged.
        filler.unlink()
        restarted = cluster.restart_coordinator()
        jobs = restarted.request("GET", "/jobs?limit=100").json["jobs"]
        assert len(jobs) >= len(acknowledged) > 0, (len(jobs), len(acknowledged))
        assert restarted.request("GET", "/health").status == 200
    finally:
        cluster.stop()
