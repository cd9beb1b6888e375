"""Where each morsel a worker receives runs, and the one path by which every morsel ends.

The engine's placement rule (:func:`sabot.engine.placement.place_morsel`) decides: a tiny
morsel of a built-in processor runs right on the event loop; other morsels of a cheap built-in
run on a helper thread in one hop (decode, apply, encode), sampled first when the processor's
cost is unknown; morsels of user functions go to the lanes (coalesced calls of the isolated
engine, whose pool processes are the only place user code runs); everything else is a call of
its own to the engine. However it ran, a morsel ends in :meth:`MorselRouter.morsel_done` or
:meth:`MorselRouter.morsel_failed`.
"""

from __future__ import annotations

import asyncio
import operator
import time
import traceback
from concurrent.futures import ThreadPoolExecutor
from contextlib import AbstractContextManager
from dataclasses import dataclass, field, replace
from typing import Any, Protocol

from ..engine.functions import BATCH, ITEM, resolve_function
from ..engine.placement import (
    LOOP_MAX_BYTES,
    SAMPLE_ITEMS,
    SAMPLE_S,
    Placement,
    place_morsel,
    sampled_costly,
)
from ..errors import ProcessingError, ProtocolError
from ..metrics import Metrics
from .protocol import messages as m
from .protocol import payload
from .remote_spool import StagedSpool
from .result_files import ResultFileError
from .spool import SPOOL, Spool, parse_ref
from .spool_task import ResultWriter, task_payload
from .worker_functions import FunctionCache, JobFunction
from .worker_lanes import Lanes, SpooledTask

#: Results of more items than this are encoded off the event loop (heartbeats keep going).
ENCODE_THREAD_ITEMS = 20_000

# (as module constants: an Enum class attribute costs ~0.1 µs to look up, per morsel here)
_LOOP, _POOL, _POOL_ENCODED, _ENGINE = (Placement.LOOP, Placement.POOL, Placement.POOL_ENCODED,
                                        Placement.ENGINE)


class Poster(Protocol):
    """How the router's results reach the coordinator (the worker's link)."""

    def post(self, msg: m.Message) -> None: ...

    def held_posts(self) -> AbstractContextManager[None]: ...


