"""The coordinator's outbox: the messages of one turn of its loop, sent once the journal allows.

Replies a client can see (acks, results, states) wait for the turn's journal commit; what a
registered worker gets (assignments, cancels, acks) may go before it (:meth:`Outbox.
send_before_commit`). A registered worker gets all of its messages of a turn in one ZeroMQ
message. A reply to a caller inside this process (:class:`Local`) resolves its future.
"""

from __future__ import annotations

import concurrent.futures
import logging
import time
from collections.abc import Container
from typing import Any

import zmq

from ..protocol import MAX_FRAMES, Sender
from ..protocol import messages as m

log = logging.getLogger(__name__)


class Local:
    """A reply target inside this process: the reply resolves a future."""

    __slots__ = ("future",)

    def __init__(self, future: concurrent.futures.Future[Any]) -> None:
        self.future = future


Target = bytes | Local

#: Messages whose sending does not depend on the journal being committed.
NO_COMMIT_NEEDED = (m.Assign, m.CancelMorsel, m.HeartbeatAck, m.Welcome, m.Refused)


class Outbox:
    """Messages to send, in order per peer, through the coordinator's ROUTER socket."""

    __slots__ = ("_out", "_router", "_sender", "bytes_sent", "need_commit")

    def __init__(self, router: zmq.Socket) -> None:
        self._router = router
        self._sender = Sender()
        self._out: list[tuple[Target, m.Message]] = []
        #: True once a message that must wait for the journal's commit is queued.
        self.need_commit = False
        #: Bytes of the message frames sent to peers (what crosses the coordinator outward).
        self.bytes_sent = 0

    def send(self, target: Target, msg: m.Message) -> None:
        if not isinstance(msg, NO_COMMIT_NEEDED):
            self.need_commit = True
        self._out.append((target, msg))

    def send_before_commit(self, workers: Container[bytes]) -> None:
        """Send what registered ``workers`` get (assignments, cancels, acks: nothing a client
        can see) before the commit, so they start on a new job's morsels while its input is
        still being journaled. If the coordinator dies before the commit, the job was never
        acknowledged and their results are ignored as unknown. Per-peer order is kept."""
        keep: list[tuple[Target, m.Message]] = []
        held: set[bytes] = set()
        now: dict[bytes, list[m.Message]] = {}
        for target, msg in self._out:
            if (isinstance(target, bytes) and target not in held
                    and isinstance(msg, NO_COMMIT_NEEDED) and target in workers):
                now.setdefault(target, []).append(msg)
            else:
                if isinstance(target, bytes):
                    held.add(target)
                keep.append((target, msg))
        self._out = keep
        self._send_grouped(now, workers)

    def flush(self, workers: Container[bytes]) -> None:
        """Send everything queued (after the commit)."""
        out, self._out = self._out, []
        by_target: dict[bytes, list[m.Message]] = {}
        for target, msg in out:
            if isinstance(target, Local):
                if not target.future.done():
                    target.future.set_result(msg)
                continue
            by_target.setdefault(target, []).append(msg)
        self._send_grouped(by_target, workers)

    def has_queued(self, peer: bytes) -> bool:
        """Whether messages to ``peer`` wait for this turn's flush (a worker's Welcome among
        them: nothing may reach it before that)."""
        return any(target == peer for target, _ in self._out)

    def reachable(self, peer: bytes) -> bool:
        """Whether the ROUTER still has a connection to ``peer``: a heartbeat-ack sent now
        (harmless to a worker) fails with EHOSTUNREACH once the peer's connection is gone
        (ROUTER_MANDATORY)."""
        frames = [peer, *self._sender.encode_many([m.HeartbeatAck(time.time())])]
        try:
            self._router.send_multipart(frames, zmq.NOBLOCK)
        except zmq.ZMQError as exc:
            return exc.errno != zmq.EHOSTUNREACH
        return True

    def _send_grouped(self, by_target: dict[bytes, list[m.Message]],
                      workers: Container[bytes]) -> None:
        """A registered worker gets all of its messages of a turn in one ZeroMQ message (one
        frame each): one wake-up of each side for a whole credit window of assignments. Other
        peers (clients, which may be single-frame implementations) get one message each."""
        for target, msgs in by_target.items():
            if target in workers:
                msgs = m.batch_morsels(msgs)
                for i in range(0, len(msgs), MAX_FRAMES):
                    self._send_frames(target, msgs[i:i + MAX_FRAMES])
            else:
                for msg in msgs:
                    self._send_frames(target, [msg])

    def _send_frames(self, target: bytes, msgs: list[m.Message]) -> None:
        frames = [target, *self._sender.encode_many(msgs)]
        if len(frames) == 1:
            return
        try:
            self._router.send_multipart(frames, zmq.NOBLOCK)
            self.bytes_sent += sum(len(f) for f in frames) - len(target)
        except zmq.ZMQError as exc:
            # The peer is gone (EHOSTUNREACH); heartbeats deal with workers.
            log.debug("dropping %s to a gone peer: %s", ", ".join(msg.OP for msg in msgs), exc)


__all__ = ["NO_COMMIT_NEEDED", "Local", "Outbox", "Target"]
