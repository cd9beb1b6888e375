"""A throw-away local cluster for the examples: an in-process coordinator and worker processes.

Used only when no coordinator is given, so each example runs as it is on a laptop. Everything
lives in a temporary directory (journal, cluster key) and on 127.0.0.1 with ephemeral ports.
"""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import sabot


class LocalCluster:
    def __init__(self, workers: int = 2) -> None:
        self.workers = workers
        self.dir = tempfile.TemporaryDirectory(prefix="sabot-example-")
        root = Path(self.dir.name)
        self.env = {k: v for k, v in os.environ.items()
                    if not k.startswith(("SABOT_", "COORDINATOR_"))}
        self.env.update(SABOT_DATA_DIR=str(root / "data"),
                        SABOT_CLUSTER_KEY_FILE=str(root / "cluster.key"),
                        SABOT_HOST="127.0.0.1", SABOT_PORT="0", SABOT_ZMQ_PORT="0",
                        MAX_WORKERS="1", LOG_LEVEL="WARNING")
        self.config = sabot.load_config(env=self.env)
        self.coordinator: Any = None
        self.procs: list[subprocess.Popen[str]] = []

    async def __aenter__(self) -> LocalCluster:
        self.coordinator = sabot.create_distributed_coordinator(config=self.config)
        await self.coordinator.start()
        host, port = self.coordinator.address
        worker_env = {**self.env, "COORDINATOR_HOST": host, "COORDINATOR_PORT": str(port)}
        for _ in range(self.workers):
            self.procs.append(subprocess.Popen(
                [sys.executable, "-m", "sabot.cluster", "worker"], env=worker_env,
                stdout=subprocess.PIPE, text=True))
        for proc in self.procs:
            # Read off the event loop: this loop serves the coordinator's HTTP API the workers
            # are calling.
            line = await asyncio.to_thread(proc.stdout.readline) if proc.stdout else ""
            if "ready" not in line:
                raise RuntimeError(f"a worker did not start: {line!r}")
        deadline = time.monotonic() + 30
        while len([n for n in (await self.coordinator.cluster_stats())["nodes"]
                   if n["state"] == "alive"]) < self.workers:
            if time.monotonic() > deadline:
                raise RuntimeError("the workers did not register")
            await asyncio.sleep(0.05)
        return self

    async def __aexit__(self, *exc: object) -> None:
        for proc in self.procs:
            proc.terminate()
        for proc in self.procs:
            await asyncio.to_thread(proc.wait, 30)
            if proc.stdout:
                proc.stdout.close()
        await self.coordinator.stop()
        self.dir.cleanup()
