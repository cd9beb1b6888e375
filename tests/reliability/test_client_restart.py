"""The Python API's calls across a coordinator restart, and a job with no worker connected.

* restart: 3,000 items of a 2 ms function submitted through the Python API and
  ``get_distributed_job_result(timeout=120)`` called at once; the coordinator is SIGKILLed a
  second later, while that call waits on it, and restarted on the same data dir a second after
  that. The call returns the whole, correct result (its request reconnects and is sent again;
  only the caller's timeout bounds the wait), and
  ``get_distributed_job_status`` answers across a second restart.
* no worker: ``timeout=10`` on a job submitted while no worker is connected raises
  ``JobTimeoutError`` at about 10 s (not 15), saying that no worker is connected, and
  ``sabot-node status`` says it too.
"""

from __future__ import annotations

import asyncio
import subprocess
import sys
import time
from pathlib import Path
from typing import Any, Iterator

import pytest

import sabot
import sabot_test_nodes as nodes
from sabot.errors import JobTimeoutError

SETTINGS = {
    **nodes.CHAOS_SETTINGS,
    "SABOT_HEARTBEAT_S": "0.2",
    "SABOT_NODE_TIMEOUT_S": "2",
}
NO_WORKER = "no worker is connected to the coordinator"


@pytest.fixture
def cluster(tmp_path: Path) -> Iterator[Any]:
    c = nodes.Cluster(tmp_path / "cluster", SETTINGS)
    c.start_coordinator()
    yield c
    c.stop()


def test_result_rides_over_a_coordinator_restart(cluster: Any) -> None:
    procs = nodes.chaos_procs()
    for _ in range(2):
        cluster.add_worker(wait=False)
    cluster.wait_workers(2)
    items = procs.make_items(3000, pad=10)

    async def main() -> tuple[list[Any], float, dict[str, Any]]:
        coord = cluster.python_handle()
        try:
            job_id = await sabot.submit_distributed_job(coord, items, "chaos_ms")
            # The result is asked for at once; its request waits on the coordinator, which is
            # killed under it and restarted.
            t0 = time.monotonic()
            fetch = asyncio.ensure_future(
                sabot.get_distributed_job_result(coord, job_id, timeout=120))
            await asyncio.sleep(1.0)
            assert not fetch.done()
            cluster.coordinator.kill()
            await asyncio.sleep(1.0)
            cluster.coordinator.start()  # same ports, same data dir; not waited for
            result = await fetch
            waited = time.monotonic() - t0
            # And a status call across a second restart.
            cluster.coordinator.kill()
            restart = asyncio.get_running_loop().call_later(1.0, cluster.coordinator.start)
            try:
                status = await sabot.get_distributed_job_status(coord, job_id)
            finally:
                restart.cancel()
            return result, waited, status
        finally:
            await coord.stop()

    result, waited, status = asyncio.run(main())
    assert result == [procs.answer(x) for x in items]
    assert status["status"] == "completed", status
    nodes.record("Python client across a coordinator SIGKILL and restart", variant="ci",
                 jobs=1, kills=2, results_checked=len(result), lost=0, duplicated=0,
                 seconds_until_result=round(waited, 2))


def test_no_worker_connected_timeout_is_one_deadline(cluster: Any) -> None:
    """timeout=10 on a small job (whose result request goes out with the submit and waits 5 s
    on its own) ends at 10 s, saying that no worker is connected; sabot-node status says it
    too. (tests/cluster/test_no_workers.py checks the status field, the log and the CLI's
    submit.)"""
    procs = nodes.chaos_procs()
    items = procs.make_items(3, pad=10)
    timeout = 10.0

    async def main() -> tuple[str, float, dict[str, Any]]:
        coord = cluster.python_handle()
        try:
            job_id = await sabot.submit_distributed_job(coord, items, "chaos_ms")
            t0 = time.monotonic()
            with pytest.raises(JobTimeoutError) as info:
                await sabot.get_distributed_job_result(coord, job_id, timeout=timeout)
            took = time.monotonic() - t0
            status = await sabot.get_distributed_job_status(coord, job_id)
            return str(info.value), took, status
        finally:
            await coord.stop()

    error, took, status = asyncio.run(main())
    assert NO_WORKER in error, error
    assert f"within {timeout:g} s" in error, error
    # The caller's timeout is what ends the wait (a bound on the deadline, not a speed test;
    # the error's status query may add up to 2 s).
    assert timeout - 0.5 <= took < timeout + 5, took
    assert status["status"] == "pending" and NO_WORKER in status["waiting_for"], status

    env = nodes.child_env({"COORDINATOR_HOST": "127.0.0.1",
                           "COORDINATOR_PORT": str(cluster.coordinator.http_port)})
    shown = subprocess.run([sys.executable, "-m", "sabot.cli", "status"], env=env,
                           capture_output=True, text=True, timeout=60)
    assert shown.returncode == 0, shown
    assert NO_WORKER in shown.stdout, shown.stdout

    # Once a worker registers, the job completes.
    cluster.add_worker()
    done = cluster.coordinator.wait_job(status["job_id"], timeout=120)
    assert done["status"] == "completed" and "waiting_for" not in done, done
    assert done["result"] == [procs.answer(x) for x in items]
    nodes.record("job with no worker connected", variant="ci", jobs=1,
                 results_checked=len(items), lost=0, duplicated=0,
                 timeout_s=timeout, seconds_until_timeout_error=round(took, 2))


def test_one_handle_serves_calls_made_in_separate_event_loops(cluster: Any) -> None:
    """A script that calls the async API with ``asyncio.run`` once per call keeps one handle:
    each call is answered on its first try, on its own loop (the client's socket follows the
    loop; before, its reader stayed on the first, closed loop, and every later call waited out
    a try of TRY_TIMEOUT_S and a hello before an answer could come), and a coordinator restart
    between two calls is noticed on the new loop."""
    from sabot.cluster.client import TRY_TIMEOUT_S
    cluster.add_worker()
    coord = cluster.python_handle()
    first_try = TRY_TIMEOUT_S / 2  # a call bounded by this cannot live through a second try
    job_ids = []
    for n in range(3):
        job_ids.append(asyncio.run(coord.submit([n, n + 1], "square", timeout=first_try)))
        assert asyncio.run(sabot.get_distributed_job_result(
            coord, job_ids[-1], timeout=first_try)) == [n * n, (n + 1) * (n + 1)]
    cluster.coordinator.kill()
    cluster.coordinator.start()
    status = asyncio.run(sabot.get_distributed_job_status(coord, job_ids[0]))
    assert status["status"] == "completed"
    asyncio.run(coord.stop())
