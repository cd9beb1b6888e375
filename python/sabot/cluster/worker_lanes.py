"""Coalesced engine calls for list morsels of a cluster worker's user (per-item) functions."""

from __future__ import annotations

import asyncio
import time
from contextlib import AbstractContextManager
from dataclasses import dataclass
from typing import Any, Protocol

from ..errors import ProcessingError
from .protocol import messages as m
from .protocol import payload
from .spool_task import SPOOL_FILE, read_task


class LaneHost(Protocol):
    """What the lanes need from the worker: its engine, the one done and fail path for a
    morsel, the posts held while one call's results go out, and forgetting a settled morsel."""

    @property
    def engine(self) -> Any: ...

    def morsel_done(self, msg: m.Assign, items: int, encoding: str, blob: bytes,
                    elapsed: float, cost: float | None = None) -> None: ...

    def morsel_failed(self, msg: m.Assign, exc: BaseException, t0: float) -> None: ...

    def held_posts(self) -> AbstractContextManager[None]: ...

    def forget(self, key: tuple[str, int], fut: asyncio.Future[None]) -> None: ...


@dataclass(slots=True, frozen=True)
class SpooledTask:
    """A spooled morsel as its pool process gets it (sabot.cluster.spool_task): the payload
    naming its file, its estimated item count and the writer of its result."""

    payload: bytes
    rows: int
    writer: Any


@dataclass(slots=True, eq=False)
class Queued:
    """A list morsel of a user function waiting for (or in) a coalesced engine call."""

    msg: m.Assign
    func: Any
    fkey: bytes | str
    done: asyncio.Future[None]
    size: int
    items: list[Any] | None = None  # decoded input, once ready
    # A bulk morsel left encoded: the pool process that runs it decodes and encodes it.
    encoded: bool = False
    rows: int = 1  # its item count (an estimate for pickle morsels, for statistics only)
    # A bulk morsel whose pool process reads its spool file (and writes its result there).
    spooled: SpooledTask | None = None


