"""A worker's link to the coordinator: one ZeroMQ session's sockets, what comes in (checked for
replays and foreign sessions, in order) and what goes out (posted at once, or held and sent as
one message).

The worker says what to do with each message (``on_message``) and when a read is complete
(``on_read``); the link never decides anything about morsels.

A result bigger than the ``chunk_bytes`` the coordinator's welcome offered (4 MiB,
:data:`~sabot.cluster.protocol.messages.CHUNK_BYTES`) does not go out as one message: it
waits in a queue of its own and :meth:`CoordinatorLink.chunk_loop` sends it as
``result-chunk`` messages, at most CHUNK_WINDOW ahead of the coordinator's acknowledgements
and yielding to the event loop after each, so heartbeats and small messages never wait behind
more than a few chunks (one big message held them for seconds: a false worker death).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import deque
from collections.abc import Callable, Iterator
from typing import Any

import zmq
import zmq.asyncio

from ..crc import crc32
from ..errors import ProtocolError
from ..metrics import Metrics
from . import transport
from .protocol import MAX_FRAMES, Sender, check_frames, decode_frame
from .protocol import messages as m
from .protocol.messages import CHUNK_WINDOW
from .remote_spool import StagedSpool
from .result_files import ResultFileError
from .security import ClusterKeys
from .spool import SPOOL, Spool, parse_ref, ref_bytes

log = logging.getLogger("sabot.cluster.worker")


class FatalRefusal(Exception):
    """Wraps an error that must stop the worker instead of retrying."""

    def __init__(self, error: Exception) -> None:
        super().__init__(str(error))
        self.error = error


class CoordinatorLink:
    """The session with the coordinator. ``registered`` is set while the coordinator has
    welcomed this worker (posts go straight out only then); ``on_message(msg)`` acts on a
    message and returns False to end the session; ``on_read()`` runs when everything that
    was waiting has been read and handled."""

    def __init__(self, node_id: str, metrics: Metrics, registered: asyncio.Event,
                 on_message: Callable[[m.Message], bool], on_read: Callable[[], None]) -> None:
        self.node_id = node_id
        self.metrics = metrics
        self.registered = registered
        self._on_message = on_message
        self._on_read = on_read
        #: When the coordinator was last heard from (monotonic seconds).
        self.last_heard = 0.0
        self._sock: zmq.asyncio.Socket | None = None
        self._sync: zmq.Socket | None = None
        self._sender = Sender()
        self._coord_session: tuple[int, int] | None = None
        # Messages that came in one ZeroMQ message and are not handled yet.
        self._inbox: deque[m.Message] = deque()
        self._outbox: list[m.Message] = []
        self._outbox_event = asyncio.Event()
        # Messages posted while posts are held (see held_posts) go out together, as one
        # ZeroMQ message.
        self._posts: list[m.Message] = []
        self._holding = 0
        self._kick_pending = False
        self._session_over: asyncio.Event | None = None
        self._fatal: FatalRefusal | None = None
        # Big results waiting to go in chunks (the first is the one being sent), and the
        # acknowledgements of the one being sent.
        #: Results bigger than this go in chunks of this size (the welcome's chunk_bytes; 0:
        #: this coordinator takes every result whole).
        self.chunk_bytes = 0
        self._big: deque[m.MorselResult] = deque()
        self._big_event = asyncio.Event()
        self._acked = -1  # its last chunk acknowledged
        self._ack_refused = False  # the coordinator does not take it
        self._ack_event = asyncio.Event()
        self._big_idle = asyncio.Event()
        self._big_idle.set()
        #: The coordinator's spool when this worker shares it (set at each welcome): big
        #: results are written there and sent as references; ``spool_sync``: the welcome
        #: asked for fsynced spool files (SABOT_JOURNAL_SYNC=full).
        self.spool: Spool | None = None
        self.spool_sync = False
        self._spooling: set[asyncio.Future[None]] = set()

    @property
    def connected(self) -> bool:
        return self._sock is not None

    # -- sockets -------------------------------------------------------------------------
    def open(self, ctx: zmq.asyncio.Context, keys: ClusterKeys, endpoint: str) -> None:
        """A fresh session's sockets (sequence numbers and the inbox start again)."""
        self._sender = Sender()
        self._coord_session = None
        self._inbox.clear()
        self._sock = transport.client_socket(ctx, keys, endpoint)
        # The same socket without asyncio, for sends and reads that need not wait.
        self._sync = zmq.Socket.shadow(self._sock.underlying)

    def close(self, linger_ms: int = 0) -> None:
        self._sync = None
        if self._sock is not None:
            self._sock.close(linger_ms)
            self._sock = None

    async def send_now(self, msg: m.Message) -> None:
        if self._sock is not None:
            await self._sock.send_multipart(self._sender.encode(msg))

    # -- receiving -----------------------------------------------------------------------
    async def recv(self, timeout: float | None) -> m.Message | None:
        """The next valid message from the coordinator (None on timeout)."""
        assert self._sock is not None
        deadline = None if timeout is None else time.monotonic() + timeout
        while not self._inbox:
            left = None if deadline is None else max(0.0, deadline - time.monotonic())
            if left is not None and left <= 0:
                return None
            if not await self._sock.poll(None if left is None else int(left * 1000) + 1):
                continue
            self._inbox.extend(self._accept(await self._sock.recv_multipart()))
        return self._inbox.popleft()

    def _recv_nowait(self) -> m.Message | None | bool:
        """A message already waiting (None when what came was rejected), False when none is."""
        if self._inbox:
            return self._inbox.popleft()
        if self._sync is None:
            return False
        try:
            frames = self._sync.recv_multipart(zmq.NOBLOCK)
        except zmq.Again:
            return False
        self._inbox.extend(self._accept(frames))
        return self._inbox.popleft() if self._inbox else None

    def _accept(self, frames: list[bytes]) -> list[m.Message]:
        """The valid messages of one ZeroMQ message (one per frame, in order); bad frames are
        rejected and logged one by one."""
        try:
            check_frames(frames)
        except ProtocolError as exc:
            self._reject(exc)
            return []
        out = []
        for frame in frames:
            try:
                env = decode_frame(frame)
            except ProtocolError as exc:
                self._reject(exc)
                continue
            known = self._coord_session
            if known is not None and env.session == known[0] and env.seq <= known[1]:
                log.warning("worker %s rejected a replayed message (seq %d)", self.node_id,
                            env.seq)
                continue
            if known is not None and env.session != known[0] and not isinstance(
                    env.msg, (m.Refused, m.Welcome)):
                log.warning("worker %s ignored %s from an unknown coordinator session",
                            self.node_id, env.msg.OP)
                continue
            self._coord_session = (env.session, env.seq)
            self.last_heard = time.monotonic()
            if type(env.msg) is m.AssignMany:
                out += env.msg.expand()
            elif type(env.msg) is m.ResultChunkAck:
                self._chunk_acked(env.msg)
            else:
                out.append(env.msg)
        return out

    def _reject(self, exc: ProtocolError) -> None:
        self.metrics.record_error("protocol")
        log.warning("worker %s rejected a message from the coordinator: %s", self.node_id, exc)

    async def receive_loop(self) -> None:
        """Handle messages as they come until ``on_message`` ends the session."""
        assert self._sock is not None
        on_message = self._on_message
        while True:
            # Only wait for readability here: every read is a plain read that is handled at
            # once (here or in _drain_kicked), so messages are handled in the order they came
            # (an asyncio read could complete, then wait for the loop while a kicked drain
            # handles later messages, and be dropped as a replay). What is already read comes
            # first: the assignments that came with the welcome wait in the inbox.
            with self.held_posts():
                msg: Any = self._recv_nowait()
                while msg is not False:
                    if msg is not None and not on_message(msg):
                        return
                    # Everything already queued is handled in this wake-up, without the loop.
                    msg = self._recv_nowait()
                # All that came is handled: what it queued starts now, not a turn later.
                self._on_read()
            await self._sock.poll()

    # -- the session's end ---------------------------------------------------------------
    def begin_session(self) -> asyncio.Event:
        """An event set when a message handled outside the receive loop ends the session."""
        self._session_over = asyncio.Event()
        self._fatal = None
        return self._session_over

    def raise_if_refused(self) -> None:
        """The fatal refusal a kicked read met, if any (it ended the session)."""
        if self._fatal is not None:
            fatal, self._fatal = self._fatal, None
            raise fatal

    # -- sending -------------------------------------------------------------------------
    def post(self, msg: m.Message) -> None:
        """Send ``msg`` now, or when posts are held, with the others when they are released; a
        result bigger than ``chunk_bytes`` goes in chunks (chunk_loop)."""
        spool = self.spool
        if type(msg) is m.MorselResult and spool is not None:
            if msg.encoding != SPOOL and len(msg.data) >= spool.min_bytes:
                self._in_background(self._spool_result(spool, msg))
                return
            if msg.encoding == SPOOL and isinstance(spool, StagedSpool):
                # (another host: the result file goes to the coordinator before its reference)
                self._in_background(self._publish(spool, msg))
                return
        self._post_bytes(msg)

    def _in_background(self, work: Any) -> None:
        task = asyncio.ensure_future(work)
        self._spooling.add(task)
        task.add_done_callback(self._spooling.discard)

    def _post_bytes(self, msg: m.Message) -> None:
        """Send ``msg`` as it is: in chunks when it is a big result, else now or with the
        held posts."""
        if type(msg) is m.MorselResult and self.chunk_bytes and len(msg.data) > self.chunk_bytes:
            self._big.append(msg)
            self._big_idle.clear()
            self._big_event.set()
            return
        self._posts.append(msg)
        if not self._holding:
            self.flush()

    async def _spool_result(self, spool: Spool, res: m.MorselResult) -> None:
        """Write a big result to the spool (off the loop; fsynced when the welcome asked, as
        SABOT_JOURNAL_SYNC=full does: otherwise it is as durable as the journal, which
        survives a process crash, and a file a power loss cut short is found by its CRC-32
        when read), then send its reference; where it cannot be written (a full disk) it goes
        over ZeroMQ as ever."""
        path = spool.output_path(res.job_id, res.morsel, res.attempt)
        try:
            crc = await asyncio.to_thread(spool.write, path, res.data, sync=self.spool_sync)
        except OSError as exc:
            log.warning("could not write the result of job %s morsel %d to the spool (%s): it "
                        "is sent over the connection", res.job_id, res.morsel, exc)
            self.spool = None if self.spool is spool else self.spool
            self._post_bytes(res)
            return
        self.post(m.MorselResult(res.job_id, res.morsel, res.attempt, res.items, SPOOL,
                                 ref_bytes(res.encoding, len(res.data), crc), res.elapsed_s))

    async def _publish(self, spool: StagedSpool, res: m.MorselResult) -> None:
        """Put a result file written here to the coordinator through the data port, then send
        its reference; one that cannot be put goes over the connection as bytes (read back
        from the local file)."""
        try:
            await asyncio.to_thread(spool.publish, res.job_id, res.morsel, res.attempt, res.data)
        except (OSError, ProtocolError, ResultFileError) as exc:
            log.warning("could not put the result of job %s morsel %d through the data port "
                        "(%s): it is sent over the connection", res.job_id, res.morsel, exc)
            try:
                enc, size, crc = parse_ref(res.data)
                path = spool.output_path(res.job_id, res.morsel, res.attempt)
                data = await asyncio.to_thread(spool.read, path, size, crc)
            except (OSError, ProtocolError, ResultFileError) as exc2:
                # (the local file is gone too: the morsel runs again)
                self._post_bytes(m.MorselFailed(
                    res.job_id, res.morsel, res.attempt, type(exc2).__name__,
                    f"the result could not reach the coordinator: {exc}; {exc2}"))
                return
            path.unlink(missing_ok=True)
            self._post_bytes(m.MorselResult(res.job_id, res.morsel, res.attempt, res.items,
                                            enc, data, res.elapsed_s))
            return
        self._post_bytes(res)

    @contextlib.contextmanager
    def held_posts(self) -> Iterator[None]:
        """Messages posted inside go out together when it ends (the results of one coalesced
        engine call, or of the morsels of one received batch run inline: one ZeroMQ message,
        one wake-up of the coordinator, instead of one each)."""
        self._holding += 1
        try:
            yield
        finally:
            self._holding -= 1
            if not self._holding and self._posts:
                self.flush()

    def drop_credits(self) -> None:
        """Forget credits posted but not sent yet (a later credit must not be undone)."""
        self._posts = [x for x in self._posts if not isinstance(x, m.Credit)]
        self._outbox = [x for x in self._outbox if not isinstance(x, m.Credit)]

    def flush(self) -> None:
        """Send (or queue for the send loop) what is posted."""
        msgs, self._posts = self._posts, []
        if len(msgs) > 1:
            msgs = m.batch_morsels(msgs)
        # Until the welcome, posts wait for the send loop: a read after a send here (the
        # kick) could take the welcome (or a refusal) away from the hello.
        if not self._outbox and self._sync is not None and self.registered.is_set():
            try:
                while msgs:
                    self._sync.send_multipart(self._sender.encode_many(msgs[:MAX_FRAMES]),
                                              zmq.NOBLOCK)
                    del msgs[:MAX_FRAMES]
            except zmq.ZMQError:
                # Not connected right now (the sequence numbers are spent; later ones are
                # higher, which is all the coordinator checks): the send loop retries.
                pass
            self._kick()
        if msgs:
            self._outbox.extend(msgs)
            self._outbox_event.set()

    def _kick(self) -> None:
        """After a send on the plain socket: read what waits now. ZMQ_FD, which the asyncio
        poll in receive_loop waits on, is edge-triggered, and a send on the same socket can
        consume its edge (the send processes the socket's pending commands); a message that
        arrived meanwhile would then sit unread until some later traffic (a heartbeat ack a
        second later), which held morsels back for up to a heartbeat period."""
        if self._kick_pending or self._sync is None:
            return
        try:
            readable = self._sync.get(zmq.EVENTS) & zmq.POLLIN
        except zmq.ZMQError:
            return
        if readable:
            self._kick_pending = True
            asyncio.get_running_loop().call_soon(self._drain_kicked)

    def _drain_kicked(self) -> None:
        self._kick_pending = False
        try:
            with self.held_posts():
                msg = self._recv_nowait()
                while msg is not False:
                    if msg is not None and not self._on_message(msg):
                        if self._session_over is not None:
                            self._session_over.set()
                        return
                    msg = self._recv_nowait()
        except FatalRefusal as exc:
            # (a callback: the session ends and the worker raises it)
            self._fatal = exc
            if self._session_over is not None:
                self._session_over.set()

    async def flush_outbox(self) -> None:
        while self._outbox and self._sock is not None:
            msg = self._outbox.pop(0)
            await self.send_now(msg)

    async def send_loop(self) -> None:
        while True:
            await self.flush_outbox()
            self._outbox_event.clear()
            if not self._outbox:
                await self._outbox_event.wait()


    # -- big results, in chunks --------------------------------------------------------------
    def _chunk_acked(self, ack: m.ResultChunkAck) -> None:
        head = self._big[0] if self._big else None
        if head is None or (ack.job_id, ack.morsel, ack.attempt) != (
                head.job_id, head.morsel, head.attempt):
            return  # (of a result given up or sent in an earlier session)
        if not ack.accepted:
            self._ack_refused = True
        self._acked = max(self._acked, ack.index)
        self._ack_event.set()

    def cancel_result(self, job_id: str, morsel: int) -> None:
        """The coordinator cancelled a morsel: its big result, if still waiting, is not sent
        (one being sent stops after its chunks in flight)."""
        for i, res in enumerate(self._big):
            if (res.job_id, res.morsel) == (job_id, morsel):
                if i == 0:
                    self._ack_refused = True
                    self._ack_event.set()
                else:
                    del self._big[i]
                return

    async def wait_chunks_sent(self, timeout: float) -> bool:
        """Until every big result has gone (True), or ``timeout`` seconds (False)."""
        deadline = time.monotonic() + timeout
        if self._spooling:
            # (results being written to the spool: their references go once written)
            await asyncio.wait(list(self._spooling), timeout=timeout)
            if self._spooling:
                return False
        try:
            await asyncio.wait_for(self._big_idle.wait(), max(0.0, deadline - time.monotonic()))
            return True
        except TimeoutError:
            return False

    async def chunk_loop(self) -> None:
        """Send the big results one after another, each in chunks (for this session: a result
        cut off by the session's end is sent again from its start in the next one, where the
        coordinator may refuse it)."""
        while True:
            if not self._big:
                self._big_idle.set()
                self._big_event.clear()
                await self._big_event.wait()
                continue
            if not self.chunk_bytes:
                # (this session's coordinator takes results whole: these go so)
                big, self._big = list(self._big), deque()
                for res in big:
                    self.post(res)
                continue
            res = self._big[0]
            await self._send_chunks(res)
            if self._big and self._big[0] is res:
                self._big.popleft()

    async def _send_chunks(self, res: m.MorselResult) -> None:
        view = memoryview(res.data)
        size = len(view)
        step = self.chunk_bytes
        count = -(-size // step)
        self._acked = -1
        self._ack_refused = False
        crc = 0
        for index in range(count):
            while index - self._acked > CHUNK_WINDOW and not self._ack_refused:
                self._ack_event.clear()
                await self._ack_event.wait()
            if self._ack_refused:
                return
            part = view[index * step:(index + 1) * step]
            crc = crc32(part, crc)
            final = index == count - 1
            await self.send_now(m.ResultChunk(
                res.job_id, res.morsel, res.attempt, index, part, final,
                res.items if final else 0, res.encoding if final else "",
                res.elapsed_s if final else 0.0, size if final else 0, crc if final else 0))
            self._kick()
            # Heartbeats and small messages go between chunks.
            await asyncio.sleep(0)
        # Its last chunks are acknowledged before the next result starts: at most a window of
        # chunks is ever ahead of the coordinator.
        while self._acked < count - 1 and not self._ack_refused:
            self._ack_event.clear()
            await self._ack_event.wait()


__all__ = ["CoordinatorLink", "FatalRefusal"]
