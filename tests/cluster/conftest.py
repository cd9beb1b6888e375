"""Real clusters for the tests: coordinator and worker processes on 127.0.0.1, random free ports,
a temporary SABOT_DATA_DIR and key file, small heartbeat and node timeouts."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from sabot.config import load_config
from sabot.distributed import create_distributed_coordinator

PYTHON_DIR = Path(__file__).resolve().parents[2] / "python"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def base_env(tmp: Path, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("SABOT_", "COORDINATOR_"))
           and k not in ("CLUSTER_NAME", "MAX_WORKERS", "MORSEL_SIZE_KB")}
    env.update({
        "PYTHONPATH": str(PYTHON_DIR) + os.pathsep + env.get("PYTHONPATH", ""),
        "SABOT_HOST": "127.0.0.1",
        "SABOT_DATA_DIR": str(tmp / "data"),
        "SABOT_CLUSTER_KEY_FILE": str(tmp / "cluster.key"),
        "SABOT_HEARTBEAT_S": "0.2",
        "SABOT_NODE_TIMEOUT_S": "1.5",
        "MAX_WORKERS": "1",
        "LOG_LEVEL": "INFO",
        "PYTHONUNBUFFERED": "1",
    })
    env.update(extra)
    return env


class Node:
    """One node process; its output is collected for assertions."""

    def __init__(self, role: str, env: dict[str, str]) -> None:
        self.role = role
        self.env = env
        self.lines: list[str] = []
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "sabot.cluster", role], env=env, stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT, text=True)
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self.lines.append(line.rstrip("\n"))

    @property
    def output(self) -> str:
        return "\n".join(self.lines)

    def wait_for(self, text: str, timeout: float = 30.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if any(text in line for line in self.lines):
                return
            if self.proc.poll() is not None:
                time.sleep(0.2)
                if any(text in line for line in self.lines):
                    return
                raise AssertionError(f"{self.role} exited ({self.proc.returncode}) before "
                                     f"{text!r}:\n{self.output}")
            time.sleep(0.05)
        raise AssertionError(f"{self.role} did not print {text!r} in {timeout} s:\n{self.output}")

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait(10)
        self._reader.join(5)
        if self.proc.stdout is not None:
            self.proc.stdout.close()

    def terminate(self, timeout: float = 30.0) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        rc = self.proc.wait(timeout)
        self._reader.join(5)
        if self.proc.stdout is not None:
            self.proc.stdout.close()
        return rc


class Cluster:
    """A coordinator and its workers, all real processes."""

    def __init__(self, tmp: Path, **env: str) -> None:
        self.tmp = tmp
        self.port = free_port()
        self.zmq_port = free_port()
        self.extra = env
        self.nodes: list[Node] = []
        self.coordinator: Node | None = None

    def env(self, **extra: str) -> dict[str, str]:
        return base_env(self.tmp, **{**self.extra, **extra})

    def start_coordinator(self, **extra: str) -> Node:
        node = Node("coordinator", self.env(SABOT_PORT=str(self.port),
                                            SABOT_ZMQ_PORT=str(self.zmq_port), **extra))
        self.nodes.append(node)
        node.wait_for("sabot coordinator ready")
        self.coordinator = node
        return node

    def start_worker(self, wait: bool = True, **extra: str) -> Node:
        node = Node("worker", self.env(COORDINATOR_HOST="127.0.0.1",
                                       COORDINATOR_PORT=str(self.port), **extra))
        self.nodes.append(node)
        if wait:
            node.wait_for("sabot worker ready")
        return node

    def http(self, path: str) -> Any:
        with urllib.request.urlopen(f"http://127.0.0.1:{self.port}{path}", timeout=10) as r:
            return json.loads(r.read())

    def alive_workers(self) -> list[dict[str, Any]]:
        return [n for n in self.http("/stats")["nodes"] if n["state"] == "alive"]

    def wait_workers(self, count: int, timeout: float = 30.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if len(self.alive_workers()) >= count:
                return
            time.sleep(0.1)
        raise AssertionError(f"{count} workers did not register: {self.http('/stats')['nodes']}")

    def config(self, **extra: str) -> Any:
        return load_config(env=self.env(COORDINATOR_HOST="127.0.0.1",
                                         COORDINATOR_PORT=str(self.port), **extra))

    def handle(self, **extra: str) -> Any:
        return create_distributed_coordinator("127.0.0.1", self.port, config=self.config(**extra))

    def close(self) -> None:
        for node in reversed(self.nodes):
            node.kill()


@pytest.fixture
def cluster(tmp_path: Path) -> Iterator[Cluster]:
    c = Cluster(tmp_path)
    try:
        yield c
    finally:
        c.close()


@pytest.fixture(scope="module")
def shared_cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    """A coordinator and three workers, reused by the tests of one module that leave it whole."""
    c = Cluster(tmp_path_factory.mktemp("cluster"))
    try:
        c.start_coordinator()
        for _ in range(3):
            c.start_worker(wait=False)
        c.wait_workers(3)
        yield c
    finally:
        c.close()


def run(coro: Any) -> Any:
    return asyncio.run(coro)


@pytest.fixture(scope="module")
def lone_coordinator(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    """A coordinator without workers (for handshake and frame tests)."""
    c = Cluster(tmp_path_factory.mktemp("coordinator"))
    try:
        c.start_coordinator()
        yield c
    finally:
        c.close()
