"""ComposableLauncher, create_composable_launcher, sabot.process and the daemon entry point."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest
import sabot
from sabot.config import load_config
from sabot.launcher import ComposableLauncher

REPO = Path(__file__).resolve().parents[1]


def square(x):
    return x * x


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def clean_env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("SABOT_", "COORDINATOR_")) and k not in (
               "CLUSTER_NAME", "MAX_WORKERS", "MORSEL_SIZE_KB", "TARGET_UTILIZATION", "LOG_LEVEL")}
    env["PYTHONPATH"] = os.pathsep.join([str(REPO / "python"), env.get("PYTHONPATH", "")])
    env["SABOT_DATA_DIR"] = extra.pop("SABOT_DATA_DIR", "")
    env.update(extra)
    if not env["SABOT_DATA_DIR"]:
        del env["SABOT_DATA_DIR"]
    return env


def test_readme_single_node_flow():
    async def main():
        launcher = sabot.create_composable_launcher(mode="single-node")
        await launcher.start()

        async def process_item(item):
            return square(item)

        results = await launcher.process_data(list(range(1000)), process_item)
        stats = launcher.get_stats()
        await launcher.stop()
        return results, stats

    results, stats = asyncio.run(main())
    assert results == [x * x for x in range(1000)]
    assert stats["mode"] == "single-node" and stats["mode_reason"] == "SABOT_MODE=single-node"
    assert stats["items_processed"] == 1000
    assert stats["http"]["serving"] is False  # a library caller does not open a port
    assert stats["controller"]["executor"] == "async"
    for key in ("cython_optimization", "system_resources", "controller", "engine", "config",
                "uptime_s", "node_id"):
        assert key in stats


def test_mode_detection(monkeypatch):
    assert ComposableLauncher(load_config(env={})).mode == "single-node"
    cfg = load_config(env={"COORDINATOR_HOST": "coord.example"})
    launcher = ComposableLauncher(cfg)
    assert launcher.mode == "worker" and "COORDINATOR_HOST is set" in launcher.mode_reason
    assert ComposableLauncher(load_config(env={"SABOT_MODE": "coordinator"})).mode == "coordinator"
    cfg = load_config(env={"COORDINATOR_HOST": "x"}, mode="single-node")
    assert ComposableLauncher(cfg).mode == "single-node"


@pytest.mark.parametrize("var,value,accepted", [
    ("MORSEL_SIZE_KB", "abc", "an integer"),
    ("TARGET_UTILIZATION", "1.7", "<= 1"),
    ("SABOT_MODE", "foo", "single-node"),
    ("MAX_WORKERS", "-3", "an integer"),
])
def test_wrong_settings_are_refused_at_creation(monkeypatch, var, value, accepted):
    monkeypatch.setenv(var, value)
    with pytest.raises(sabot.ConfigError) as info:
        sabot.create_composable_launcher()
    msg = str(info.value)
    assert var in msg and repr(value) in msg and accepted in msg


def test_overrides_win_over_the_environment(monkeypatch):
    monkeypatch.setenv("MORSEL_SIZE_KB", "16")
    launcher = sabot.create_composable_launcher(morsel_size_kb=256, max_workers=3)
    assert launcher.config.morsel_size_kb == 256 and launcher.config.max_workers == 3
    with pytest.raises(sabot.ConfigError, match="TARGET_UTILIZATION"):
        sabot.create_composable_launcher(target_utilization=0)
    with pytest.raises(TypeError, match="unknown configuration argument"):
        sabot.create_composable_launcher(no_such_setting=1)


def test_process_data_starts_the_node_when_needed_and_stop_is_idempotent():
    async def main():
        launcher = sabot.create_composable_launcher(mode="single-node")
        out = await launcher.process_data([1, 2, 3], "square")
        assert launcher.started
        await launcher.stop()
        await launcher.stop()
        with pytest.raises(RuntimeError, match="stopped"):
            await launcher.process_data([1], square)
        return out

    assert asyncio.run(main()) == [1, 4, 9]


def test_serving_http_in_single_node_mode():
    async def main():
        launcher = sabot.create_composable_launcher(mode="single-node", host="127.0.0.1", port=0)
        await launcher.start(serve_http=True)
        port = launcher.http_port
        assert port and launcher.get_stats()["http"] == {
            "serving": True, "host": "127.0.0.1", "port": port}
        loop = asyncio.get_running_loop()
        body = await loop.run_in_executor(None, lambda: urllib.request.urlopen(
            f"http://127.0.0.1:{port}/health", timeout=10).read())
        await launcher.stop()
        return json.loads(body)

    health = asyncio.run(main())
    assert health["status"] == "ok"


def test_taken_port_gives_a_clear_error():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen()
        port = s.getsockname()[1]

        async def main():
            launcher = sabot.create_composable_launcher(mode="single-node", host="127.0.0.1",
                                                        port=port)
            try:
                with pytest.raises(OSError, match="SABOT_PORT"):
                    await launcher.start(serve_http=True)
            finally:
                await launcher.stop()

        asyncio.run(main())


def test_synchronous_process():
    assert sabot.process([1, 2, 3], square) == [1, 4, 9]
    assert sabot.process(range(5), "double", max_workers=1) == [0, 2, 4, 6, 8]

    async def inside_a_loop():  # e.g. Jupyter: runs on a helper thread's loop
        return sabot.process([2, 3], square)

    assert asyncio.run(inside_a_loop()) == [4, 9]


def test_process_stream_through_the_launcher():
    async def main():
        async with sabot.create_composable_launcher(mode="single-node") as launcher:
            out = []
            async for r in launcher.process_stream(iter(range(3000)), square):
                out.append(r)
            return out

    assert asyncio.run(main()) == [x * x for x in range(3000)]


def _wait_http(port: int, proc: subprocess.Popen, timeout: float = 30.0) -> dict:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise AssertionError(f"daemon exited early with {proc.returncode}")
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=2) as r:
                return json.loads(r.read())
        except OSError:
            time.sleep(0.1)
    raise AssertionError("daemon did not serve in time")


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT])
def test_daemon_serves_until_signalled_then_exits_0(tmp_path, sig):
    port = free_port()
    env = clean_env(SABOT_PORT=str(port), SABOT_HOST="127.0.0.1", LOG_LEVEL="INFO",
                    SABOT_DATA_DIR=str(tmp_path))
    proc = subprocess.Popen([sys.executable, "-m", "sabot.composable_launcher"], env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, cwd=tmp_path)
    try:
        health = _wait_http(port, proc)
        assert health["status"] == "ok"
        req = urllib.request.Request(
            f"http://127.0.0.1:{port}/submit_job", method="POST",
            data=json.dumps({"data": [1, 2, 3], "processor_func": "square"}).encode(),
            headers={"Content-Type": "application/json"})
        with urllib.request.urlopen(req, timeout=10) as r:
            job = json.loads(r.read())
        for _ in range(100):
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/job/{job['job_id']}",
                                        timeout=10) as r:
                state = json.loads(r.read())
            if state["status"] == "completed":
                break
            time.sleep(0.05)
        assert state["result"] == [1, 4, 9]
        proc.send_signal(sig)
        out, _ = proc.communicate(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    text = out.decode()
    assert proc.returncode == 0, text
    assert "single-node mode" in text and "stopped" in text


def test_daemon_refuses_a_wrong_setting_with_exit_2(tmp_path):
    env = clean_env(MORSEL_SIZE_KB="abc")
    proc = subprocess.run([sys.executable, "-m", "sabot.composable_launcher"], check=False, env=env,
                          capture_output=True, text=True, timeout=60, cwd=tmp_path)
    assert proc.returncode == 2
    assert "MORSEL_SIZE_KB='abc'" in proc.stderr and "an integer" in proc.stderr


def test_coordinator_mode_runs_process_data_on_the_cluster(tmp_path):
    async def main():
        common = {"host": "127.0.0.1", "data_dir": str(tmp_path),
                  "cluster_key_file": str(tmp_path / "cluster.key")}
        coord = sabot.create_composable_launcher(mode="coordinator", port=0, **common)
        await coord.start()
        worker = sabot.create_composable_launcher(
            mode="worker", coordinator_host="127.0.0.1", coordinator_port=coord.http_port,
            **common)
        try:
            await worker.start()
            out = await coord.process_data(list(range(500)), lambda x: x * 3)
            stats = coord.get_stats()
        finally:
            await worker.stop()
            await coord.stop()
        return out, stats

    out, stats = asyncio.run(main())
    assert out == [x * 3 for x in range(500)]
    assert stats["mode"] == "coordinator" and isinstance(stats["cluster"], dict)


def test_daemon_stops_promptly_while_a_worker_still_looks_for_its_coordinator(tmp_path):
    env = clean_env(SABOT_MODE="worker", COORDINATOR_HOST="127.0.0.1",
                    COORDINATOR_PORT=str(free_port()), SABOT_HOST="127.0.0.1",
                    SABOT_DATA_DIR=str(tmp_path),
                    SABOT_CLUSTER_KEY_FILE=str(tmp_path / "cluster.key"))
    proc = subprocess.Popen([sys.executable, "-m", "sabot.composable_launcher"], env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, cwd=tmp_path)
    try:
        deadline = time.monotonic() + 30
        seen = b""
        while b"starting in worker mode" not in seen and time.monotonic() < deadline:
            seen += proc.stdout.readline()
        time.sleep(0.5)
        t = time.monotonic()
        proc.send_signal(signal.SIGTERM)
        out, _ = proc.communicate(timeout=30)
        took = time.monotonic() - t
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    assert proc.returncode == 0, (seen + out).decode()
    assert took < 8  # not after the worker's 10 s registration wait


def test_a_worker_that_cannot_reach_its_coordinator_does_not_say_ready(tmp_path):
    """Unregistered, the daemon says it started but is not registered (naming the coordinator),
    never "ready"; its /ready answers 503 meanwhile."""
    coordinator_port = free_port()
    env = clean_env(SABOT_MODE="worker", COORDINATOR_HOST="127.0.0.1",
                    COORDINATOR_PORT=str(coordinator_port), SABOT_HOST="127.0.0.1",
                    SABOT_WORKER_PORT=str(free_port()), SABOT_NODE_TIMEOUT_S="1",
                    SABOT_DATA_DIR=str(tmp_path), LOG_LEVEL="INFO",
                    SABOT_CLUSTER_KEY_FILE=str(tmp_path / "cluster.key"))
    proc = subprocess.Popen([sys.executable, "-m", "sabot.composable_launcher"], env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, cwd=tmp_path)
    lines = []
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            line = proc.stdout.readline().decode()
            if not line:
                break
            lines.append(line)
            if "is not registered with the coordinator" in line or " ready (" in line:
                break
        ready = _get_status(int(env["SABOT_WORKER_PORT"]), "/ready")
        proc.send_signal(signal.SIGTERM)
        proc.communicate(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    text = "".join(lines)
    assert f"not registered with the coordinator at 127.0.0.1:{coordinator_port}" in text, text
    assert " ready (" not in text, text
    assert ready == 503


def _get_status(port: int, path: str) -> int:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=5) as r:
            return r.status
    except urllib.error.HTTPError as exc:
        return exc.code


def _sleepy(x):
    time.sleep(0.002)
    return x + 1


def test_process_shows_progress_as_items_finish(capsys):
    """progress=True: a bar on stderr that moves while the call runs (counts between 0 and
    the total show up), and ends at the total; without it nothing is drawn."""
    import re

    n = 1500
    assert sabot.process(list(range(n)), _sleepy, progress=True, max_workers=2,
                         morsel_size_kb=1) == [x + 1 for x in range(n)]
    err = capsys.readouterr().err
    counts = {int(c) for c in re.findall(rf"(\d+)/{n}\b", err)}
    assert n in counts, err
    assert any(0 < c < n for c in counts), err
    assert sabot.process([1, 2, 3], _sleepy) == [2, 3, 4]
    assert capsys.readouterr().err == ""
