"""Cluster: a coordinator and 2 workers on loopback against Ray and Dask with the same 2 workers.

Sabot runs as the README's three terminals do: one coordinator process and two worker processes
(``python -m sabot.composable_launcher`` with SABOT_MODE and COORDINATOR_HOST/PORT), started before
timing; the client is ``sabot.create_distributed_coordinator(host, port)`` in this process and
``submit_distributed_job`` + ``get_distributed_job_result``. Ray runs ``ray.init(num_cpus=2)`` and
Dask a LocalCluster of 2 single-threaded worker processes. Four cases:

- small-job latency: a 10-item job (one task), submit to result, p50/p99 over many jobs; beside
  the peers, a hand-written ZeroMQ relay (bench/zmq_relay.py) shows what the hops alone cost;
- morsels per second: one job of 10k one-item morsels (Ray and Dask: 10k one-item tasks);
- a 10M-item ``square`` job, in large morsels or chunks, items/s; beside Sabot's figure, the
  client's CPU per item and the megabytes that crossed the coordinator's socket
  (``client_cpu_us_per_item``, ``coordinator_MB``: the coordinator's ``bytes_received`` and
  ``bytes_sent`` counters). The cluster shares one data dir, as the README's three terminals
  do, so bulk bytes take the spool (docs/cluster.md) and only references cross the coordinator;
- a vectorized ``3x + 1`` over a 40M-element int64 numpy array (320 MB), items/s: Sabot as
  ``sabot.batch``, Ray and Dask calling it on each of their chunks.
"""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from typing import Any

from .engines import DaskEngine, ItemEngine, RayEngine
from .harness import REPO_ROOT, Case, open_engines, run_case, run_latency_case, sabot_status
from .workloads import affine, array_checksum, checksum, square
from .zmq_relay import ZmqRelayEngine

TITLE = "cluster on loopback: small-job latency, morsels/s, 10M-item and numpy jobs on 2 workers"
WORKERS = 2
TIMED_LATENCY = "submit of a 10-item job to its results in the client (cluster already running)"
TIMED_TASKS = "one job of 10k one-item morsels (peers: 10k one-item tasks), submit to all results"
#: Runs of at least this many items report the client's CPU per item and the bytes that crossed
#: the coordinator (threads' CPU times come in 10 ms ticks, and reading them and the
#: coordinator's counters costs milliseconds: shorter runs are left undisturbed).
CPU_MIN_ITEMS = 100_000
TIMED_BIG = "submit of the whole input from the client to all results back in the client"
TIMED_ARRAY = ("submit of the whole array from the client to the result array back in the "
               "client (Sabot: sabot.batch; peers: the function on each chunk)")


def _thread_cpu() -> dict[int, float]:
    """CPU seconds of each thread of this process, by native thread id."""
    import psutil

    return {t.id: t.user_time + t.system_time for t in psutil.Process().threads()}


def _die_with_parent() -> None:
    """In the child, before exec: get SIGTERM when the benchmark process dies (Linux), so a
    killed benchmark never leaves a cluster running."""
    try:
        import ctypes

        libc = ctypes.CDLL(None, use_errno=True)
        PR_SET_PDEATHSIG = 1
        libc.prctl(PR_SET_PDEATHSIG, signal.SIGTERM)
    except (OSError, AttributeError):
        pass


