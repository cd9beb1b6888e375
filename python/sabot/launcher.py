"""The ComposableLauncher: one object that runs a Sabot node in whichever mode the config says.

* **single-node**: a :class:`~sabot.engine.LocalEngine` runs ``process_data`` here; with
  ``start(serve_http=True)`` (always for the daemon) the node also serves its HTTP API.
* **coordinator**: starts the cluster coordinator; ``process_data`` submits a job to the cluster
  and waits for its result.
* **worker**: joins the coordinator at COORDINATOR_HOST:COORDINATOR_PORT and runs morsels the
  coordinator sends; ``process_data`` on a worker runs locally.

The mode comes from ``config.resolved_mode`` (SABOT_MODE; ``auto`` is worker when
COORDINATOR_HOST is set, else single-node); it and the reason are logged and shown in stats.

Library default: ``await launcher.start()`` does *not* open the HTTP port in single-node mode (a
script must not fail because port 8080 is taken); pass ``serve_http=True`` to serve it.
"""

from __future__ import annotations

import asyncio
import logging
import signal
import socket
import threading
import time
from collections.abc import AsyncIterator
from typing import Any

from . import __version__
from .config import Config, load_config
from .engine import LocalEngine
from .errors import CoordinatorUnavailableError
from .logging_setup import configure_logging
from .processors import load_processor_modules
from .progress_bar import sized, with_item_bar
from .run_blocking import run_blocking

log = logging.getLogger("sabot.launcher")

SINGLE_NODE = "single-node"
COORDINATOR = "coordinator"
WORKER = "worker"