class Lanes:
    """Coalesced engine calls for list morsels of user (per-item) functions.

    One engine call per morsel costs the isolated pool a round trip, the function's pickling
    and the engine's planning for each morsel, and calls that come and go one by one make the
    isolated pool grow and shrink (a process start each time): tiny morsels then ran at a few
    hundred per second. Here a morsel is decoded when it arrives (big ones off the loop), and
    every decoded morsel of the same function that waits while an engine call runs goes into
    the next call (one engine call spreads them over the pool's processes); results are cut
    back into morsels and encoded after the call has left the engine, while the next one runs.
    One engine call at a time keeps the pool's size steady; a call running longer than
    ESCALATE_S (a slow or hung item) lets one more start beside it, so other morsels are not
    held up behind it. A bulk morsel (placed ``POOL_ENCODED``) is not decoded here at all: it is
    a call of its own, started at once, which a pool process decodes, runs and encodes.

    Each morsel's ``done`` future is its entry in the host's table of running morsels, so
    cancelling, draining and handing back work as for any morsel: a morsel cancelled while its
    call runs cancels that call and the call's other morsels wait for the next one. The lanes
    see their host only through :class:`LaneHost`.
    """

    #: A call running this long lets another start beside it.
    ESCALATE_S = 1.0
    #: Most bytes of input and morsels coalesced into one call.
    MAX_BYTES = 16 << 20
    MAX_MORSELS = 256
    #: Results of a call bigger than this (its morsels' bytes) are encoded off the event loop.
    THREAD_BYTES = 256 << 10

    def __init__(self, host: LaneHost) -> None:
        self.host = host
        self.waiting: list[Queued] = []
        # Engine calls in flight: task -> (start time, morsels); a task leaves this table when
        # its engine call returns (its results may still be being encoded).
        self.calls: dict[asyncio.Future[None], tuple[float, list[Queued]]] = {}
        self._timer: asyncio.TimerHandle | None = None
        self._pump_due = False

    def submit(self, msg: m.Assign, func: Any, fkey: bytes | str, *, encoded: bool,
               spooled: SpooledTask | None = None) -> asyncio.Future[None]:
        """Queue a morsel now (decoded, unless ``encoded``: a pool process decodes it, and
        with ``spooled`` reads it from its spool file and writes its result there too);
        returns its future, which is the morsel's entry in the host's running table: done when
        its result (or failure) is posted, and cancelling it takes the morsel out of its call.
        (No task per morsel: a task costs a tiny morsel two more turns of the loop and a tenth
        of its CPU.)"""
        key = (msg.job_id, msg.morsel)
        t0 = time.perf_counter()
        q = Queued(msg, func, fkey, asyncio.get_running_loop().create_future(), len(msg.data))
        q.done.add_done_callback(lambda fut: self._settled(q, key, fut))
        try:
            if spooled is not None:
                q.encoded, q.spooled, q.rows = True, spooled, spooled.rows
            elif encoded:
                q.encoded = True
                q.rows = payload.count_items(msg.encoding, msg.data) or 1
            else:
                # (a morsel small enough to stay unencoded decodes cheaper than a thread hop)
                q.items = _decode_list(msg)
        except Exception as exc:
            self._fail(q, exc, t0)
            return q.done
        self.waiting.append(q)
        self._pump_soon()
        return q.done

    def _settled(self, q: Queued, key: tuple[str, int], fut: asyncio.Future[None]) -> None:
        self.host.forget(key, fut)
        if fut.cancelled():
            self._drop(q)

    def _fail(self, q: Queued, exc: BaseException, t0: float) -> None:
        self.host.morsel_failed(q.msg, exc, t0)
        if not q.done.done():
            q.done.set_result(None)

    def _drop(self, q: Queued) -> None:
        if q in self.waiting:
            self.waiting.remove(q)
            return
        for call, (_, batch) in list(self.calls.items()):
            if q in batch:
                # The call's other morsels run again in the next call, without this one.
                del self.calls[call]
                call.cancel()
                self.waiting[:0] = [o for o in batch if o is not q and not o.done.done()]
                break
        self.pump()

    def _pump_soon(self) -> None:
        # At the end of this turn of the loop, not now: the morsels that came together (one
        # ZeroMQ message of assignments) are all queued by then and share one call, instead of
        # the first going alone and the rest waiting for it.
        if not self._pump_due:
            self._pump_due = True
            asyncio.get_running_loop().call_soon(self.start_queued)

    def start_queued(self) -> None:
        """Start the calls the morsels queued since _pump_soon need (once: the receive loop
        calls this when it has read everything waiting, before the scheduled call runs)."""
        if self._pump_due:
            self._pump_due = False
            self.pump()

    def pump(self) -> None:
        loop = asyncio.get_running_loop()
        now = loop.time()
        if any(q.done.done() for q in self.waiting):
            # cancelled (or failed) after it was queued, before its _settled callback ran
            self.waiting = [q for q in self.waiting if not q.done.done()]
        if any(q.encoded for q in self.waiting):
            # An encoded morsel is a call of its own (one pool task) and starts at once; the
            # pool's queue spreads them over its processes.
            for q in [q for q in self.waiting if q.encoded]:
                call = asyncio.ensure_future(self._call([q]))
                self.calls[call] = (now, [q])
            self.waiting = [q for q in self.waiting if not q.encoded]
        while self.waiting:
            oldest = min((t for t, b in self.calls.values() if not b[0].encoded), default=None)
            if oldest is not None and now - oldest < self.ESCALATE_S:
                if self._timer is None:
                    self._timer = loop.call_later(self.ESCALATE_S - (now - oldest), self._tick)
                return
            batch = self._take()
            call = asyncio.ensure_future(self._call(batch))
            self.calls[call] = (now, batch)

    def _tick(self) -> None:
        self._timer = None
        self.pump()

    def _take(self) -> list[Queued]:
        first = self.waiting[0]
        batch, rest, size = [], [], 0
        for q in self.waiting:
            if q.fkey == first.fkey and not q.encoded and len(batch) < self.MAX_MORSELS and (
                    not batch or size + q.size <= self.MAX_BYTES):
                batch.append(q)
                size += q.size
            else:
                rest.append(q)
        self.waiting = rest
        return batch

    async def _call(self, batch: list[Queued]) -> None:
        host = self.host
        t0 = time.perf_counter()
        me = asyncio.current_task()
        left_engine = False
        try:
            if batch[0].encoded:
                # (one morsel: a failure's index is already the item within it)
                task = batch[0].spooled
                if task is not None:
                    results = await host.engine.process_encoded(
                        [(SPOOL_FILE, task.payload, task.rows)], batch[0].func, read_task,
                        task.writer)
                else:
                    results = await host.engine.process_encoded(
                        [(q.msg.encoding, q.msg.data, q.rows) for q in batch], batch[0].func,
                        payload.decode_value, payload.encode_items)
                left_engine = self.calls.pop(me, None) is not None  # type: ignore[arg-type]
            else:
                parts: list[list[Any]] = [q.items or [] for q in batch]
                items = [x for part in parts for x in part] if len(parts) > 1 else parts[0]
                try:
                    out = await host.engine.process(items, batch[0].func)
                except ProcessingError as exc:
                    if exc.index is None or len(batch) == 1:
                        raise
                    self._failed_item(batch, parts, exc, t0)
                    return
                # Out of the engine: the next call may start while these results are encoded.
                left_engine = self.calls.pop(me, None) is not None  # type: ignore[arg-type]
                if left_engine and self.waiting:
                    self.pump()
                out = out if isinstance(out, list) else list(out)
                if sum(q.size for q in batch) > self.THREAD_BYTES:
                    encoded = await asyncio.to_thread(_encode_cut, out, parts)
                else:
                    encoded = _encode_cut(out, parts)
                results = [(len(part), encoding, blob)
                           for part, (encoding, blob) in zip(parts, encoded)]
            elapsed = time.perf_counter() - t0
            with host.held_posts():
                for q, (n, encoding, blob) in zip(batch, results):
                    if not q.done.done():
                        q.items = None
                        host.morsel_done(q.msg, n, encoding, blob, elapsed, elapsed / len(batch))
                        q.done.set_result(None)
        except asyncio.CancelledError:
            if left_engine:
                # Cancelled while encoding: the morsels not yet posted run again.
                self.waiting[:0] = [q for q in batch if not q.done.done()]
            raise
        except Exception as exc:
            for q in batch:
                if not q.done.done():
                    self._fail(q, exc, t0)
        finally:
            if me is not None:
                self.calls.pop(me, None)  # type: ignore[arg-type]
            if self.waiting:
                self.pump()

    def _failed_item(self, batch: list[Queued], parts: list[list[Any]], exc: ProcessingError,
                     t0: float) -> None:
        """An item failed: its morsel fails (with the index inside it); the others run again
        in the next call (this call's results are gone with the exception)."""
        index = int(exc.index or 0)
        again = []
        for q, part in zip(batch, parts):
            if q.done.done():
                continue
            if 0 <= index < len(part):
                exc.index = index
                self._fail(q, exc, t0)
            else:
                again.append(q)
            index -= len(part)
        self.waiting[:0] = again


def _decode_list(msg: m.Assign) -> list[Any]:
    items = payload.decode_value(msg.encoding, msg.data)
    return items if isinstance(items, list) else list(items)


def _encode_cut(out: list[Any], parts: list[list[Any]]) -> list[tuple[str, bytes]]:
    """The results of a coalesced call cut back into its morsels, each encoded."""
    encoded = []
    pos = 0
    for part in parts:
        encoded.append(payload.encode_items(out[pos:pos + len(part)]))
        pos += len(part)
    return encoded


__all__ = ["LaneHost", "Lanes", "Queued", "SpooledTask"]