def stop_processes(procs: list[subprocess.Popen[bytes]], wait_s: float = 20) -> None:
    """SIGTERM each process (in order), then wait for each; one that does not exit in time is
    killed."""
    for p in procs:
        if p.poll() is None:
            p.send_signal(signal.SIGTERM)
    for p in procs:
        try:
            p.wait(timeout=wait_s)
        except subprocess.TimeoutExpired:
            p.kill()
            p.wait()


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class LocalSabotCluster:
    """A coordinator and ``workers`` worker processes on 127.0.0.1, as the README starts them;
    ``shared=False``: each worker with a data dir of its own (as on other hosts: big data goes
    through the coordinator's data port, not the shared spool)."""

    def __init__(self, workers: int, shared: bool = True) -> None:
        self.workers = workers
        self.shared = shared
        self.procs: list[subprocess.Popen[bytes]] = []
        self.dir = tempfile.mkdtemp(prefix="sabot-bench-")
        self.port = _free_port()
        self.zmq_port = _free_port()
        self.env = self._env()

    def _env(self) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items()
               if not k.startswith(("SABOT_", "COORDINATOR_")) and k not in (
                   "MAX_WORKERS", "MORSEL_SIZE_KB", "TARGET_UTILIZATION", "CLUSTER_NAME")}
        env["PYTHONPATH"] = os.pathsep.join(
            p for p in (str(REPO_ROOT), os.environ.get("PYTHONPATH", "")) if p)
        env["SABOT_CLUSTER_KEY_FILE"] = os.path.join(self.dir, "cluster.key")
        env["SABOT_DATA_DIR"] = os.path.join(self.dir, "data")
        env["CLUSTER_NAME"] = "sabot-bench"
        env["LOG_LEVEL"] = "WARNING"
        return env

    def start(self, timeout: float = 60.0) -> None:
        coord_env = {**self.env, "SABOT_MODE": "coordinator", "SABOT_HOST": "127.0.0.1",
                     "SABOT_PORT": str(self.port), "SABOT_ZMQ_PORT": str(self.zmq_port)}
        self._spawn(coord_env, "coordinator")
        self._wait_http(timeout)
        for i in range(self.workers):
            own = {} if self.shared else {
                "SABOT_DATA_DIR": os.path.join(self.dir, f"worker-{i}-data")}
            self._spawn({**self.env, "SABOT_MODE": "worker", "COORDINATOR_HOST": "127.0.0.1",
                         "COORDINATOR_PORT": str(self.port), "SABOT_WORKER_PORT": "0",
                         "SABOT_HOST": "127.0.0.1", **own}, f"worker-{i}")
        self._wait_workers(timeout)

    def _spawn(self, env: dict[str, str], name: str) -> None:
        log = open(os.path.join(self.dir, f"{name}.log"), "wb")
        self.procs.append(subprocess.Popen(
            [sys.executable, "-m", "sabot.composable_launcher"], env=env, cwd=self.dir,
            stdout=log, stderr=subprocess.STDOUT,
            preexec_fn=_die_with_parent if sys.platform.startswith("linux") else None))
        log.close()

    def _get(self, path: str) -> Any:
        with urllib.request.urlopen(f"http://127.0.0.1:{self.port}{path}", timeout=2) as r:
            return json.loads(r.read())

    def _check_alive(self) -> None:
        for p in self.procs:
            if p.poll() is not None:
                raise RuntimeError(f"a cluster process exited with {p.returncode}: "
                                   f"{self.log_tail()}")

    def _wait_http(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            self._check_alive()
            try:
                self._get("/health")
                return
            except OSError:
                time.sleep(0.2)
        raise TimeoutError(f"the coordinator did not serve HTTP within {timeout:.0f} s")

    def alive_workers(self) -> int:
        nodes = self._get("/nodes")
        if isinstance(nodes, dict):
            nodes = nodes.get("nodes", nodes.get("workers", []))
        if isinstance(nodes, dict):
            nodes = list(nodes.values())
        return sum(1 for n in nodes if isinstance(n, dict) and n.get("role", "worker") == "worker"
                   and str(n.get("status", n.get("state", "alive"))).lower()
                   in ("alive", "ready", "idle", "busy", "active", "healthy"))

    def _wait_workers(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            self._check_alive()
            try:
                if self.alive_workers() >= self.workers:
                    return
            except OSError:
                pass
            time.sleep(0.2)
        raise TimeoutError(f"{self.workers} workers did not register within {timeout:.0f} s")

    def log_tail(self) -> str:
        tails = []
        for name in sorted(os.listdir(self.dir)):
            if name.endswith(".log"):
                with open(os.path.join(self.dir, name), "rb") as f:
                    lines = f.read().decode(errors="replace").strip().splitlines()[-3:]
                tails.append(f"{name}: {' / '.join(lines)}")
        return " | ".join(tails)

    def stop(self) -> None:
        stop_processes(self.procs[::-1])  # workers first, then the coordinator
        self.procs.clear()
        shutil.rmtree(self.dir, ignore_errors=True)


class SabotClusterEngine(ItemEngine):
    """Sabot through its distributed API, against a running local cluster."""

    name = "sabot"

    def __init__(self, workers: int, shared: bool = True) -> None:
        super().__init__(workers=workers)
        #: False: the client and each worker have data dirs of their own (peers on other
        #: hosts, as the spool sees them): bulk data through the coordinator's data port.
        self.shared = shared
        if not shared:
            self.name = "sabot, peers elsewhere"
        self.cluster: LocalSabotCluster | None = None
        self.loop: asyncio.AbstractEventLoop | None = None
        self.coordinator: Any = None
        self.morsel_items: int | None = None
        self._cpu_s = 0.0  # the client's CPU seconds in the last run
        self._threads: set[int] = set()  # native ids of the client's threads
        self._crossed: tuple[int, int] | None = None  # coordinator bytes in/out at the last look

    def availability(self) -> tuple[bool, str]:
        return sabot_status("create_distributed_coordinator", "submit_distributed_job",
                            "get_distributed_job_result")

    def _coordinator_bytes(self) -> tuple[int, int] | None:
        assert self.cluster is not None
        try:
            counters = self.cluster._get("/stats").get("counters", {})
            return int(counters["bytes_received"]), int(counters["bytes_sent"])
        except Exception:  # noqa: BLE001 - an older Sabot has no such counters
            return None

    def describe(self) -> dict[str, Any]:
        """What the last run cost outside the workers: the client's CPU per item, and the
        bytes that crossed the coordinator's socket (in + out; read after the timed run)."""
        out: dict[str, Any] = {}
        if len(self.data) < CPU_MIN_ITEMS:
            return out  # (a short run is not disturbed by measuring it)
        out["client_cpu_us_per_item"] = round(self._cpu_s / len(self.data) * 1e6, 3)
        now = self._coordinator_bytes()
        if now is not None and self._crossed is not None:
            out["coordinator_MB"] = round(
                (now[0] - self._crossed[0] + now[1] - self._crossed[1]) / 1e6, 3)
        return out

    def setup(self) -> None:
        import sabot

        self.cluster = LocalSabotCluster(self.workers, self.shared)
        try:
            self.cluster.start()
        except BaseException:
            self.cluster.stop()
            self.cluster = None
            raise
        # the client uses the cluster's key file and name, as a user's client would
        env = dict(self.cluster.env)
        if not self.shared:
            env["SABOT_DATA_DIR"] = os.path.join(self.cluster.dir, "client-data")
        config = sabot.load_config(env=env)
        self.loop = asyncio.new_event_loop()
        self.coordinator = sabot.create_distributed_coordinator("127.0.0.1", self.cluster.port,
                                                                config=config)

    def prepare(self) -> None:
        if self.morsel_items is not None and "morsel_items" not in inspect.signature(
                self.coordinator.submit).parameters:
            raise RuntimeError("this Sabot cannot fix the items per morsel (no morsel_items)")

    def run(self) -> Any:
        import sabot

        # (a vectorized function runs on whole morsels, as a Sabot user would mark it)
        func = sabot.batch(self.func) if getattr(self.func, "on_chunks", False) else self.func

        async def go() -> Any:
            if self.morsel_items is not None:
                # the README's submit_distributed_job has no morsel size: the handle's submit does
                job_id = await self.coordinator.submit(self.data, func,
                                                       morsel_items=self.morsel_items)
            else:
                job_id = await sabot.submit_distributed_job(self.coordinator, self.data, func)
            return await sabot.get_distributed_job_result(self.coordinator, job_id, timeout=600)

        assert self.loop is not None
        if len(self.data) < CPU_MIN_ITEMS:
            # (reading every thread's CPU time costs milliseconds with the peers' threads
            # in this process: only a long run can afford it inside its timing)
            return self.loop.run_until_complete(go())
        self._crossed = self._coordinator_bytes()
        before = _thread_cpu()
        try:
            return self.loop.run_until_complete(go())
        finally:
            after = _thread_cpu()
            # The client's threads: this one, and those that appeared during Sabot's runs (its
            # ZeroMQ I/O threads, the threads that split and encode); not the threads the peers'
            # drivers keep in this process (Dask's scheduler loop, Ray's), busy meanwhile too.
            self._threads |= after.keys() - before.keys()
            self._threads.add(threading.get_native_id())
            self._cpu_s = sum(after[t] - before.get(t, 0.0) for t in self._threads if t in after)

    def teardown(self) -> None:
        if self.loop is not None:
            close = getattr(self.coordinator, "close", None) or getattr(
                self.coordinator, "stop", None)
            if close is not None:
                with contextlib.suppress(Exception):
                    res = close()
                    if inspect.isawaitable(res):
                        self.loop.run_until_complete(res)
            self.loop.close()
            self.loop = None
        if self.cluster is not None:
            self.cluster.stop()
            self.cluster = None


def _configure(engines: list[ItemEngine], data: Any, chunks: int | None,
               morsel_items: int | None, func: Any = square) -> list[ItemEngine]:
    for e in engines:
        e.bind(data, func)
        if isinstance(e, SabotClusterEngine):
            e.morsel_items = morsel_items
            e.params.pop("morsel_items", None)
            if morsel_items:
                e.params["morsel_items"] = morsel_items
        elif chunks is not None:
            e.params["chunks"] = chunks
    return engines


def run(quick: bool, threads: list[int], repeat: int | None = None) -> list[dict[str, Any]]:
    repeats = repeat or (1 if quick else 3)
    n_big = 200_000 if quick else 10_000_000
    n_array = 1_000_000 if quick else 40_000_000
    n_tasks = 1_000 if quick else 10_000
    calls = 30 if quick else 300
    rows: list[dict[str, Any]] = []
    relay = ZmqRelayEngine(WORKERS)
    elsewhere = SabotClusterEngine(WORKERS, shared=False)
    with open_engines([SabotClusterEngine(WORKERS), RayEngine(WORKERS),
                       DaskEngine(WORKERS), relay, elsewhere]) as opened:
        engines = [e for e in opened if e is not relay and e is not elsewhere]
        # (the bulk cases also run with the peers elsewhere: the data port's figures)
        bulk = engines + [e for e in opened if e is elsewhere]
        small = list(range(10))
        rows += run_latency_case("cluster", Case(
            name="small job (10 items)",
            engines=_configure(engines, small, 1, None) + [relay.bind(small, square)],
            answer=checksum, timed=TIMED_LATENCY, params={"items": 10, "workers": WORKERS,
                                                          "calls": calls}), calls)
        for r in rows:
            if r["engine"] == relay.name:
                # the hops with nothing in them: a floor to read Sabot's figure against, not a
                # competitor (it journals, authenticates and isolates nothing)
                r["scale_reference"] = True
        tiny = list(range(n_tasks))
        rows += run_case("cluster", Case(
            name=f"{n_tasks:,} one-item morsels", engines=_configure(engines, tiny, n_tasks, 1),
            work=n_tasks, metric="morsels/s", answer=checksum, timed=TIMED_TASKS,
            params={"items": n_tasks, "workers": WORKERS}), repeats,
            warmup=False)  # the latency case has warmed every engine up
        big = list(range(n_big))
        rows += run_case("cluster", Case(
            name=f"square {n_big:,} items", engines=_configure(
                bulk, big, WORKERS * 4, None), work=n_big, metric="items/s",
            answer=checksum, timed=TIMED_BIG, params={"items": n_big, "workers": WORKERS},
            run_timeout_s=900), repeats, warmup=False)
        del big
        import numpy as np

        array = np.arange(n_array, dtype=np.int64)
        rows += run_case("cluster", Case(
            name=f"numpy 3x+1, {n_array:,} int64", engines=_configure(
                bulk, array, WORKERS * 4, None, affine), work=n_array, metric="items/s",
            answer=array_checksum, timed=TIMED_ARRAY,
            params={"items": n_array, "workers": WORKERS, "MB": array.nbytes // 1_000_000},
            # (warmed up on this case: the first 320 MB job of a cluster ran 2-3x slower than
            # the next ones, for Sabot and Ray alike, and made the median one cold run of three)
            run_timeout_s=900), repeats, warmup=True)
    return rows
