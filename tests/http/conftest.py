"""A real single-node HTTP API on a free loopback port, run in a background thread's event loop.

The backend is the real LocalBackend over the real LocalEngine. Tests that need to observe a
job *while* it runs wrap the engine's process function in a :class:`Gate`, which lets chunks
through one permit at a time; the work itself is still done by the engine.
"""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import subprocess
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from sabot.config import Config, load_config
from sabot.node.local_node import LocalBackend
from sabot.http.server import HttpApi


class Gate:
    """Lets ``process`` calls through one permit at a time (permits are given from the test)."""

    def __init__(self, process: Callable[..., Any]) -> None:
        self._process = process
        self.sem: asyncio.Semaphore | None = None
        self.calls = 0

    async def __call__(self, data: Any, func: Any) -> Any:
        if self.sem is None:
            self.sem = asyncio.Semaphore(0)
        await self.sem.acquire()
        self.calls += 1
        return await self._process(data, func)


class Node:
    """One node: engine + LocalBackend + HttpApi in a thread; ``url`` is its base URL."""

    def __init__(self, config: Config, *, gated: bool = False,
                 api_kw: dict[str, Any] | None = None, **backend_kw: Any) -> None:
        self.config = config
        self.api_kw = api_kw or {}
        self.loop = asyncio.new_event_loop()
        self.gate: Gate | None = None
        self._ready = threading.Event()
        self._error: BaseException | None = None
        self._thread = threading.Thread(target=self._main, args=(gated, backend_kw), daemon=True)
        self._thread.start()
        self._ready.wait(60)
        if self._error is not None:
            raise self._error

    def _main(self, gated: bool, backend_kw: dict[str, Any]) -> None:
        asyncio.set_event_loop(self.loop)
        try:
            self.loop.run_until_complete(self._start(gated, backend_kw))
        except BaseException as exc:  # reported to the constructor
            self._error = exc
            self._ready.set()
            return
        self._ready.set()
        self.loop.run_forever()

    async def _start(self, gated: bool, backend_kw: dict[str, Any]) -> None:
        from sabot.engine.local_engine import LocalEngine

        self.engine = LocalEngine(self.config)
        process: Any = self.engine.process
        if gated:
            self.gate = Gate(process)
            process = self.gate
            backend_kw.setdefault("engine_records_metrics", True)
        self.backend = LocalBackend(self.config, process, self.engine.get_stats, **backend_kw)
        self.api = HttpApi(self.config, self.backend, **self.api_kw)
        self.port = await self.api.start("127.0.0.1", 0)
        self.url = f"http://127.0.0.1:{self.port}"

    def run(self, coro: Any, timeout: float = 30) -> Any:
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout)

    def release(self, n: int = 1) -> None:
        """Let ``n`` more chunks of gated jobs run."""
        assert self.gate is not None

        async def give() -> None:
            if self.gate.sem is None:
                self.gate.sem = asyncio.Semaphore(0)
            for _ in range(n):
                self.gate.sem.release()

        self.run(give())

    def stop(self) -> None:
        async def shutdown() -> None:
            if self.gate is not None and self.gate.sem is not None:
                for _ in range(10_000):
                    self.gate.sem.release()
            await self.api.stop()
            await self.backend.close()
            await self.engine.close()

        try:
            self.run(shutdown(), timeout=60)
        finally:
            self.loop.call_soon_threadsafe(self.loop.stop)
            self._thread.join(30)
            self.loop.close()

    # -- client helpers -------------------------------------------------------------------
    def request(self, method: str, path: str, body: Any = None, *, raw: bytes | None = None,
                headers: dict[str, str] | None = None) -> tuple[int, dict[str, str], Any]:
        """(status, headers, parsed JSON or text) of one request."""
        data = raw if raw is not None else (None if body is None else json.dumps(body).encode())
        hdrs = {"Content-Type": "application/json"} if data is not None else {}
        hdrs.update(headers or {})
        req = urllib.request.Request(self.url + path, data=data, method=method, headers=hdrs)
        try:
            with urllib.request.urlopen(req, timeout=30) as resp:
                status, rh, payload = resp.status, dict(resp.headers), resp.read()
        except urllib.error.HTTPError as err:
            status, rh, payload = err.code, dict(err.headers), err.read()
            err.close()
        text = payload.decode()
        if rh.get("Content-Type", "").startswith("application/json"):
            return status, rh, json.loads(text)
        return status, rh, text

    def submit(self, data: Any, processor: str = "square", **extra: Any) -> str:
        status, _, body = self.request("POST", "/submit_job",
                                       {"data": data, "processor_func": processor, **extra})
        assert status == 200, body
        return body["job_id"]

    def wait(self, job_id: str, states: tuple[str, ...] = ("completed", "failed", "cancelled"),
             timeout: float = 60, query: str = "") -> dict[str, Any]:
        deadline = time.monotonic() + timeout
        while True:
            status, _, body = self.request("GET", f"/job/{job_id}{query}")
            assert status == 200, body
            if body["status"] in states:
                return body
            if time.monotonic() > deadline:
                raise AssertionError(f"job {job_id} still {body['status']} after {timeout} s")
            time.sleep(0.02)


def make_config(tmp_path: Path, **overrides: Any) -> Config:
    overrides.setdefault("max_workers", 2)
    return load_config(env={}, host="127.0.0.1", port=0, data_dir=str(tmp_path / "data"),
                       cluster_key_file=str(tmp_path / "cluster.key"), **overrides)


@pytest.fixture
def node_factory(tmp_path: Path):
    nodes: list[Node] = []

    def make(*, gated: bool = False, api_kw: dict[str, Any] | None = None,
             backend_kw: dict[str, Any] | None = None, **config: Any) -> Node:
        cfg = make_config(tmp_path, **config)
        cfg.data_dir.mkdir(parents=True, exist_ok=True)
        node = Node(cfg, gated=gated, api_kw=api_kw, **(backend_kw or {}))
        nodes.append(node)
        return node

    yield make
    for node in nodes:
        node.stop()


@pytest.fixture
def node(node_factory) -> Node:
    return node_factory()


@pytest.fixture(scope="module")
def module_node(tmp_path_factory):
    """One node shared by a module's tests."""
    config = make_config(tmp_path_factory.mktemp("node"))
    config.data_dir.mkdir(parents=True, exist_ok=True)
    node = Node(config)
    yield node
    node.stop()


CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser") \
    or shutil.which("google-chrome")


@pytest.fixture
def dump_dom(tmp_path: Path) -> Callable[[str], str]:
    """``dump_dom(url)``: the page's DOM after its scripts ran, from headless Chromium."""
    if CHROMIUM is None:
        reason = "no headless Chromium (apt-get install chromium)"
        # .ci/run installs it: on CI its absence is a failure, as for the image and wheel tests
        if os.environ.get("CI"):
            pytest.fail(f"the status page browser test cannot run: {reason}")
        pytest.skip(reason)

    def dump(url: str) -> str:
        out = subprocess.run(
            [CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
             "--no-first-run", f"--user-data-dir={tmp_path / 'chromium-profile'}",
             "--virtual-time-budget=5000", "--dump-dom", url],
            capture_output=True, text=True, timeout=120)
        assert out.returncode == 0, out.stderr[-2000:]
        return out.stdout

    return dump