class MorselRouter:
    """Runs the morsels of one worker. ``on_cost(seconds)`` hears each finished morsel's cost
    (the worker's credits follow it); ``threads``: helper threads for cheap built-ins (one per
    slot: no morsel ever waits behind another one)."""

    def __init__(self, *, node_id: str, metrics: Metrics, poster: Poster,
                 on_cost: Any, threads: int) -> None:
        #: The worker's LocalEngine (isolated), set when the worker starts.
        self.engine: Any = None
        #: Morsels in flight: (job id, morsel) -> their task, or their future in the lanes.
        self.running: dict[tuple[str, int], asyncio.Future[None]] = {}
        self.items_done = 0
        self.morsels_done = 0
        self.morsels_failed = 0
        self.metrics = metrics
        self.functions = FunctionCache(node_id, self._loaded)
        self.lanes = Lanes(self)
        self._poster = poster
        self._on_cost = on_cost
        self._threads_n = threads
        self._threads: ThreadPoolExecutor | None = None
        #: The coordinator's spool, when this worker shares it (set at each welcome), and
        #: whether files written there are fsynced (the welcome said so).
        self.spool: Spool | None = None
        self.spool_sync = False
        #: Morsels whose input a :class:`StagedSpool` got here: their references, so that the
        #: local copy goes when the morsel ends.
        self._staged: dict[tuple[str, int], bytes] = {}

    # -- routing -------------------------------------------------------------------------
    def assign(self, msg: m.Assign) -> None:
        """Start ``msg`` where it runs (an earlier copy of the same morsel is cancelled)."""
        key = (msg.job_id, msg.morsel)
        old = self.running.pop(key, None)
        if old is not None:
            old.cancel()
        t0 = time.perf_counter()
        try:
            fn = self.functions.lookup(msg)
            func = fn.function()
            spec = resolve_function(func)
            trusted = spec.processor is not None and \
                getattr(spec.func, "__module__", "") == "sabot.processors"
            if msg.encoding == SPOOL:
                spool = self.spool
                if isinstance(spool, StagedSpool) and key not in self._staged:
                    # (another host: its input file is got first, then it runs from there)
                    self.running[key] = asyncio.ensure_future(self._stage(spool, msg))
                    return
                task = None if msg.count else self._pool_reads(msg, spec.kind, trusted)
                if task is not None:
                    # A user function's whole morsel: its pool process reads the file.
                    self.running[key] = self.lanes.submit(msg, func, fn.key, encoded=True,
                                                          spooled=task)
                    return
                msg = self._unspooled(msg)
            if msg.count:
                # A piece of a costly morsel: it runs as a morsel of those items alone.
                encoding, data = payload.slice_morsel(msg.encoding, msg.data, msg.start,
                                                      msg.count)
                msg = replace(msg, offset=msg.offset + msg.start, encoding=encoding,
                                          data=data, start=0, count=0)
            nbytes = len(msg.data)
            items = payload.count_items(msg.encoding, msg.data) if (
                trusted and msg.encoding == "msgpack" and nbytes <= LOOP_MAX_BYTES) else None
            where = place_morsel(per_item=spec.kind == ITEM, trusted=trusted,
                                 encoding=msg.encoding, nbytes=nbytes, items=items,
                                 per_item_s=fn.cost)
            if where is not _LOOP:
                if where is _POOL or where is _POOL_ENCODED:
                    run: asyncio.Future[None] = self.lanes.submit(
                        msg, func, fn.key, encoded=where is _POOL_ENCODED)
                else:
                    run = asyncio.ensure_future(self._run_task(msg, where, fn, func, spec.func))
                self.running[key] = run
                return
            data = payload.decode_value(msg.encoding, msg.data)
            encoding, blob = payload.encode_items(_apply(spec.func, data))
        except Exception as exc:
            self.morsel_failed(msg, exc, t0)
            return
        self.morsel_done(msg, len(data), encoding, blob, time.perf_counter() - t0)

    def _pool_reads(self, msg: m.Assign, kind: str, trusted: bool) -> SpooledTask | None:
        """The pool task for a spooled morsel that a pool process reads and writes itself
        (:mod:`sabot.cluster.spool_task`): a whole morsel of a user per-item function, which
        would go to the pool still encoded anyway, or of a user batch function (numpy and
        Arrow morsels read in place there); None for any other (its bytes are read here). A
        file that is not there, or not that big, fails the morsel now."""
        spool = self.spool
        if spool is None or trusted or kind not in (ITEM, BATCH):
            return None
        enc, size, crc = parse_ref(msg.data)
        if kind == ITEM and place_morsel(per_item=True, trusted=False, encoding=enc,
                                         nbytes=size, items=None,
                                         per_item_s=None) is not _POOL_ENCODED:
            return None
        path = spool.input_path(msg.job_id, msg.morsel, crc)
        problem = spool.check(path, size)
        if problem is not None:
            raise ProtocolError(f"spool file {problem}")
        writer = ResultWriter(str(spool.output_path(msg.job_id, msg.morsel, msg.attempt)),
                              self.spool_sync, spool.min_bytes)
        # (its item count is for the engine's statistics only: estimated from its size)
        return SpooledTask(task_payload(path, enc, size, crc), max(1, size // 8), writer)

    def _unspooled(self, msg: m.Assign) -> m.Assign:
        """``msg`` with the bytes of its spool file in place of the reference."""
        spool = self.spool
        if spool is None:
            raise ProtocolError(f"morsel {msg.morsel} of job {msg.job_id} came as a spool "
                                "reference, but this worker does not share the spool")
        enc, size, crc = parse_ref(msg.data)
        try:
            data = spool.read(spool.input_path(msg.job_id, msg.morsel, crc), size, crc)
        except ResultFileError as exc:
            raise ProtocolError(str(exc)) from None
        return replace(msg, encoding=enc, data=data)

    async def _stage(self, spool: StagedSpool, msg: m.Assign) -> None:
        """Get a morsel's input file through the data port, then start it from there."""
        key = (msg.job_id, msg.morsel)
        t0 = time.perf_counter()
        me = asyncio.current_task()
        try:
            await asyncio.to_thread(spool.fetch_input, msg.job_id, msg.morsel, msg.data)
        except (OSError, ProtocolError) as exc:
            if self.running.get(key) is me:
                del self.running[key]
                self.morsel_failed(msg, exc, t0)
            return
        if self.running.get(key) is not me:  # (cancelled or replaced meanwhile)
            spool.discard_input(msg.job_id, msg.morsel, msg.data)
            return
        del self.running[key]
        self._staged[key] = msg.data
        self.assign(msg)

    def _unstage(self, key: tuple[str, int]) -> None:
        """The local copy of a morsel's input goes (the morsel ended here)."""
        ref = self._staged.pop(key, None)
        spool = self.spool
        if ref is not None and isinstance(spool, StagedSpool):
            spool.discard_input(key[0], key[1], ref)

    def cancel(self, job_id: str, morsel: int) -> bool:
        """Cancel a running morsel; False when it is not running here."""
        run = self.running.pop((job_id, morsel), None)
        self._unstage((job_id, morsel))
        if run is None:
            return False
        run.cancel()
        return True

    def start_queued(self) -> None:
        """Start the engine calls of the morsels queued since the last turn of the loop."""
        self.lanes.start_queued()

    def close(self) -> None:
        if self._threads is not None:
            self._threads.shutdown(wait=True)
            self._threads = None

    # -- the one way a morsel ends -------------------------------------------------------
    def morsel_done(self, msg: m.Assign, items: int, encoding: str, blob: bytes,
                    elapsed: float, cost: float | None = None) -> None:
        """Post a morsel's result; ``cost``: its share of the work when it ran with others."""
        if self._staged:
            self._unstage((msg.job_id, msg.morsel))
        self.items_done += items
        self.morsels_done += 1
        self.metrics.record_items(items)
        self.metrics.record_morsel(elapsed)
        # (the coordinator sizes pieces of costly morsels by it: a morsel's share of a call
        # that ran several is what it cost)
        share = elapsed if cost is None else cost
        self._poster.post(m.MorselResult(msg.job_id, msg.morsel, msg.attempt, items, encoding,
                                         blob, share))
        self._on_cost(share)

    def morsel_failed(self, msg: m.Assign, exc: BaseException, t0: float) -> None:
        """Post a morsel's failure (it started at ``t0``)."""
        if self._staged:
            self._unstage((msg.job_id, msg.morsel))
        self.morsels_failed += 1
        self.metrics.record_morsel(time.perf_counter() - t0, "failed")
        self._poster.post(_failure(msg, exc))

    def held_posts(self) -> AbstractContextManager[None]:
        return self._poster.held_posts()

    def forget(self, key: tuple[str, int], fut: asyncio.Future[None]) -> None:
        """A morsel's run settled: it leaves the running table (unless replaced meanwhile)."""
        if self.running.get(key) is fut:
            del self.running[key]

    # -- run paths -----------------------------------------------------------------------
    async def _run_task(self, msg: m.Assign, where: Placement, fn: JobFunction, func: Any,
                        call: Any) -> None:
        """A morsel that runs as a task of its own: ``THREAD``: decode, apply ``call`` and
        encode in one hop to a helper thread; when the function's cost is unknown its first
        items are timed, and if they are costly the rest of the morsel goes to the engine (the
        sampled results are kept). ``ENGINE``: a call of its own to the engine."""
        key = (msg.job_id, msg.morsel)
        t0 = time.perf_counter()
        try:
            if where is _ENGINE:
                data = payload.decode_value(msg.encoding, msg.data)
                items = int(getattr(data, "num_rows", None) or len(data))
                encoding, blob = await _encode(await self.engine.process(data, func))
            else:
                if self._threads is None:
                    # A thread per slot: no morsel ever waits behind another one (a hung item
                    # holds only its own morsel, which the coordinator times out and retries).
                    self._threads = ThreadPoolExecutor(self._threads_n,
                                                       thread_name_prefix="sabot-direct")
                done = await asyncio.get_running_loop().run_in_executor(
                    self._threads, _thread_morsel, call, msg.encoding, msg.data,
                    fn.cost is None)
                fn.add_samples(done.times)
                encoding, blob, items = done.encoding, done.blob, done.items
                if done.rest is not None:
                    try:
                        out = await self.engine.process(done.rest, func)
                    except ProcessingError as exc:
                        if exc.index is not None:
                            exc.index += len(done.head)
                        raise
                    encoding, blob = await _encode(done.head + list(out))
                    items = len(done.head) + len(done.rest)
            self.morsel_done(msg, items, encoding, blob, time.perf_counter() - t0)
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            self.morsel_failed(msg, exc, t0)
        finally:
            self.forget(key, asyncio.current_task())  # type: ignore[arg-type]

    def _loaded(self, func: Any, pickled: bytes) -> None:
        # The pool gets the bytes the function came in, as they are (no pickling per call).
        if self.engine is not None:
            self.engine.use_pickle(func, pickled)


def _failure(msg: m.Assign, exc: BaseException) -> m.MorselFailed:
    if isinstance(exc, ProcessingError):
        orig = exc.original
        name = type(orig).__name__ if orig is not None else type(exc).__name__
        text = str(orig) if orig is not None else str(exc.args[0] if exc.args else exc)
        tb = exc.remote_traceback or ""
        index = exc.index
    else:
        name, text, index = type(exc).__name__, str(exc), None
        tb = "".join(traceback.format_exception(type(exc), exc, exc.__traceback__))
    # User text may hold what UTF-8 cannot carry (lone surrogates): escaped, not lost.
    return m.MorselFailed(msg.job_id, msg.morsel, msg.attempt, _utf8(name), _utf8(text),
                          _utf8(tb), index)


def _utf8(text: str) -> str:
    try:
        text.encode("utf-8")
        return text
    except UnicodeEncodeError:
        return text.encode("utf-8", "backslashreplace").decode("utf-8")


@dataclass(slots=True)
class _ThreadRun:
    """What the helper thread made of a morsel: its encoded result, or (``rest`` set) the
    results of the sampled head and the items left for the engine."""

    encoding: str = ""
    blob: bytes = b""
    items: int = 0
    times: list[float] = field(default_factory=list)  # sampled seconds per item
    head: list[Any] = field(default_factory=list)
    rest: list[Any] | None = None


def _thread_morsel(func: Any, encoding: str, data: bytes, sample: bool) -> _ThreadRun:
    items = payload.decode_value(encoding, data)
    if not isinstance(items, list):
        items = list(items)
    if not sample:
        enc, blob = payload.encode_items(_apply(func, items))
        return _ThreadRun(enc, blob, len(items))
    head: list[Any] = []
    times: list[float] = []
    clock = time.perf_counter
    t0 = last = clock()
    limit = min(len(items), SAMPLE_ITEMS)
    while len(head) < limit:
        i = len(head)
        try:
            head.append(func(items[i]))
        except Exception as exc:
            raise ProcessingError(f"item {i} failed: {type(exc).__name__}: {exc}",
                                  index=i, original=exc) from exc
        now = clock()
        times.append(now - last)
        last = now
        if now - t0 > SAMPLE_S:
            break
    n = len(head)
    if n < len(items) and sampled_costly(times, last - t0):
        return _ThreadRun(times=times, head=head, rest=items[n:])
    tail = _apply(func, items, n)
    enc, blob = payload.encode_items(head + tail)
    return _ThreadRun(enc, blob, len(items), times)


def _apply(func: Any, data: list[Any], start: int = 0) -> list[Any]:
    """``func`` over ``data[start:]``; ProcessingError names the failing item."""
    it = iter(data)
    if start:
        it = iter(data[start:])
    try:
        return [func(item) for item in it]
    except Exception as exc:
        # A list iterator knows how many items it has left: the failing one is the last taken.
        i = len(data) - operator.length_hint(it) - 1
        raise ProcessingError(f"item {i} failed: {type(exc).__name__}: {exc}",
                              index=i, original=exc) from exc


async def _encode(out: Any) -> tuple[str, bytes]:
    # Big results are encoded off the event loop so heartbeats keep going.
    n = len(out) if hasattr(out, "__len__") else 0
    if n > ENCODE_THREAD_ITEMS:
        return await asyncio.to_thread(payload.encode_value, out)
    return payload.encode_value(out)


__all__ = ["ENCODE_THREAD_ITEMS", "MorselRouter", "Poster"]
