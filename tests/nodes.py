"""Start real Sabot nodes for the reliability, security, fuzz and load tests.

Two kinds of node:

* :class:`NodeProcess` — the daemon itself (``python -m sabot.composable_launcher``) as a child
  process, on free loopback ports, with its own ``SABOT_DATA_DIR`` and cluster key file, its
  output captured in a log file; :class:`Cluster` puts a coordinator and workers together.
* :class:`InProcessNode` — the real ``HttpApi`` over the real ``LocalBackend`` and
  ``LocalEngine``, served from a background thread's event loop (for fuzzing the HTTP API
  without paying a process start per test).

The test directories' ``conftest.py`` files load this module as ``sabot_test_nodes`` (see
:func:`load`), because pytest's importlib mode puts no test directory on ``sys.path``.
"""

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
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any, Iterable

REPO = Path(__file__).resolve().parents[1]
PYTHON_DIR = REPO / "python"
#: Named processors the reliability tests give every node (slow items, faults on demand).
CHAOS_PROCS_DIR = Path(__file__).resolve().parent / "reliability" / "procs"
CHAOS_SETTINGS = {"PYTHONPATH": str(CHAOS_PROCS_DIR), "SABOT_PROCESSORS": "sabot_chaos_procs"}
#: Where the tests leave their figures for docs/reliability.md (tests/reliability/report.py).
RESULTS_FILE = Path(os.environ.get("SABOT_RELIABILITY_RESULTS",
                                   REPO / "build" / "reliability" / "results.jsonl"))

#: Variables a child node must not inherit from the test runner's environment.
_NODE_VARS_PREFIXES = ("SABOT_", "COORDINATOR_")
_NODE_VARS = ("CLUSTER_NAME", "MAX_WORKERS", "MORSEL_SIZE_KB", "TARGET_UTILIZATION", "LOG_LEVEL")


def free_port() -> int:
    """A TCP port that was free on 127.0.0.1 a moment ago."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def child_env(extra: dict[str, str] | None = None) -> dict[str, str]:
    """The runner's environment without Sabot settings, with the source tree importable."""
    extra = dict(extra or {})
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(_NODE_VARS_PREFIXES) and k not in _NODE_VARS}
    paths = [str(PYTHON_DIR)] + extra.pop("PYTHONPATH", "").split(os.pathsep) + \
        env.get("PYTHONPATH", "").split(os.pathsep)
    env["PYTHONPATH"] = os.pathsep.join(dict.fromkeys(p for p in paths if p))
    env["PYTHONUNBUFFERED"] = "1"
    env.update(extra)
    return env


# -- HTTP client ---------------------------------------------------------------------------------
class HttpReply:
    """Status, headers and body of one HTTP exchange; ``json`` parses the body."""

    def __init__(self, status: int, headers: dict[str, str], body: bytes) -> None:
        self.status = status
        self.headers = headers
        self.body = body

    @property
    def json(self) -> Any:
        return json.loads(self.body)

    def __repr__(self) -> str:
        return f"HttpReply({self.status}, {self.body[:300]!r})"


def python_child(code: str) -> subprocess.Popen[str]:
    """A Python process running ``code`` with text pipes on stdin and stdout (the test reads
    its lines and closes stdin to end it); close with ``end_child``."""
    return subprocess.Popen([sys.executable, "-c", code], stdin=subprocess.PIPE,
                            stdout=subprocess.PIPE, text=True)


def end_child(child: subprocess.Popen[str], *, kill: bool = False) -> None:
    if kill:
        child.kill()
    assert child.stdin is not None and child.stdout is not None
    child.stdin.close()
    child.wait(timeout=10)
    child.stdout.close()


def http(method: str, url: str, body: Any = None, *, raw: bytes | None = None,
         headers: dict[str, str] | None = None, timeout: float = 30) -> HttpReply:
    data = raw if raw is not None else (None if body is None else json.dumps(body).encode())
    hdrs = {"Content-Type": "application/json"} if data is not None else {}
    hdrs.update(headers or {})
    req = urllib.request.Request(url, data=data, method=method, headers=hdrs)
    try:
        with urllib.request.urlopen(req, timeout=timeout) as resp:
            return HttpReply(resp.status, dict(resp.headers), resp.read())
    except urllib.error.HTTPError as err:
        try:
            return HttpReply(err.code, dict(err.headers), err.read())
        finally:
            err.close()


