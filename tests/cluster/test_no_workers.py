"""A job submitted while no worker is connected: the coordinator logs it, the job's status
says what it waits for, ``sabot-node submit`` tells the user, and the Python API's timeout
error says it — within the timeout the caller gave. Once a worker joins, the job runs."""

from __future__ import annotations

import asyncio
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any, Iterator

import pytest
import sabot
from sabot.config import load_config

import sabot_test_nodes as nodes

NO_WORKER = "no worker is connected to the coordinator"


@pytest.fixture(scope="module")
def lonely(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    c = nodes.Cluster(tmp_path_factory.mktemp("lonely"), {"SABOT_HEARTBEAT_S": "0.2"})
    c.start_coordinator()
    yield c
    c.stop()


def test_status_and_log_say_no_worker_is_connected(lonely: Any) -> None:
    job_id = lonely.coordinator.submit([1, 2, 3])
    job = lonely.coordinator.job(job_id, "?limit=0")
    assert job["status"] == "pending" and NO_WORKER in job["waiting_for"]
    deadline = time.monotonic() + 10
    while NO_WORKER not in lonely.coordinator.log_text() and time.monotonic() < deadline:
        time.sleep(0.1)
    assert f"job {job_id} queued, but no worker is connected" in lonely.coordinator.log_text()


def test_the_python_timeout_is_honoured_and_says_why(lonely: Any, tmp_path: Path) -> None:
    env = {**lonely._base_env(), "COORDINATOR_HOST": "127.0.0.1",
           "COORDINATOR_PORT": str(lonely.coordinator.http_port)}

    async def main() -> tuple[str, float]:
        handle = sabot.create_distributed_coordinator(
            "127.0.0.1", lonely.coordinator.http_port, config=load_config(env=env))
        try:
            job = await sabot.submit_distributed_job(handle, [1, 2], "square")
            t = time.monotonic()
            with pytest.raises(sabot.JobTimeoutError) as err:
                await sabot.get_distributed_job_result(handle, job, timeout=3)
            return str(err.value), time.monotonic() - t
        finally:
            await handle.stop()

    text, took = asyncio.run(main())
    assert "did not finish within 3 s" in text and NO_WORKER in text and "sabot-node worker" in text
    assert 3 <= took < 8, took  # the caller's 3 s bound the wait (plus one status query)


def test_sabot_node_submit_says_it_waits_for_a_worker(lonely: Any, tmp_path: Path) -> None:
    env = nodes.child_env({**lonely._base_env(), "SABOT_DATA_DIR": str(tmp_path / "cli")})
    proc = subprocess.Popen(
        [sys.executable, "-m", "sabot.cli", "submit", "--coordinator",
         f"127.0.0.1:{lonely.coordinator.http_port}", "-p", "square", "--data", "[5]"],
        env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    seen = ""
    try:
        deadline = time.monotonic() + 30
        while NO_WORKER not in seen and time.monotonic() < deadline:
            line = proc.stderr.readline()
            if not line:
                break
            seen += line
        proc.send_signal(signal.SIGINT)
        proc.communicate(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    assert NO_WORKER in seen and "sabot-node worker" in seen, seen


def test_once_a_worker_joins_the_waiting_jobs_run(lonely: Any) -> None:
    job_id = lonely.coordinator.submit([4])
    lonely.add_worker()
    lonely.wait_workers(1)
    job = lonely.coordinator.wait_job(job_id)
    assert job["result"] == [16] and "waiting_for" not in job
