"""The distributed API with this process as the coordinator (``await handle.start()``)."""

from __future__ import annotations

import asyncio

import pytest
import sabot
from sabot.cluster.protocol import messages
from sabot.config import load_config


def _config(tmp_path, **extra):
    env = {"SABOT_HOST": "127.0.0.1", "SABOT_PORT": "0", "SABOT_ZMQ_PORT": "0",
           "SABOT_DATA_DIR": str(tmp_path / "data"),
           "SABOT_CLUSTER_KEY_FILE": str(tmp_path / "cluster.key"), "MAX_WORKERS": "1",
           "SABOT_HEARTBEAT_S": "0.2", "SABOT_NODE_TIMEOUT_S": "2", **extra}
    return load_config(env=env)


def test_a_started_handle_is_the_coordinator(tmp_path):
    async def main():
        config = _config(tmp_path)
        coordinator = sabot.create_distributed_coordinator(config=config)
        await coordinator.start()
        host, port = coordinator.address
        worker = sabot.create_worker_node(host, port, config=config)
        try:
            await worker.start()
            stats = coordinator.get_cluster_stats()
            assert [n["node_id"] for n in stats["nodes"]] == [worker.node_id]
            assert stats["system_resources"]["usable_cores"] >= 1

            offset = 7
            job = await sabot.submit_distributed_job(coordinator, range(1000),
                                                     lambda x: x + offset, priority=5)
            assert await sabot.get_distributed_job_result(coordinator, job, timeout=60) == \
                [x + 7 for x in range(1000)]
            status = await sabot.get_distributed_job_status(coordinator, job)
            assert status["status"] == "completed" and status["priority"] == 5
            assert status["progress"] == {"done": 1000, "total": 1000, "fraction": 1.0,
                                          "morsels_done": 1, "morsels_total": 1}

            with pytest.raises(sabot.UnknownProcessorError, match="nope"):
                await coordinator.submit([1], "nope")
            with pytest.raises(TypeError, match="priority"):
                await coordinator.submit([1], "square", priority="high")
            with pytest.raises(sabot.JobNotFoundError):
                await coordinator.status("no-such-job")

            # Empty input: a job with no morsels completes at once.
            assert await coordinator.result(await coordinator.submit([], "square")) == []
            # A remote handle in the same process reaches the same coordinator.
            remote = sabot.create_distributed_coordinator(host, port, config=config)
            try:
                assert await remote.result(await remote.submit([2, 3], "square"),
                                           timeout=30) == [4, 9]
                assert len((await remote.cluster_stats())["nodes"]) == 1
            finally:
                await remote.stop()
        finally:
            await worker.stop()
            await coordinator.stop()

    asyncio.run(main())


def test_a_timeout_leaves_the_job_running(tmp_path):
    async def main():
        config = _config(tmp_path)
        coordinator = await sabot.create_distributed_coordinator(config=config).start()
        try:
            job = await coordinator.submit([1, 2, 3], "square")  # no worker: stays pending
            with pytest.raises(sabot.JobTimeoutError, match="did not finish within 0.3 s"):
                await coordinator.result(job, timeout=0.3)
            assert (await coordinator.status(job))["status"] == "pending"
            host, port = coordinator.address
            worker = sabot.create_worker_node(host, port, config=config)
            await worker.start()
            try:
                assert await coordinator.result(job, timeout=30) == [1, 4, 9]
            finally:
                await worker.stop()
        finally:
            await coordinator.stop()

    asyncio.run(main())


def test_a_remote_handle_without_a_coordinator_says_where_it_looked(tmp_path):
    async def main():
        config = _config(tmp_path)
        handle = sabot.create_distributed_coordinator("127.0.0.1", 9, config=config)
        try:
            await handle._request(lambda rid: messages.GetStats(rid), timeout=1.0)
        finally:
            await handle.stop()

    with pytest.raises(sabot.CoordinatorUnavailableError, match="127.0.0.1:9"):
        asyncio.run(main())


def test_old_finished_jobs_are_served_from_the_journal(tmp_path):
    async def main():
        config = _config(tmp_path)
        coordinator = await sabot.create_distributed_coordinator(config=config).start()
        host, port = coordinator.address
        worker = sabot.create_worker_node(host, port, config=config)
        await worker.start()
        try:
            jobs = [await coordinator.submit([i, i + 1], "square") for i in range(80)]
            for job in jobs:
                await coordinator.result(job, timeout=30)
            # The first jobs left memory (only the latest finished ones stay there).
            first = jobs[0]
            assert await coordinator.result(first) == [0, 1]
            status = await coordinator.status(first)
            return status, [await coordinator.result(j) for j in jobs[:3]]
        finally:
            await worker.stop()
            await coordinator.stop()

    status, results = asyncio.run(main())
    assert status["status"] == "completed" and status["progress"]["done"] == 2
    assert results == [[0, 1], [1, 4], [4, 9]]