class HttpClient:
    """JSON calls against one node's base URL, optionally with a bearer token."""

    url: str
    token: str | None = None

    def request(self, method: str, path: str, body: Any = None, **kw: Any) -> HttpReply:
        headers = dict(kw.pop("headers", None) or {})
        if self.token and "Authorization" not in headers:
            headers["Authorization"] = f"Bearer {self.token}"
        return http(method, self.url + path, body, headers=headers, **kw)

    def submit(self, data: list[Any], processor: str = "square", **extra: Any) -> str:
        reply = self.request("POST", "/submit_job",
                             {"data": data, "processor_func": processor, **extra})
        assert reply.status == 200, reply
        return str(reply.json["job_id"])

    def job(self, job_id: str, query: str = "") -> dict[str, Any]:
        reply = self.request("GET", f"/job/{job_id}{query}")
        assert reply.status == 200, reply
        return dict(reply.json)

    def wait_job(self, job_id: str, timeout: float = 60,
                 states: Iterable[str] = ("completed", "failed", "cancelled")) -> dict[str, Any]:
        """The job once it reaches one of ``states`` (its whole result, all pages joined)."""
        states = tuple(states)
        deadline = time.monotonic() + timeout
        while True:
            job = self.job(job_id)
            if job["status"] in states:
                return self._whole_result(job_id, job)
            if time.monotonic() > deadline:
                raise AssertionError(f"job {job_id} still {job['status']} after {timeout} s: "
                                     f"{job}")
            time.sleep(0.05)

    def _whole_result(self, job_id: str, job: dict[str, Any]) -> dict[str, Any]:
        """Join a paged result (``next_offset`` set while more pages follow)."""
        if job.get("result") is None:
            return job
        result = list(job["result"])
        next_offset = job.get("next_offset")
        while isinstance(next_offset, int):
            more = self.job(job_id, f"?offset={next_offset}")
            if not more.get("result"):
                # A page promised but empty: the node's item count and its result disagree.
                raise AssertionError(f"job {job_id}: result_total {job.get('result_total')} "
                                     f"but the page at offset {next_offset} is empty")
            result.extend(more["result"])
            next_offset = more.get("next_offset")
        job["result"] = result
        return job

    def alive(self, timeout: float = 5) -> bool:
        try:
            return http("GET", self.url + "/health", timeout=timeout).status == 200
        except OSError:
            return False


