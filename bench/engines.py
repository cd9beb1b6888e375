"""Engines for per-item work: Sabot and the engines users would pick instead.

Each engine applies a per-item function to a list and returns the results as a list in input
order. Pools and clusters are started in ``setup`` and stopped in ``teardown`` (untimed), as a
user starts them once and reuses them; ``run`` is what is timed.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import math
import multiprocessing
import os
import time
import warnings
from typing import Any, Callable, Sequence

from .harness import Engine, peer_status, sabot_status
from .workloads import Opaque, chunks_of, map_chunk, map_opaque

# Chunk-based peers get this many chunks per worker: enough to balance two workers, few enough
# that per-task overhead (their weak point) stays small ("large chunks", as their docs advise).
CHUNKS_PER_WORKER = 4


def _flatten(parts: Sequence[Sequence[Any]]) -> Any:
    """Chunks back into one result: a list, or one array for numpy chunks."""
    if parts and hasattr(parts[0], "dtype") and hasattr(parts[0], "shape"):
        import numpy as np

        return np.concatenate(parts)
    return list(itertools.chain.from_iterable(parts))


class ItemEngine(Engine):
    """An engine that applies ``func`` to every item of ``data`` (set per case by ``bind``)."""

    def __init__(self, workers: int, **params: Any) -> None:
        super().__init__(workers=workers, **params)
        self.workers = workers
        self.data: Sequence[Any] = []
        self.func: Callable[[Any], Any] = abs

    def bind(self, data: Sequence[Any], func: Callable[[Any], Any]) -> ItemEngine:
        self.data, self.func = data, func
        return self


class SerialEngine(ItemEngine):
    """``[func(x) for x in data]``: what parallelism has to beat."""

    name = "list comprehension"

    def __init__(self) -> None:
        super().__init__(workers=1)

    def run(self) -> list[Any]:
        func = self.func
        return [func(x) for x in self.data]


class PoolEngine(ItemEngine):
    """``multiprocessing.Pool(workers).map(func, data, chunksize)`` with the best chunksize.

    The chunksize is chosen per case (untimed) by timing each candidate once on the same input.
    """

    name = "multiprocessing.Pool"

    def __init__(self, workers: int) -> None:
        super().__init__(workers=workers)
        self.pool: Any = None
        self.chunksize = 1

    def setup(self) -> None:
        self.pool = multiprocessing.get_context().Pool(self.workers)
        self.pool.map(abs, range(self.workers * 4))  # start the children before timing

    def prepare(self) -> None:
        n = max(1, len(self.data))
        candidates = sorted({max(1, n // (self.workers * k)) for k in (1, 4, 16, 64)}
                            | {c for c in (10000,) if c < n})
        best = math.inf
        tried = {}
        for cs in candidates:
            t0 = time.perf_counter()
            self.pool.map(self.func, self.data, chunksize=cs)
            dt = time.perf_counter() - t0
            tried[cs] = round(dt, 4)
            if dt < best:
                best, self.chunksize = dt, cs
        self.params.update(chunksize=self.chunksize, chunksizes_tried=tried)

    def run(self) -> list[Any]:
        return self.pool.map(self.func, self.data, chunksize=self.chunksize)

    def teardown(self) -> None:
        if self.pool is not None:
            self.pool.close()
            self.pool.join()
            self.pool = None


class JoblibEngine(ItemEngine):
    """``joblib.Parallel(n_jobs=workers)`` (loky processes) over large chunks."""

    name = "joblib"

    def __init__(self, workers: int) -> None:
        super().__init__(workers=workers, chunks=workers * CHUNKS_PER_WORKER)
        self.parallel: Any = None

    def availability(self) -> tuple[bool, str]:
        return peer_status("joblib")

    def setup(self) -> None:
        import joblib

        self.parallel = joblib.Parallel(n_jobs=self.workers, backend="loky")
        self.parallel.__enter__()
        self.parallel(joblib.delayed(abs)(i) for i in range(self.workers * 2))  # warm the pool

    def run(self) -> list[Any]:
        import joblib

        chunks = chunks_of(self.data, self.params["chunks"])
        parts = self.parallel(joblib.delayed(map_chunk)(self.func, c) for c in chunks)
        return _flatten(parts)

    def teardown(self) -> None:
        if self.parallel is not None:
            self.parallel.__exit__(None, None, None)
            self.parallel = None


class DaskEngine(ItemEngine):
    """Dask distributed: a LocalCluster of ``workers`` processes (one thread each), Client.map
    over large chunks (each wrapped in ``Opaque``, see there), gather."""

    name = "dask"

    def __init__(self, workers: int) -> None:
        super().__init__(workers=workers, chunks=workers * CHUNKS_PER_WORKER)
        self.cluster: Any = None
        self.client: Any = None

    def availability(self) -> tuple[bool, str]:
        return peer_status("distributed", "distributed")

    def setup(self) -> None:
        from distributed import Client, LocalCluster

        self.cluster = LocalCluster(n_workers=self.workers, threads_per_worker=1, processes=True,
                                    dashboard_address=None, silence_logs=logging.ERROR)
        self.client = Client(self.cluster)
        self.client.gather(self.client.map(abs, range(self.workers * 2)))

    def run(self) -> list[Any]:
        chunks = [Opaque(c) for c in chunks_of(self.data, self.params["chunks"])]
        with warnings.catch_warnings():
            # "Sending large graph": the data lives in the client, so it travels with the tasks
            warnings.simplefilter("ignore", UserWarning)
            futures = self.client.map(map_opaque, [self.func] * len(chunks), chunks, pure=False)
        parts = self.client.gather(futures)
        for f in futures:
            f.release()
        return _flatten([p.items for p in parts])

    def teardown(self) -> None:
        if self.client is not None:
            self.client.close()
            self.client = None
        if self.cluster is not None:
            self.cluster.close()
            self.cluster = None


def ray_init(workers: int) -> Any:
    """Start a local Ray with ``workers`` CPUs, quietly, with the repository importable."""
    import ray

    from .harness import REPO_ROOT

    path = os.pathsep.join(p for p in (str(REPO_ROOT), os.environ.get("PYTHONPATH", "")) if p)
    ray.init(num_cpus=workers, include_dashboard=False, log_to_driver=False,
             logging_level=logging.ERROR, configure_logging=True,
             object_store_memory=1 << 30,
             runtime_env={"env_vars": {"PYTHONPATH": path}})
    return ray


class RayEngine(ItemEngine):
    """Ray tasks over large chunks (``ray.init(num_cpus=workers)``), ``ray.get``."""

    name = "ray"

    def __init__(self, workers: int) -> None:
        super().__init__(workers=workers, chunks=workers * CHUNKS_PER_WORKER)
        self.ray: Any = None
        self.remote: Any = None

    def availability(self) -> tuple[bool, str]:
        return peer_status("ray")

    def setup(self) -> None:
        self.ray = ray_init(self.workers)
        self.remote = self.ray.remote(map_chunk)
        # start the worker processes before timing
        self.ray.get([self.remote.remote(abs, [i]) for i in range(self.workers * 2)])

    def run(self) -> list[Any]:
        chunks = chunks_of(self.data, self.params["chunks"])
        parts = self.ray.get([self.remote.remote(self.func, c) for c in chunks])
        return _flatten(parts)

    def teardown(self) -> None:
        if self.ray is not None:
            self.ray.shutdown()
            self.ray = None


class SabotLauncherEngine(ItemEngine):
    """Sabot as the README shows it: a started launcher, ``await launcher.process_data(data, f)``.

    The launcher is started in setup (as a user's program does once); its adaptive controller
    picks the executor and the number of worker processes.
    """

    name = "sabot"

    def __init__(self, **config: Any) -> None:
        super().__init__(workers="auto", **{"config": config} if config else {})
        self.config = config
        self.loop: asyncio.AbstractEventLoop | None = None
        self.launcher: Any = None

    def availability(self) -> tuple[bool, str]:
        return sabot_status("create_composable_launcher")

    def setup(self) -> None:
        import sabot

        self.loop = asyncio.new_event_loop()
        self.launcher = sabot.create_composable_launcher(**{"mode": "single-node", **self.config})
        self.loop.run_until_complete(self.launcher.start())

    def run(self) -> Any:
        assert self.loop is not None
        return self.loop.run_until_complete(self.launcher.process_data(self.data, self.func))

    def describe(self) -> dict[str, Any]:
        """The adaptive controller's choice for the last call (executor, workers)."""
        try:
            ctl = self.launcher.get_stats().get("controller") or {}
        except Exception:
            return {}
        out = {}
        if ctl.get("reason"):
            out["controller_reason"] = str(ctl["reason"])[:200]
        if "executor" in ctl:
            out["executor"] = ctl["executor"]
            if ctl["executor"] not in ("inline",) and "workers" in ctl:
                out["workers"] = ctl["workers"]
            elif ctl["executor"] == "inline":
                out["workers"] = 1
        return out

    def teardown(self) -> None:
        if self.launcher is not None and self.loop is not None:
            try:
                self.loop.run_until_complete(self.launcher.stop())
            finally:
                self.launcher = None
        if self.loop is not None:
            self.loop.close()
            self.loop = None


def per_item_engines(workers: int) -> list[ItemEngine]:
    """Sabot and every peer for per-item cases, in the order they alternate (``bind`` each)."""
    return [
        SabotLauncherEngine(),
        SerialEngine(),
        PoolEngine(workers),
        JoblibEngine(workers),
        DaskEngine(workers),
        RayEngine(workers),
    ]