_INTERRUPTED_WAIT = """
import asyncio, sys
import sabot
from sabot.config import load_config

async def main():
    config = load_config(env={"SABOT_HOST": "127.0.0.1", "SABOT_PORT": "0", "SABOT_ZMQ_PORT": "0",
                              "SABOT_DATA_DIR": sys.argv[1], "SABOT_CLUSTER_KEY_FILE": sys.argv[2]})
    coordinator = await sabot.create_distributed_coordinator(config=config).start()
    job = await coordinator.submit([1, 2, 3], "square")  # no worker: it stays pending
    print("waiting", flush=True)
    try:
        await sabot.get_distributed_job_result(coordinator, job,
                                               cancel_on_interrupt=sys.argv[3] == "cancel")
    except asyncio.CancelledError:
        print("status", (await coordinator.status(job))["status"], flush=True)
        await coordinator.stop()
        raise

asyncio.run(main())
"""


@pytest.mark.parametrize("choice, status", [("keep", "pending"), ("cancel", "cancelled")])
def test_ctrl_c_while_waiting_for_a_result_is_a_stated_choice(tmp_path, choice, status):
    """Ctrl-C (a real SIGINT) during get_distributed_job_result: by default the job keeps
    running and a warning says how to fetch or cancel it; with cancel_on_interrupt=True the
    job is cancelled, and the warning says so."""
    import signal
    import subprocess
    import sys

    proc = subprocess.Popen(
        [sys.executable, "-c", _INTERRUPTED_WAIT, str(tmp_path / "data"),
         str(tmp_path / "cluster.key"), choice],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        assert proc.stdout.readline().strip() == "waiting"
        proc.send_signal(signal.SIGINT)
        out, err = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    assert f"status {status}" in out, (out, err)
    assert "KeyboardInterrupt" in err and proc.returncode != 0
    if choice == "keep":
        assert "it keeps running on the cluster" in err and "cancel_on_interrupt=True" in err, err
    else:
        assert "job cancelled (cancel_on_interrupt=True)" in err, err


def test_a_progress_bar_while_waiting_for_a_result(tmp_path, capsys):
    async def main():
        config = _config(tmp_path)
        coordinator = await sabot.create_distributed_coordinator(config=config).start()
        host, port = coordinator.address
        worker = sabot.create_worker_node(host, port, config=config)
        await worker.start()
        try:
            job = await coordinator.submit(list(range(3000)), "square", morsel_items=100)
            return await sabot.get_distributed_job_result(coordinator, job, timeout=60,
                                                          progress=True), job
        finally:
            await worker.stop()
            await coordinator.stop()

    result, job = asyncio.run(main())
    assert result == [x * x for x in range(3000)]
    err = capsys.readouterr().err
    assert f"job {job[:8]}" in err and "3000/3000" in err and "completed" in err, err


def test_costly_morsels_run_in_pieces_for_every_kind_of_input(tmp_path):
    """Morsels of a function that costs ~5 ms an item run in pieces of ~0.05 s
    (SABOT_MORSEL_TARGET_S); the results are what a serial run gives, whatever the input."""
    import time

    import numpy as np
    import pyarrow as pa

    async def main():
        config = _config(tmp_path, SABOT_MORSEL_TARGET_S="0.05")
        coordinator = sabot.create_distributed_coordinator(config=config)
        await coordinator.start()
        host, port = coordinator.address
        worker = sabot.create_worker_node(host, port, config=config)

        def slow_double(x):
            time.sleep(0.005)
            return x * 2

        try:
            await worker.start()
            for data, expected in (
                    (list(range(400)), [x * 2 for x in range(400)]),
                    (np.arange(400), [x * 2 for x in range(400)]),
                    (pa.array(range(400)), [x * 2 for x in range(400)])):
                job = await coordinator.submit(data, slow_double, morsel_items=100)
                got = await sabot.get_distributed_job_result(coordinator, job, timeout=120)
                got = got.tolist() if hasattr(got, "tolist") else \
                    (got.to_pylist() if hasattr(got, "to_pylist") else got)
                assert got == expected
            stats = coordinator.get_cluster_stats()
            assert stats["counters"]["morsel_pieces_assigned"] > 4 * 3
        finally:
            await worker.stop()
            await coordinator.stop()

    asyncio.run(main())