class ComposableLauncher:
    """A Sabot node. Create it with :func:`create_composable_launcher`."""

    def __init__(self, config: Config | None = None) -> None:
        self.config = config if config is not None else load_config()
        self.mode, self.mode_reason = self.config.mode_and_reason
        self.node_id = (self.config.node_name or self.config.advertise_host
                        or socket.gethostname())
        self.engine = LocalEngine(self.config, node=self.node_id)
        self._coordinator: Any = None
        self._worker: Any = None
        self._http: Any = None  # the LocalHttpNode, while serving
        self._http_port: int | None = None
        self._started = False
        self._stopped = False
        self._started_at: float | None = None
        self._start_lock = asyncio.Lock()

    # -- lifecycle -------------------------------------------------------------------------
    @property
    def started(self) -> bool:
        return self._started

    @property
    def http_port(self) -> int | None:
        """The port the HTTP API is bound to, when this launcher serves it."""
        return self._http_port

    async def start(self, serve_http: bool | None = None) -> None:
        """Start the node; returns once it is ready (never blocks the caller).

        ``serve_http``: serve the single-node HTTP API on SABOT_HOST:SABOT_PORT. ``None``
        (default) means no for a library caller; the daemon passes True. A coordinator and a
        worker serve their own HTTP endpoints as part of the cluster.
        """
        async with self._start_lock:
            if self._started:
                return
            if self._stopped:
                raise RuntimeError("this launcher was stopped; create a new one")
            log.info("Sabot %s starting in %s mode (%s)", __version__, self.mode,
                     self.mode_reason)
            if self.mode == COORDINATOR:
                await self._start_coordinator()
            elif self.mode == WORKER:
                await self._start_worker()
            elif serve_http:
                await self._start_http()
                # A serving node expects work: have the worker pool ready for the first job.
                self.engine.warm_up()
            self._started = True
            self._started_at = time.time()
            where = f", HTTP on port {self._http_port}" if self._http_port else ""
            if self._worker is not None and not self._worker.registered:
                # Not ready: the worker keeps trying, and logs when it registers.
                log.warning("Sabot node %s started (%s mode%s) but is not registered with the "
                            "coordinator at %s:%s; not ready until it is", self.node_id,
                            self.mode, where, self.config.coordinator_host,
                            self.config.coordinator_port)
            else:
                log.info("Sabot node %s ready (%s mode%s)", self.node_id, self.mode, where)

    async def _start_coordinator(self) -> None:
        # (the cluster stack, ZeroMQ and the journal, is imported only in the modes that run it)
        from .distributed import create_distributed_coordinator

        handle = create_distributed_coordinator(config=self.config)
        self._coordinator = handle  # set first: stop() cleans up a start that was interrupted
        await handle.start()
        self.node_id = handle.node_id or self.node_id
        self._http_port = getattr(handle, "http_port", None)

    async def _start_worker(self) -> None:
        from .distributed import create_worker_node

        worker = create_worker_node(config=self.config)
        self._worker = worker  # set first: stop() cleans up a start that was interrupted
        await worker.start()
        self.node_id = worker.node_id or self.node_id

    async def _start_http(self) -> None:
        # Imported when serving: the HTTP stack (aiohttp) takes a good part of a second to
        # import, which a script that only calls process_data must not pay.
        from .node.local_node import LocalHttpNode

        node = LocalHttpNode(self.config, self.engine, stats=self.get_stats,
                             node_id=self.node_id)
        port = await node.start()
        self._http, self._http_port = node, port

    async def stop(self) -> None:
        """Stop serving, finish or cancel running work, stop the pool. Idempotent."""
        if self._stopped:
            return
        self._stopped = True
        log.info("Sabot node %s stopping", self.node_id)
        errors: list[BaseException] = []
        for step in (self._stop_http, self._stop_cluster):
            try:
                await step()
            except Exception as exc:  # keep stopping the rest
                log.exception("error while stopping")
                errors.append(exc)
        await self.engine.close()
        self._started = False
        log.info("Sabot node %s stopped", self.node_id)
        if errors:
            raise errors[0]

    async def _stop_http(self) -> None:
        node, self._http = self._http, None
        if node is not None:
            await node.stop()

    async def _stop_cluster(self) -> None:
        coordinator, worker = self._coordinator, self._worker
        self._coordinator = self._worker = None
        if worker is not None:
            await worker.stop()
        if coordinator is not None:
            await coordinator.stop()

    async def __aenter__(self) -> ComposableLauncher:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    async def wait_failed(self) -> str:
        """Returns (with the reason) once this node has failed in a way it cannot recover from
        (a coordinator's core thread died); never otherwise."""
        if self._coordinator is not None:
            return await self._coordinator.wait_failed()
        await asyncio.Event().wait()
        raise AssertionError("unreachable")

    # -- work ------------------------------------------------------------------------------
    async def process_data(self, data: Any, func: Any, *, progress: bool = False) -> Any:
        """Apply ``func`` to every item of ``data``; results in input order, typed like the
        input (list, numpy array or Arrow). See docs/api.md for the accepted kinds.

        Starts the node first when needed. In coordinator mode the work runs on the cluster.
        ``progress=True`` draws a progress bar of the items done on stderr.
        """
        if self._stopped:
            raise RuntimeError("this launcher was stopped; create a new one")
        if not self._started:
            await self.start()
        if self._coordinator is not None:
            from .distributed import get_distributed_job_result

            job_id = await self._coordinator.submit(data, func)
            return await get_distributed_job_result(self._coordinator, job_id, progress=progress)
        if progress:
            return await with_item_bar(lambda: self.engine.process(data, func), sized(data),
                                       "process_data")
        return await self.engine.process(data, func)

    async def process_stream(self, source: Any, func: Any, *,
                             max_in_flight: int | None = None) -> AsyncIterator[Any]:
        """Results of ``func`` over a (possibly endless) source, in order, with at most
        ``max_in_flight`` morsels read ahead. Runs on this node in every mode."""
        if self._stopped:
            raise RuntimeError("this launcher was stopped; create a new one")
        if not self._started:
            await self.start()
        inner = self.engine.process_stream(source, func, max_in_flight=max_in_flight)
        try:
            async for item in inner:
                yield item
        finally:
            # Close the engine's stream now (not at garbage collection): queued morsels are
            # dropped as soon as the consumer stops.
            await inner.aclose()  # type: ignore[attr-defined]

    # -- stats -----------------------------------------------------------------------------
    def get_stats(self) -> dict[str, Any]:
        """Everything about this node; the shape is documented in docs/api.md."""
        engine = self.engine.get_stats()
        stats: dict[str, Any] = {
            "version": __version__,
            "node_id": self.node_id,
            "mode": self.mode,
            "mode_reason": self.mode_reason,
            "started": self._started,
            "uptime_s": round(time.time() - self._started_at, 3) if self._started_at else 0.0,
            "http": {
                "serving": self._http is not None,
                "host": self.config.host if self._http is not None else None,
                "port": self._http_port,
            },
            "cython_optimization": engine["cython_optimization"],
            "items_processed": engine["items_processed"],
            "morsels_processed": engine["morsels_processed"],
            "errors": engine["errors"],
            "controller": engine["controller"],
            "system_resources": engine["system_resources"],
            "engine": engine,
            "config": self.config.public_dict(),
        }
        if self._coordinator is not None:
            stats["cluster"] = _call_stats(self._coordinator, "get_cluster_stats")
        if self._worker is not None:
            stats["worker"] = _call_stats(self._worker, "get_stats")
        return stats


def _call_stats(obj: Any, name: str) -> Any:
    fn = getattr(obj, name, None)
    if fn is None:
        return None
    try:
        return fn()
    except Exception as exc:  # stats must not fail because a part does
        return {"error": f"{type(exc).__name__}: {exc}"}