# -- the daemon as a child process ---------------------------------------------------------------
class NodeProcess(HttpClient):
    """One ``python -m sabot.composable_launcher`` process.

    ``env`` holds the node's SABOT_* settings; ``http_port`` is where its HTTP API (coordinator,
    single-node) or its health/metrics port (worker) listens.
    """

    def __init__(self, name: str, env: dict[str, str], http_port: int, log_dir: Path,
                 token: str | None = None) -> None:
        self.name = name
        self.env = dict(env)
        self.http_port = http_port
        self.url = f"http://127.0.0.1:{http_port}"
        self.token = token
        self.log_path = log_dir / f"{name}.log"
        self.proc: subprocess.Popen[bytes] | None = None
        self._log_fh: Any = None
        self.starts = 0
        #: Command prefix, e.g. ``["ip", "netns", "exec", name]`` to run inside a namespace.
        self.prefix: list[str] = []

    def start(self) -> "NodeProcess":
        assert self.proc is None or self.proc.poll() is not None, f"{self.name} already runs"
        self._log_fh = open(self.log_path, "ab")  # appended across restarts
        self._log_fh.write(f"\n=== start {self.starts} ===\n".encode())
        self._log_fh.flush()
        self.proc = subprocess.Popen(
            [*self.prefix, sys.executable, "-m", "sabot.composable_launcher"],
            env=child_env(self.env),
            stdout=self._log_fh, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
            cwd=str(self.log_path.parent))
        self.starts += 1
        return self

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def wait_ready(self, timeout: float = 60) -> "NodeProcess":
        deadline = time.monotonic() + timeout
        while True:
            if not self.running():
                raise AssertionError(f"{self.name} exited with {self.proc and self.proc.returncode}"
                                     f" before it was ready:\n{self.log_tail()}")
            try:
                if self.request("GET", "/ready", timeout=2).status == 200:
                    return self
            except (OSError, ValueError, subprocess.SubprocessError):
                pass
            if time.monotonic() > deadline:
                raise AssertionError(f"{self.name} not ready after {timeout} s:\n{self.log_tail()}")
            time.sleep(0.1)

    def signal(self, sig: int) -> None:
        if self.running():
            os.kill(self.pid, sig)

    def kill(self) -> None:
        """SIGKILL and reap."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
        if self.proc is not None:
            self.proc.wait(30)
        self._close_log()

    def stop(self, timeout: float = 20) -> int | None:
        """SIGTERM (SIGCONT first, in case it is stopped), then SIGKILL after ``timeout``."""
        if self.proc is None:
            return None
        if self.proc.poll() is None:
            try:
                os.kill(self.pid, signal.SIGCONT)
                self.proc.terminate()
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(30)
            except ProcessLookupError:
                pass
        self._close_log()
        return self.proc.returncode

    def _close_log(self) -> None:
        if self._log_fh is not None:
            self._log_fh.close()
            self._log_fh = None

    def log_text(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")
        except FileNotFoundError:
            return ""

    def log_tail(self, lines: int = 60) -> str:
        return "\n".join(self.log_text().splitlines()[-lines:])

    def rss_and_fds(self) -> tuple[int, int]:
        """(resident set size in bytes, open file descriptors) of the process right now."""
        import psutil

        p = psutil.Process(self.pid)
        return int(p.memory_info().rss), int(p.num_fds())


class Cluster:
    """A coordinator and workers on loopback sharing one data dir root and one key file.

    ``settings`` are extra environment variables given to every node (e.g. a short
    ``SABOT_HEARTBEAT_S``); ``coordinator_env`` / ``worker_env`` to one kind only.
    """

    def __init__(self, root: Path, settings: dict[str, str] | None = None, *,
                 token: str | None = None) -> None:
        self.root = root
        self.root.mkdir(parents=True, exist_ok=True)
        self.key_file = root / "cluster.key"
        self.settings = dict(settings or {})
        self.token = token
        self.coordinator: NodeProcess | None = None
        self.workers: list[NodeProcess] = []
        self._names = 0

    def _base_env(self) -> dict[str, str]:
        env = {"SABOT_CLUSTER_KEY_FILE": str(self.key_file), "LOG_LEVEL": "INFO",
               "SABOT_HOST": "127.0.0.1", "SABOT_ADVERTISE_HOST": "127.0.0.1",
               "MAX_WORKERS": "1"}
        if self.token:
            env["SABOT_AUTH_TOKEN"] = self.token
        env.update(self.settings)
        return env

    def start_coordinator(self, wait: bool = True, **env: str) -> NodeProcess:
        port = free_port()
        node_env = self._base_env()
        node_env.update({"SABOT_MODE": "coordinator", "SABOT_PORT": str(port),
                         "SABOT_ZMQ_PORT": str(free_port()),
                         "SABOT_DATA_PORT": str(free_port()),
                         "SABOT_DATA_DIR": str(self.data_dir)})
        node_env.update(env)
        self.coordinator = NodeProcess("coordinator", node_env, port, self.root, self.token)
        self.coordinator.start()
        if wait:
            self.coordinator.wait_ready()
        return self.coordinator

    def restart_coordinator(self, wait: bool = True) -> NodeProcess:
        """Start the coordinator again on the same ports and data dir."""
        assert self.coordinator is not None and not self.coordinator.running()
        self.coordinator.start()
        if wait:
            self.coordinator.wait_ready()
        return self.coordinator

    def add_worker(self, wait: bool = True, **env: str) -> NodeProcess:
        assert self.coordinator is not None
        self._names += 1
        port = free_port()
        node_env = self._base_env()
        node_env.update({"SABOT_MODE": "worker", "SABOT_WORKER_PORT": str(port),
                         "COORDINATOR_HOST": "127.0.0.1",
                         "COORDINATOR_PORT": str(self.coordinator.http_port),
                         "SABOT_DATA_DIR": str(self.root / f"worker-{self._names}-data")})
        node_env.update(env)
        worker = NodeProcess(f"worker-{self._names}", node_env, port, self.root, self.token)
        worker.start()
        self.workers.append(worker)
        if wait:
            worker.wait_ready()
        return worker

    @property
    def data_dir(self) -> Path:
        """The coordinator's data dir (a worker given it shares the coordinator's spool)."""
        return self.root / "coordinator-data"

    def python_handle(self, data_dir: Path | None = None) -> Any:
        """A Python API handle of this cluster's coordinator, with the cluster's key file
        (``data_dir``: the client's own, e.g. :attr:`data_dir` to share the spool)."""
        import sabot
        from sabot.config import load_config

        assert self.coordinator is not None
        extra = {} if data_dir is None else {"data_dir": str(data_dir)}
        config = load_config(env={}, cluster_key_file=str(self.key_file),
                             coordinator_host="127.0.0.1",
                             coordinator_port=self.coordinator.http_port, **extra)
        return sabot.create_distributed_coordinator("127.0.0.1", self.coordinator.http_port,
                                                    config=config)

    def alive_workers(self) -> list[dict[str, Any]]:
        assert self.coordinator is not None
        nodes = self.coordinator.request("GET", "/nodes", timeout=5).json["nodes"]
        return [n for n in nodes if n.get("role", "worker") == "worker"
                and n.get("status") == "alive"]

    def wait_workers(self, count: int, timeout: float = 60) -> list[dict[str, Any]]:
        """Wait until the coordinator lists at least ``count`` alive workers."""
        deadline = time.monotonic() + timeout
        while True:
            try:
                alive = self.alive_workers()
                if len(alive) >= count:
                    return alive
            except (OSError, KeyError, ValueError):
                alive = []
            if time.monotonic() > deadline:
                logs = "\n".join(w.log_tail(15) for w in self.workers)
                raise AssertionError(f"{len(alive)} of {count} workers alive after {timeout} s:"
                                     f"\n{self.coordinator and self.coordinator.log_tail()}\n{logs}")
            time.sleep(0.1)

    def stop(self) -> None:
        for w in self.workers:
            w.stop(timeout=10)
        if self.coordinator is not None:
            self.coordinator.stop(timeout=10)

    def logs(self) -> str:
        parts = [self.coordinator.log_tail(80)] if self.coordinator else []
        parts += [f"--- {w.name}\n{w.log_tail(30)}" for w in self.workers]
        return "\n".join(parts)


# -- the HTTP API in this process ----------------------------------------------------------------
class InProcessNode(HttpClient):
    """HttpApi + LocalBackend + LocalEngine served from a background thread."""

    def __init__(self, data_dir: Path, *, api_kw: dict[str, Any] | None = None,
                 **config: Any) -> None:
        from sabot.config import load_config

        data_dir.mkdir(parents=True, exist_ok=True)
        config.setdefault("max_workers", 1)
        self.config = load_config(env={}, host="127.0.0.1", port=0, data_dir=str(data_dir),
                                  cluster_key_file=str(data_dir / "cluster.key"), **config)
        self.token = self.config.auth_token
        self.api_kw = api_kw or {}
        self.loop = asyncio.new_event_loop()
        self._ready = threading.Event()
        self._error: BaseException | None = None
        self._thread = threading.Thread(target=self._main, daemon=True, name="sabot-test-node")
        self._thread.start()
        self._ready.wait(60)
        if self._error is not None:
            raise self._error

    def _main(self) -> None:
        asyncio.set_event_loop(self.loop)
        try:
            self.loop.run_until_complete(self._start())
        except BaseException as exc:  # handed to the constructor
            self._error = exc
            self._ready.set()
            return
        self._ready.set()
        self.loop.run_forever()

    async def _start(self) -> None:
        from sabot.engine.local_engine import LocalEngine
        from sabot.node.local_node import LocalBackend
        from sabot.http.server import HttpApi

        self.engine = LocalEngine(self.config)
        self.backend = LocalBackend(self.config, self.engine.process, self.engine.get_stats)
        self.api = HttpApi(self.config, self.backend, **self.api_kw)
        self.port = await self.api.start("127.0.0.1", 0)
        self.url = f"http://127.0.0.1:{self.port}"

    def stop(self) -> None:
        async def shutdown() -> None:
            await self.api.stop()
            await self.backend.close()
            await self.engine.close()
            # Connections the tests dropped half-way leave handler tasks behind: end them here,
            # so the loop closes without "Task was destroyed but it is pending".
            others = [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]
            for task in others:
                task.cancel()
            await asyncio.gather(*others, return_exceptions=True)

        try:
            asyncio.run_coroutine_threadsafe(shutdown(), self.loop).result(60)
        finally:
            self.loop.call_soon_threadsafe(self.loop.stop)
            self._thread.join(30)
            self.loop.close()




def record(scenario: str, **figures: Any) -> None:
    """Append one scenario's figures (jobs, kills, results checked, lost, duplicated...) to the
    results file; tests/reliability/report.py renders the last run into docs/reliability.md."""
    RESULTS_FILE.parent.mkdir(parents=True, exist_ok=True)
    line = {"scenario": scenario, "time": time.time(), **figures}
    with open(RESULTS_FILE, "a", encoding="utf-8") as fh:
        fh.write(json.dumps(line, sort_keys=True) + "\n")


def chaos_procs() -> Any:
    """The reliability processors module, imported here for the serial reference run."""
    if str(CHAOS_PROCS_DIR) not in sys.path:
        sys.path.append(str(CHAOS_PROCS_DIR))
    import sabot_chaos_procs

    return sabot_chaos_procs


# -- pytest glue shared by the conftest files ----------------------------------------------------
def slow_enabled(config: Any) -> bool:
    """Long variants run with ``-m slow`` (or any marker expression naming slow positively) or
    SABOT_SLOW=1; the default run (CI) takes the short forms only."""
    expr = str(config.getoption("markexpr", "") or "")
    return os.environ.get("SABOT_SLOW") == "1" or ("slow" in expr and "not slow" not in expr)


__all__ = ["free_port", "child_env", "http", "HttpReply", "HttpClient", "NodeProcess", "Cluster",
           "InProcessNode", "slow_enabled", "record", "chaos_procs", "REPO", "PYTHON_DIR",
           "CHAOS_SETTINGS", "RESULTS_FILE", "python_child", "end_child"]


def curve_dealer(endpoint: str, keys: Any) -> tuple[Any, Any, int]:
    """A CURVE-authenticated DEALER connected to a coordinator's ZeroMQ endpoint, for tests that
    speak the wire protocol by hand: (context, socket, a fresh odd session id)."""
    import zmq

    ctx = zmq.Context()
    sock = ctx.socket(zmq.DEALER)
    sock.curve_serverkey = keys.server_public
    sock.curve_publickey = keys.client_public
    sock.curve_secretkey = keys.client_secret
    sock.setsockopt(zmq.LINGER, 0)
    sock.connect(endpoint)
    return ctx, sock, int.from_bytes(os.urandom(8), "big") | 1


def decode_all(frames: list[bytes]) -> list[Any]:
    """The messages of one ZeroMQ message (a peer may send several together, one per frame),
    with assign-many and morsel-results opened into the assign / morsel-result they carry."""
    from sabot.cluster.protocol import check_frames, decode_frame

    check_frames(frames)
    out = []
    for f in frames:
        msg = decode_frame(f).msg
        out += msg.expand() if hasattr(msg, "expand") else [msg]
    return out
