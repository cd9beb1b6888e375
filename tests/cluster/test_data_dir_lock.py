"""One coordinator per data dir (SABOT_DATA_DIR): a second coordinator on the same dir — a
daemon, or one in this process — fails at start with one line naming the dir, the coordinator
that holds it and SABOT_DATA_DIR; the first keeps serving; once it is gone (even killed), the
dir is free again."""

from __future__ import annotations

import asyncio
import signal
from pathlib import Path
from typing import Any

import pytest
import sabot
from sabot.config import load_config
from sabot.errors import ConfigError

import sabot_test_nodes as nodes


def _config(tmp_path: Path, data: Path) -> Any:
    return load_config(env={}, host="127.0.0.1", port=0, zmq_port=0, data_dir=data,
                       cluster_key_file=tmp_path / "cluster.key")


def test_a_second_daemon_on_the_same_data_dir_is_refused(tmp_path: Path) -> None:
    cluster = nodes.Cluster(tmp_path / "c", {})
    first = cluster.start_coordinator(SABOT_NODE_NAME="coord-first")
    try:
        data_dir = first.env["SABOT_DATA_DIR"]
        second = nodes.NodeProcess("second", {**first.env, "SABOT_PORT": str(nodes.free_port()),
                                              "SABOT_ZMQ_PORT": str(nodes.free_port()),
                                              "SABOT_NODE_NAME": "coord-second"},
                                   nodes.free_port(), tmp_path, None)
        second.start()
        assert second.proc is not None
        code = second.proc.wait(60)
        text = second.log_text()
        second.stop()
        assert code not in (0, None), text
        assert f"SABOT_DATA_DIR='{data_dir}' is invalid" in text, text
        assert "coordinator coord-first" in text and "own SABOT_DATA_DIR" in text, text
        assert "Traceback" not in text, text
        # The first one still serves: a worker joins it and a job runs.
        cluster.add_worker()
        cluster.wait_workers(1)
        assert first.wait_job(first.submit([1, 2]))["result"] == [1, 4]
    finally:
        cluster.stop()


def test_the_dir_is_free_again_once_its_coordinator_is_killed(tmp_path: Path) -> None:
    cluster = nodes.Cluster(tmp_path / "c", {})
    first = cluster.start_coordinator()
    first.signal(signal.SIGKILL)
    first.proc.wait(30)  # type: ignore[union-attr]
    data_dir = Path(first.env["SABOT_DATA_DIR"])

    async def main() -> str:
        coordinator = await sabot.create_distributed_coordinator(
            config=_config(tmp_path, data_dir)).start()
        try:
            job_id = await coordinator.submit([3], "square")
            return (await coordinator.status(job_id))["status"]
        finally:
            await coordinator.stop()

    try:
        assert asyncio.run(main()) == "pending"  # started on the dir a killed one held
    finally:
        cluster.stop()


def test_two_coordinators_in_one_process_cannot_share_a_dir(tmp_path: Path) -> None:
    async def main() -> None:
        data = tmp_path / "data"
        first = await sabot.create_distributed_coordinator(config=_config(tmp_path, data)).start()
        try:
            with pytest.raises(ConfigError, match="SABOT_DATA_DIR") as err:
                await sabot.create_distributed_coordinator(config=_config(tmp_path, data)).start()
            assert str(data) in str(err.value) and first.node_id in str(err.value)
            assert await first.status(await first.submit([1], "square"))
        finally:
            await first.stop()
        # Stopped, it lets the next one in.
        again = await sabot.create_distributed_coordinator(config=_config(tmp_path, data)).start()
        await again.stop()

    asyncio.run(main())
