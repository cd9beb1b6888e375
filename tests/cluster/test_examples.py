"""The README's distributed setup and examples, run as a user runs them."""

from __future__ import annotations

import json
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"


def _run(args: list[str], env: dict[str, str], timeout: float = 180) -> str:
    proc = subprocess.run([sys.executable, *args], env=env, capture_output=True, text=True,
                          timeout=timeout)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    return proc.stdout


def test_distributed_api_example_runs_against_a_running_cluster(shared_cluster):
    out = _run([str(EXAMPLES / "distributed_api.py"), "--host", "127.0.0.1", "--port",
                str(shared_cluster.port), "--items", "30000"], shared_cluster.env())
    assert "completed, 30000 results" in out


def test_distributed_stream_example_uses_coordinator_host_and_port(shared_cluster):
    env = shared_cluster.env(COORDINATOR_HOST="127.0.0.1",
                             COORDINATOR_PORT=str(shared_cluster.port))
    out = _run([str(EXAMPLES / "distributed_stream.py"), "3000"], env)
    assert "Distributed processing completed: 3000 results" in out
    assert "Streamed 3000 results in order" in out


def test_distributed_api_example_starts_its_own_cluster(shared_cluster, tmp_path):
    env = shared_cluster.env()
    env.pop("SABOT_CLUSTER_KEY_FILE")
    out = _run([str(EXAMPLES / "distributed_api.py"), "--items", "2000"], env)
    assert "completed, 2000 results" in out and "alive" in out


def test_pyzmq_only_client_submits_a_named_processor_job(shared_cluster):
    out = _run([str(EXAMPLES / "zmq_client.py"), "--host", "127.0.0.1", "--port",
                str(shared_cluster.port), "--processor", "square", "3", "4", "-5"],
               shared_cluster.env())
    assert out.strip().endswith("completed: [9, 16, 25]")


def _port_pair() -> int:
    import socket

    for _ in range(100):
        with socket.socket() as a, socket.socket() as b:
            a.bind(("127.0.0.1", 0))
            port = a.getsockname()[1]
            try:
                b.bind(("127.0.0.1", port + 1))
            except OSError:
                continue
            return int(port)
    raise RuntimeError("no two adjacent free ports")


def _launcher(env: dict[str, str]) -> subprocess.Popen[str]:
    return subprocess.Popen([sys.executable, "-m", "sabot.composable_launcher"], env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


def _get(port: int, path: str) -> dict:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=10) as r:
        return json.loads(r.read())


def test_the_readmes_three_terminals(cluster):
    """SABOT_MODE=coordinator + twice SABOT_MODE=worker with COORDINATOR_HOST=localhost."""
    port = _port_pair()  # the ZeroMQ endpoint defaults to SABOT_PORT + 1
    procs = [_launcher(cluster.env(SABOT_MODE="coordinator", SABOT_PORT=str(port)))]
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                _get(port, "/health")
                break
            except OSError:
                assert procs[0].poll() is None, procs[0].communicate()[0]
                assert time.monotonic() < deadline
                time.sleep(0.2)
        for _ in range(2):
            procs.append(_launcher(cluster.env(SABOT_MODE="worker", COORDINATOR_HOST="localhost",
                                               COORDINATOR_PORT=str(port))))
        while len([n for n in _get(port, "/stats")["nodes"] if n["state"] == "alive"]) < 2:
            assert time.monotonic() < deadline, _get(port, "/stats")["nodes"]
            time.sleep(0.2)
        req = urllib.request.Request(
            f"http://127.0.0.1:{port}/submit_job", method="POST",
            data=json.dumps({"data": [1, 2, 3, 4, 5], "processor_func": "square"}).encode(),
            headers={"Content-Type": "application/json"})
        with urllib.request.urlopen(req, timeout=10) as r:
            job_id = json.loads(r.read())["job_id"]
        while (job := _get(port, f"/job/{job_id}"))["status"] not in ("completed", "failed"):
            assert time.monotonic() < deadline
            time.sleep(0.05)
        assert job["result"] == [1, 4, 9, 16, 25]
    finally:
        for p in reversed(procs):
            p.terminate()
        codes = [p.wait(30) for p in reversed(procs)]
        for p in procs:
            if p.stdout:
                p.stdout.close()
    assert codes == [0, 0, 0]