def create_composable_launcher(config: Config | None = None, **overrides: Any
                               ) -> ComposableLauncher:
    """A launcher for this process. ``overrides`` are :class:`~sabot.config.Config` field names
    (``mode="single-node"``, ``max_workers=4``, ``morsel_size_kb=256``...) and win over the
    environment. A wrong value raises :class:`~sabot.errors.ConfigError` here."""
    if config is None:
        config = load_config(**overrides)
    elif overrides:
        config = config.replace(**overrides)
    return ComposableLauncher(config)


async def launch_sabot(config: Config | None = None) -> None:
    """Run a Sabot node as a daemon until SIGTERM or Ctrl-C, then stop cleanly and return.

    Configures logging from LOG_LEVEL, imports SABOT_PROCESSORS modules, starts in the resolved
    mode (serving HTTP) and blocks the calling task until a stop signal arrives.
    """
    if config is None:
        config = load_config()
    configure_logging(config.log_level)
    if config.processors:
        loaded = load_processor_modules(config.processors)
        log.info("loaded processor modules: %s", ", ".join(loaded))
    launcher = ComposableLauncher(config)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    installed: list[int] = []
    if threading.current_thread() is threading.main_thread():
        for sig in (signal.SIGTERM, signal.SIGINT):
            try:
                loop.add_signal_handler(sig, _on_signal, stop, sig)
                installed.append(sig)
            except (NotImplementedError, RuntimeError):  # pragma: no cover - non-Unix loops
                pass
    try:
        # A signal while starting (a worker still looking for its coordinator) stops at once.
        starting = asyncio.ensure_future(launcher.start(serve_http=True))
        stopping = asyncio.ensure_future(stop.wait())
        try:
            await asyncio.wait({starting, stopping}, return_when=asyncio.FIRST_COMPLETED)
            if starting.done():
                starting.result()  # a failed start raises here
                failed = asyncio.ensure_future(launcher.wait_failed())
                try:
                    await asyncio.wait({stopping, failed}, return_when=asyncio.FIRST_COMPLETED)
                    if failed.done():
                        # The node cannot work any more: exit non-zero so a supervisor
                        # (Kubernetes, systemd) restarts it, rather than serve while broken.
                        reason = failed.result()
                        log.critical("Sabot node %s cannot go on (%s); stopping", launcher.node_id,
                                     reason)
                        raise CoordinatorUnavailableError(
                            f"the node stopped because it cannot work: {reason}")
                finally:
                    failed.cancel()
                    await asyncio.gather(failed, return_exceptions=True)
            else:
                starting.cancel()
                await asyncio.gather(starting, return_exceptions=True)
        finally:
            for task in (starting, stopping):
                task.cancel()
            await asyncio.gather(starting, stopping, return_exceptions=True)
    finally:
        for sig in installed:
            loop.remove_signal_handler(sig)
        await launcher.stop()


def _on_signal(stop: asyncio.Event, sig: int) -> None:
    log.info("received %s: stopping", signal.Signals(sig).name)
    stop.set()


# -- synchronous convenience --------------------------------------------------------------
_default_lock = threading.Lock()
_default_engine: LocalEngine | None = None


def _shared_engine() -> LocalEngine:
    global _default_engine
    with _default_lock:
        if _default_engine is None:
            import atexit

            _default_engine = LocalEngine(load_config())
            atexit.register(_default_engine.close_sync)
        return _default_engine


def process(data: Any, func: Any, *, progress: bool = False, **overrides: Any) -> Any:
    """``process_data`` for scripts: blocks until the results are ready (``progress=True``: a
    progress bar on stderr).

    Uses one shared engine per process (its worker pool is reused across calls), or with
    ``overrides`` (Config field names) a dedicated one that is closed afterwards. From inside a
    running event loop (Jupyter), the work runs on a helper thread's loop.
    """
    if overrides:
        engine = LocalEngine(load_config(**overrides))

        async def run_once() -> Any:
            try:
                return await _run(engine, data, func, progress)
            finally:
                await engine.close()

        return run_blocking(run_once, "sabot-process")
    shared = _shared_engine()

    async def run_shared() -> Any:
        return await _run(shared, data, func, progress)

    return run_blocking(run_shared, "sabot-process")


async def _run(engine: LocalEngine, data: Any, func: Any, progress: bool) -> Any:
    if progress:
        return await with_item_bar(lambda: engine.process(data, func), sized(data), "process")
    return await engine.process(data, func)


__all__ = ["ComposableLauncher", "create_composable_launcher", "launch_sabot", "process"]
