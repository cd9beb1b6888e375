"""The README's distributed API (re-exported from ``sabot``).

``coordinator = sabot.create_distributed_coordinator(host, port)`` gives a handle. After
``await coordinator.start()`` this process *is* the coordinator (HTTP on host:port, ZeroMQ on
SABOT_ZMQ_PORT or port+1); without ``start()`` the handle talks to the coordinator already
running at host:port (default COORDINATOR_HOST:COORDINATOR_PORT). Either way::

    job_id = await sabot.submit_distributed_job(coordinator, data, func)
    results = await sabot.get_distributed_job_result(coordinator, job_id, timeout=60)

``func`` is a registered processor's name (no code travels) or any Python callable, lambdas and
functions defined in ``__main__`` included (shipped with cloudpickle to CURVE-authenticated
workers). A function may run more than once for one item (a retry after a worker is lost or a
morsel times out); each result is kept exactly once.

A remote handle's calls ride over a coordinator restart: a request that gets no answer is sent
again (after a new hello) until its timeout runs out, and only that timeout bounds the wait
(``get_distributed_job_result``'s ``timeout``; 30 s by default for the other calls).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
import uuid
from collections.abc import AsyncIterator
from typing import Any

from .cluster.client import ClusterClient, iter_result_batches
from .cluster.protocol import messages as m
from .cluster.protocol import payload, reply_or_raise
from .cluster.result_files import ResultFileError
from .cluster.spool import SPOOL, Spool
from .cluster.spool_client import SpoolTransferError
from .config import Config, load_config
from .errors import CancelledError, JobFailedError, JobTimeoutError
from .job_ids import job_id_problem
from .node.coordinator_node import CoordinatorNode
from .node.worker_node import ServedWorker

log = logging.getLogger("sabot.distributed")
from .progress_bar import item_bar
from .states import FINISHED_JOB_STATES, JobState

#: Inputs up to this many items are cut into morsels on the event loop (a thread hop costs
#: more than the work).
_INLINE_SPLIT_ITEMS = 50_000


#: How long the early result request of a small job waits for it to finish.
_PREFETCH_WAIT_MS = 5000
#: Early result requests kept for jobs whose result() has not been asked for yet.
_PREFETCH_KEEP = 256
#: Jobs with at least this much input and more than one morsel have their results fetched as
#: morsels finish, so decoding them overlaps with the workers' work instead of following it.
_STREAM_BYTES = 1 << 20
#: How long a call other than result() keeps trying by default (a coordinator restart).
REQUEST_TIMEOUT_S = 30.0


def _left(deadline: float | None) -> float | None:
    return None if deadline is None else max(0.0, deadline - time.monotonic())


def _consume(task: asyncio.Future[Any]) -> None:
    # An early result request nobody awaits must not log "exception never retrieved".
    if not task.cancelled():
        task.exception()


def _function_payload(func: Any) -> tuple[str, bytes | None]:
    if isinstance(func, str):
        return func, None
    if not callable(func) and type(func).__module__ != "pyarrow._compute":
        raise TypeError(
            f"func must be a registered processor name or a callable (incl. sabot.batch(...) "
            f"and pyarrow.compute expressions), got {type(func).__name__}")
    import cloudpickle

    name = getattr(func, "__qualname__", None) or getattr(func, "__name__", None) or \
        type(func).__name__
    try:
        return str(name)[:200], cloudpickle.dumps(func)
    except Exception as exc:
        raise TypeError(f"func {name!r} cannot be pickled for the workers: "
                        f"{type(exc).__name__}: {exc}") from exc


def _split_and_digest(data: Any, morsel_bytes: int, morsel_items: int | None, name: str,
                      pickled: bytes | None, priority: int, spool: tuple[Spool, str, bool] | None
                      ) -> tuple[str, list[Any], str, int]:
    """(result kind, morsels to submit, their digest, bytes of data); with ``spool`` (the
    spool this client shares, the job id, whether to fsync) big morsels go to their files
    (a numpy morsel straight from the array's memory)."""
    # (a big input in at most ~MAX_JOB_MORSELS morsels: each costs a hand-out and files)
    most = payload.MAX_JOB_MORSELS
    if spool is not None:
        kind, parts = payload.split_parts(data, morsel_bytes, morsel_items, max_morsels=most)
        nbytes = sum(payload.parts_size(part[2]) for part in parts)
        where, job_id, sync = spool
        try:
            morsels = where.put_inputs(job_id, parts, sync=sync)
        except SpoolTransferError as exc:
            # (the data port stopped answering: the bytes go in the submit, as without it)
            log.warning("job %s: the input could not be put through the data port (%s); it "
                        "goes over the ZeroMQ port", job_id, exc)
            morsels = [[enc, items, payload.joined(data if isinstance(data, (list, tuple))
                                                   else [data])]
                       for enc, items, data in parts]
    else:
        kind, morsels = payload.split(data, morsel_bytes, morsel_items, max_morsels=most)
        nbytes = sum(len(part[2]) for part in morsels)
    return kind, morsels, payload.submit_digest(name, pickled, kind, morsels, priority), nbytes


class DistributedCoordinator:
    """A coordinator handle: local after :meth:`start`, remote otherwise."""

    def __init__(self, host: str | None = None, port: int | None = None, *,
                 config: Config | None = None) -> None:
        self.config = config if config is not None else load_config()
        self._host = host
        self._port = port
        self._local: CoordinatorNode | None = None
        self._client: ClusterClient | None = None
        self._prefetched: dict[str, asyncio.Future[m.Message]] = {}
        self._big: dict[str, None] = {}  # recent jobs of this handle worth streaming

    # -- lifecycle ----------------------------------------------------------------------------
    async def start(self) -> DistributedCoordinator:
        """Become the coordinator: serve HTTP on host:port (default SABOT_HOST:SABOT_PORT) and
        ZeroMQ on SABOT_ZMQ_PORT (default port + 1). Returns once serving."""
        if self._local is not None:
            return self
        changes: dict[str, Any] = {}
        if self._host is not None:
            changes["host"] = self._host
        if self._port is not None:
            changes["port"] = self._port
        config = self.config.replace(**changes) if changes else self.config
        coordinator = CoordinatorNode(config)
        await coordinator.start()
        self._local = coordinator
        self.config = config
        return self

    async def stop(self) -> None:
        """Stop serving (a started coordinator) or close the connection (a remote handle)."""
        pending = list(self._prefetched.values())
        self._prefetched.clear()
        for task in pending:
            task.cancel()
        if pending:
            await asyncio.gather(*pending, return_exceptions=True)
        if self._local is not None:
            await self._local.stop()
            self._local = None
        if self._client is not None:
            await self._client.close()
            self._client = None

    async def __aenter__(self) -> DistributedCoordinator:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    @property
    def is_local(self) -> bool:
        return self._local is not None

    async def wait_failed(self) -> str:
        """Returns (with the reason) once this started coordinator's core has failed."""
        if self._local is None:
            raise RuntimeError("wait_failed() needs a started coordinator")
        return await self._local.coordinator.wait_failed()

    @property
    def node_id(self) -> str | None:
        """This coordinator's node name (SABOT_NODE_NAME, or one made from the host name) once
        started; None for a remote handle."""
        return self._local.node_id if self._local is not None else None

    @property
    def address(self) -> tuple[str, int]:
        """(host, HTTP port) of the coordinator this handle talks to."""
        if self._local is not None:
            host = self.config.host
            return ("127.0.0.1" if host in ("0.0.0.0", "::", "") else host,
                    int(self._local.http_port or 0))
        host = self._host if self._host is not None else self.config.coordinator_host
        port = self._port if self._port is not None else self.config.coordinator_port
        return ("127.0.0.1" if host in ("0.0.0.0", "::", "") else host, int(port))

    @property
    def http_port(self) -> int | None:
        return self._local.http_port if self._local is not None else self.address[1]

    @property
    def zmq_port(self) -> int | None:
        return self._local.zmq_port if self._local is not None else None

    async def _request(self, make: Any, timeout: float | None = REQUEST_TIMEOUT_S
                       ) -> m.Message:
        if self._local is not None:
            return await self._local.coordinator.request(make(0))
        if self._client is None:
            host, port = self.address
            self._client = ClusterClient(self.config, host, port)
        return reply_or_raise(await self._client.request(make, timeout=timeout))

    # -- jobs ---------------------------------------------------------------------------------
    async def submit(self, data: Any, func: Any, *, priority: int = 0,
                     morsel_items: int | None = None,
                     timeout: float | None = REQUEST_TIMEOUT_S,
                     job_id: str | None = None) -> str:
        """Submit a job; returns its id once the coordinator has journaled it.
        ``morsel_items`` fixes the items per morsel (default: MORSEL_SIZE_KB of data);
        ``timeout`` bounds the tries (the submit is sent again across a coordinator restart;
        it carries its job id, so it never makes a second job). ``job_id``: your own id (an
        idempotency key: 1-128 letters, digits, ``. _ : -``): submitting the same job under it
        again returns that job and never runs it twice, also after a coordinator restart;
        another job under it raises JobIdConflictError. Default: a new random id."""
        if not isinstance(priority, int) or isinstance(priority, bool):
            raise TypeError(f"priority must be an int, got {type(priority).__name__}")
        if job_id is not None:
            problem = job_id_problem(job_id)
            if problem is not None:
                raise ValueError(f"job_id: {problem}")
        if morsel_items is not None and (not isinstance(morsel_items, int) or morsel_items < 1):
            raise ValueError(f"morsel_items must be a positive int, got {morsel_items!r}")
        name, pickled = _function_payload(func)
        size = self.config.morsel_size_bytes
        n = len(data) if hasattr(data, "__len__") else None
        if job_id is None:
            job_id = uuid.uuid4().hex
        # Big morsels on the coordinator's host go to the spool, not over the socket.
        spool = await self._shared_spool(timeout)
        where = None if spool is None else (spool[0], job_id, spool[1])
        if n is not None and n <= _INLINE_SPLIT_ITEMS:
            kind, morsels, digest, nbytes = _split_and_digest(
                data, size, morsel_items, name, pickled, priority, where)
        else:
            kind, morsels, digest, nbytes = await asyncio.to_thread(
                _split_and_digest, data, size, morsel_items, name, pickled, priority, where)
        # The same message (the same id and digest) goes out on every try: a resend after a
        # lost answer or a coordinator restart is answered with the job the first one made.
        submit = asyncio.ensure_future(self._request(
            lambda rid: m.SubmitJob(rid, job_id, name, pickled, kind, morsels, priority,
                                    digest),
            timeout))
        prefetch = None
        if len(morsels) <= 1:
            # A small job is likely done before its submitter even asks: the request for its
            # result goes out right behind the submit (same connection, so in order), which
            # saves a round trip in result().
            prefetch = asyncio.ensure_future(self._request(
                lambda rid: m.FetchResults(rid, job_id, 0, 16 << 20, _PREFETCH_WAIT_MS, True),
                _PREFETCH_WAIT_MS / 1000 + 5))
            prefetch.add_done_callback(_consume)
        try:
            reply = await submit
        except BaseException:
            if prefetch is not None:
                prefetch.cancel()
            raise
        assert isinstance(reply, m.SubmitAck)
        if prefetch is not None:
            self._prefetched[job_id] = prefetch
            while len(self._prefetched) > _PREFETCH_KEEP:
                self._prefetched.pop(next(iter(self._prefetched))).cancel()
        elif nbytes >= _STREAM_BYTES:
            self._big[job_id] = None
            while len(self._big) > _PREFETCH_KEEP:
                self._big.pop(next(iter(self._big)))
        return reply.job_id

    async def _shared_spool(self, timeout: float | None) -> tuple[Spool, bool] | None:
        """The coordinator's spool and whether its files are fsynced, when this (remote)
        handle shares it: a session is opened for that first (None when it cannot be now:
        the submit then goes inline)."""
        if self._local is not None or not self.config.spool:
            return None
        if self._client is None:
            host, port = self.address
            self._client = ClusterClient(self.config, host, port)
        client = self._client
        try:
            await client.connect(2.0 if timeout is None else min(timeout, 2.0))
        except Exception:  # noqa: BLE001 - the submit's own tries report what is wrong
            return None
        return None if client.spool is None else (client.spool, client.spool_sync)

    def _spool_reader(self) -> Spool | None:
        """The spool results can be read from (a remote handle sharing it)."""
        client = self._client
        return client.spool if self._local is None and client is not None else None

    async def _decoded(self, job_id: str, idx: int, enc: str, blob: bytes,
                       timeout: float | None) -> Any:
        """Result ``idx`` of a batch as a value: a spool reference is read from its file (or,
        when that cannot be read, fetched again as bytes)."""
        if enc == SPOOL:
            spool = self._spool_reader()
            try:
                if spool is None:
                    raise ResultFileError("this client does not share the spool")
                # (read here: a result file is in the page cache, fresh from its worker; a
                # thread per file only made the loop wait for the GIL)
                if spool.remote:
                    enc, blob = await asyncio.to_thread(spool.take_result, job_id, idx, blob)
                else:
                    enc, blob = spool.take_result(job_id, idx, blob)
            except ResultFileError as exc:
                log.info("result %d of job %s: %s; fetching its bytes", idx, job_id, exc)
                reply = await self._request(
                    lambda rid: m.FetchResults(rid, job_id, idx, 1, 0, False, False), timeout)
                assert isinstance(reply, m.ResultBatch)
                if not reply.morsels:
                    raise JobFailedError(job_id, f"result {idx} is gone ({exc})") from None
                enc, _, blob = reply.morsels[0]
        return payload.decode_value(enc, blob)

    async def status(self, job_id: str, *, timeout: float | None = REQUEST_TIMEOUT_S
                     ) -> dict[str, Any]:
        """The job's state: ``status`` (pending, running, completed, failed, cancelled),
        ``progress`` ({done, total, fraction, morsels_done, morsels_total}), ``error``, times;
        while it runs, ``node_losses`` and (no worker connected) ``waiting_for``."""
        reply = await self._request(lambda rid: m.GetStatus(rid, job_id), timeout)
        assert isinstance(reply, m.JobStatus)
        return dict(reply.job)

    async def cancel(self, job_id: str, *, timeout: float | None = REQUEST_TIMEOUT_S
                     ) -> dict[str, Any]:
        """Cancel a pending or running job (no effect on a finished one); returns its state."""
        reply = await self._request(lambda rid: m.CancelJob(rid, job_id), timeout)
        assert isinstance(reply, m.JobStatus)
        return dict(reply.job)

    async def _batches(self, job_id: str, timeout: float | None, until_done: bool = False,
                       deadline: float | None = None) -> AsyncIterator[m.ResultBatch]:
        """The job's result batches until its last; ``deadline`` (monotonic) ends the wait,
        ``timeout`` is what the caller gave (for the error)."""
        if deadline is None and timeout is not None:
            deadline = time.monotonic() + timeout
        try:
            async for batch in iter_result_batches(
                    lambda make, t: self._request(make, t), job_id, timeout=_left(deadline),
                    until_done=until_done, files=self._spool_reader() is not None):
                if batch.status == JobState.FAILED:
                    raise JobFailedError(job_id, batch.error or "unknown error")
                if batch.status == JobState.CANCELLED:
                    raise CancelledError(f"job {job_id} was cancelled")
                yield batch
        except TimeoutError as exc:
            if isinstance(exc, JobTimeoutError):
                raise
            raise JobTimeoutError(await self._timeout_text(job_id, timeout)) from None

    async def _timeout_text(self, job_id: str, timeout: float | None) -> str:
        """What a timed-out wait says: that the job keeps running, and why it has not
        finished when the coordinator knows (no worker connected)."""
        text = (f"job {job_id} did not finish within {timeout:g} s (it keeps running; ask "
                "again, or cancel it)")
        try:
            status = await asyncio.wait_for(self.status(job_id), 2)
        except Exception:  # noqa: BLE001 - the timeout is what the caller asked about
            return text
        if status.get("waiting_for"):
            text += f": {status['waiting_for']} (start one with `sabot-node worker`)"
        return text

    async def result(self, job_id: str, timeout: float | None = None) -> Any:
        """The job's results in input order (a list for list-like input, numpy for numpy,
        Arrow for Arrow). Raises JobFailedError, CancelledError or JobTimeoutError (after
        ``timeout`` seconds; its message says why the job is waiting, e.g. that no worker is
        connected). Requests lost to a coordinator restart are sent again until then."""
        deadline = None if timeout is None else time.monotonic() + timeout
        prefetch = self._prefetched.pop(job_id, None)
        if prefetch is not None:
            try:
                first = await asyncio.wait_for(prefetch, _left(deadline))
            except TimeoutError:
                raise JobTimeoutError(await self._timeout_text(job_id, timeout)) from None
            except Exception:  # noqa: BLE001 - the ordinary path below reports real errors
                first = None
            if isinstance(first, m.ResultBatch):
                if first.status == JobState.FAILED:
                    raise JobFailedError(job_id, first.error or "unknown error")
                if first.status == JobState.CANCELLED:
                    raise CancelledError(f"job {job_id} was cancelled")
                if first.status == JobState.COMPLETED and \
                        len(first.morsels) == first.total_morsels:
                    return payload.join(first.result_kind, [
                        payload.decode_value(enc, blob) for enc, _, blob in first.morsels])
                if deadline is not None and deadline <= time.monotonic():
                    raise JobTimeoutError(await self._timeout_text(job_id, timeout))
        kind = "list"
        parts: list[Any] = []
        stream = self._big.pop(job_id, False) is None
        async for batch in self._batches(job_id, timeout, until_done=not stream,
                                         deadline=deadline):
            kind = batch.result_kind
            for i, (enc, _, blob) in enumerate(batch.morsels):
                parts.append(await self._decoded(job_id, batch.start + i, enc, blob,
                                                 _left(deadline)))
        return payload.join(kind, parts)

    async def stream_result(self, job_id: str, timeout: float | None = None
                            ) -> AsyncIterator[Any]:
        """Yield the job's results item by item, in order, as morsels finish, without holding
        the whole result."""
        async for batch in self._batches(job_id, timeout):
            for i, (enc, _, blob) in enumerate(batch.morsels):
                value = await self._decoded(job_id, batch.start + i, enc, blob, timeout)
                for item in payload.iter_items(batch.result_kind, [value]):
                    yield item

    # -- cluster ------------------------------------------------------------------------------
    async def cluster_stats(self, *, timeout: float | None = REQUEST_TIMEOUT_S
                            ) -> dict[str, Any]:
        """``nodes`` (list of node dicts), ``jobs`` ({active, by_state, recent}),
        ``queue_depth``, ``slots``, ``counters``, ``system_resources`` (docs/cluster.md)."""
        reply = await self._request(lambda rid: m.GetStats(rid), timeout)
        assert isinstance(reply, m.Stats)
        return dict(reply.stats)

    def get_cluster_stats(self) -> dict[str, Any]:
        """:meth:`cluster_stats`, synchronously (as in the README)."""
        if self._local is not None:
            return self._local.coordinator.query(lambda core: core.stats())
        if self._client is None:
            host, port = self.address
            self._client = ClusterClient(self.config, host, port)
        return self._client.stats_sync()


class WorkerNode:
    """A worker handle: ``await start()`` joins the coordinator at host:port."""

    def __init__(self, host: str | None = None, port: int | None = None, *,
                 config: Config | None = None, slots: int | None = None) -> None:
        config = config if config is not None else load_config()
        changes: dict[str, Any] = {}
        if host is not None:
            changes["coordinator_host"] = host
        if port is not None:
            changes["coordinator_port"] = port
        self.config = config.replace(**changes) if changes else config
        self._slots = slots
        self.worker: ServedWorker | None = None

    async def start(self) -> WorkerNode:
        if self.worker is None:
            worker = ServedWorker(self.config, slots=self._slots)
            await worker.start()
            self.worker = worker
        return self

    async def stop(self, *, drain: bool = True) -> None:
        if self.worker is not None:
            await self.worker.stop(drain=drain)
            self.worker = None

    async def wait_closed(self) -> None:
        if self.worker is not None:
            await self.worker.wait_closed()

    @property
    def node_id(self) -> str | None:
        return self.worker.node_id if self.worker is not None else None

    @property
    def registered(self) -> bool:
        """Whether the worker is registered with its coordinator now."""
        return self.worker is not None and self.worker.registered

    @property
    def http_port(self) -> int | None:
        return self.worker.http_port if self.worker is not None else None

    def get_stats(self) -> dict[str, Any]:
        return self.worker.info() if self.worker is not None else {"state": "stopped"}

    async def __aenter__(self) -> WorkerNode:
        return await self.start()

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()


def create_distributed_coordinator(host: str | None = None, port: int | None = None, *,
                                   config: Config | None = None) -> DistributedCoordinator:
    """A coordinator handle (see the module docstring)."""
    return DistributedCoordinator(host, port, config=config)


def create_worker_node(host: str | None = None, port: int | None = None, *,
                       config: Config | None = None) -> WorkerNode:
    """A worker that joins the coordinator at host:port (default
    COORDINATOR_HOST:COORDINATOR_PORT) once started."""
    return WorkerNode(host, port, config=config)


async def submit_distributed_job(coordinator: DistributedCoordinator, data: Any, func: Any,
                                 priority: int = 0, *, job_id: str | None = None) -> str:
    """Submit a job; returns its id once the coordinator has journaled it. ``job_id``: your
    own id, an idempotency key (see :meth:`DistributedCoordinator.submit`)."""
    return await coordinator.submit(data, func, priority=priority, job_id=job_id)


async def get_distributed_job_result(coordinator: DistributedCoordinator, job_id: str,
                                     timeout: float | None = None, *,
                                     cancel_on_interrupt: bool = False,
                                     progress: bool = False) -> Any:
    """The job's result once it completes (raises JobFailedError, CancelledError or
    JobTimeoutError otherwise).

    An interrupted wait (Ctrl-C, or the calling task cancelled) leaves an acknowledged job
    running on the cluster by default: it is durable, and its result can be fetched later by
    its id. With ``cancel_on_interrupt=True`` the job is cancelled too (what ``sabot-node
    submit`` does on Ctrl-C). Either way a warning says which happened.

    ``progress=True`` draws a progress bar (tqdm, on stderr) of the job's items done, from its
    status, while waiting."""
    finished = asyncio.Event()
    bar = asyncio.get_running_loop().create_task(
        _progress_bar(coordinator, job_id, finished)) if progress else None
    try:
        result = await coordinator.result(job_id, timeout=timeout)
        if bar is not None:  # the bar's last state: every item done
            finished.set()
            await asyncio.wait([bar], timeout=5)
        return result
    except (asyncio.CancelledError, KeyboardInterrupt):
        if not cancel_on_interrupt:
            log.warning("interrupted while waiting for job %s: it keeps running on the cluster; "
                        "fetch its result later with get_distributed_job_result(coordinator, "
                        "%r), cancel it with cancel_distributed_job, or pass "
                        "cancel_on_interrupt=True to cancel on interrupt", job_id, job_id)
            raise
        try:
            await asyncio.wait_for(coordinator.cancel(job_id), 10)
        except Exception as exc:  # the interrupt is what the caller sees; say what failed
            log.warning("interrupted while waiting for job %s; cancelling it failed (%s): it "
                        "may still run; cancel it with cancel_distributed_job", job_id, exc)
        else:
            log.warning("interrupted while waiting for job %s: job cancelled "
                        "(cancel_on_interrupt=True)", job_id)
        raise
    finally:
        if bar is not None:
            bar.cancel()
            await asyncio.gather(bar, return_exceptions=True)


async def _progress_bar(coordinator: DistributedCoordinator, job_id: str,
                        finished: asyncio.Event, interval_s: float = 0.5) -> None:
    """A tqdm bar of the job's items done, polled from its status until the job finishes (one
    last poll once ``finished`` is set) or the task is cancelled; the bar stays on screen."""
    bar = None
    try:
        while True:
            status = await coordinator.status(job_id)
            done_items = int(status.get("progress", {}).get("done") or 0)
            total = int(status.get("progress", {}).get("total") or 0)
            if bar is None:
                bar = item_bar(total, f"job {job_id[:8]}")
            bar.update(max(0, done_items - bar.n))
            bar.set_postfix_str(str(status.get("status", "")), refresh=True)
            if status.get("status") in FINISHED_JOB_STATES or finished.is_set():
                return
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(finished.wait(), interval_s)
    finally:
        if bar is not None:
            bar.close()


async def get_distributed_job_status(coordinator: DistributedCoordinator, job_id: str
                                     ) -> dict[str, Any]:
    return await coordinator.status(job_id)


async def cancel_distributed_job(coordinator: DistributedCoordinator, job_id: str
                                 ) -> dict[str, Any]:
    return await coordinator.cancel(job_id)


def stream_distributed_job_result(coordinator: DistributedCoordinator, job_id: str,
                                  timeout: float | None = None) -> AsyncIterator[Any]:
    return coordinator.stream_result(job_id, timeout=timeout)


__all__ = [
    "DistributedCoordinator",
    "WorkerNode",
    "cancel_distributed_job",
    "create_distributed_coordinator",
    "create_worker_node",
    "get_distributed_job_result",
    "get_distributed_job_status",
    "stream_distributed_job_result",
    "submit_distributed_job",
]
