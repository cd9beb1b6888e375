"""Big results that come in chunks: the ones being received, each appended to its file as its
chunks arrive.

A worker sends a result bigger than :data:`~sabot.cluster.protocol.messages.CHUNK_BYTES` as
``result-chunk`` messages (docs/protocol.md), at most a few unacknowledged at a time, so its
heartbeats never queue behind a whole result and the coordinator never holds one whole. Here a
chunk of the morsel's current assignment is checked (it must be the next one), its bytes go to
the result files' thread (appended to the morsel's temporary file) and its CRC-32 is carried
on; once the thread has appended it, the chunk is acknowledged (:meth:`ChunkedResults.acks`),
which lets the worker send the next. The last chunk names the result's size and CRC: when they
match, the result is complete (:meth:`ChunkedResults.add` returns it) and its file is finished
(fsynced and renamed into place); when not, or when the worker is lost, or the morsel is taken
from it, the partial file is discarded.
"""

from __future__ import annotations

import itertools
import logging
from collections.abc import Callable
from dataclasses import dataclass

from ...crc import crc32
from ...errors import ProtocolError
from ..protocol import messages as m
from ..result_files import ResultFiles
from .outbox import Target

log = logging.getLogger(__name__)


@dataclass(slots=True)
class Partial:
    """A result whose chunks are coming in."""

    token: int  # this partial's number (the file thread's acknowledgements name it)
    node_id: str
    peer: bytes
    attempt: int
    next_index: int = 0
    size: int = 0
    crc: int = 0


@dataclass(frozen=True, slots=True)
class Complete:
    """A result whose last chunk came and matched: its file is being finished."""

    encoding: str
    items: int
    size: int
    crc: int
    elapsed_s: float


class ChunkedResults:
    """The chunked results being received, by (job id, morsel)."""

    def __init__(self, files: ResultFiles, send: Callable[[Target, m.Message], None]) -> None:
        self._files = files
        self._send = send
        self._partials: dict[tuple[str, int], Partial] = {}
        self._by_token: dict[int, tuple[tuple[str, int], Partial]] = {}
        self._tokens = itertools.count(1)
        self.chunks_received = 0

    def __len__(self) -> int:
        return len(self._partials)

    def in_progress(self) -> list[tuple[str, int]]:
        """(job id, morsel) of the results coming in."""
        return list(self._partials)

    def add(self, node_id: str, peer: bytes, msg: m.ResultChunk) -> Complete | None:
        """Take a chunk of the morsel's current assignment (the caller checked that). Returns
        the complete result at its last chunk; raises ProtocolError for a chunk out of order
        or a result whose size or CRC does not match (its partial file is discarded)."""
        key = (msg.job_id, msg.morsel)
        part = self._partials.get(key)
        if part is not None and (part.attempt != msg.attempt or part.node_id != node_id
                                 or msg.index == 0):
            self.discard(key)
            part = None
        if part is None:
            if msg.index != 0:
                raise ProtocolError(f"result-chunk {msg.index} of job {msg.job_id} morsel "
                                    f"{msg.morsel} came without its first chunk")
            part = Partial(next(self._tokens), node_id, peer, msg.attempt)
            self._partials[key] = part
            self._by_token[part.token] = (key, part)
        elif msg.index != part.next_index:
            self.discard(key)
            raise ProtocolError(f"result-chunk {msg.index} of job {msg.job_id} morsel "
                                f"{msg.morsel} came out of order (expected {part.next_index})")
        data = msg.data
        part.next_index += 1
        part.size += len(data)
        part.crc = crc32(data, part.crc)
        self.chunks_received += 1
        self._files.append(msg.job_id, msg.morsel, part.token, msg.index, bytes(data))
        if not msg.final:
            return None
        if msg.size != part.size or msg.crc != part.crc:
            self.discard(key)
            raise ProtocolError(
                f"the result of job {msg.job_id} morsel {msg.morsel} came as {part.size} bytes "
                f"with CRC-32 {part.crc:08x}, its last chunk says {msg.size} bytes, CRC-32 "
                f"{msg.crc:08x}: it is discarded")
        del self._partials[key]
        self._files.finish(msg.job_id, msg.morsel, part.token, part.size, part.crc)
        return Complete(msg.encoding, int(msg.items), part.size, part.crc, float(msg.elapsed_s))

    def discard(self, key: tuple[str, int]) -> None:
        """Forget a result still coming in; its partial file goes."""
        part = self._partials.pop(key, None)
        if part is not None:
            self._by_token.pop(part.token, None)
            self._files.discard(key[0], key[1], part.token)

    def discard_node(self, node_id: str, keys: list[tuple[str, int]]) -> int:
        """Forget the results of ``keys`` coming in from ``node_id`` (it was lost, or started
        a new session); returns how many were cut short so."""
        cut = 0
        for key in keys:
            part = self._partials.get(key)
            if part is not None and part.node_id == node_id:
                self.discard(key)
                cut += 1
        return cut

    def acks(self) -> None:
        """Acknowledge the chunks the file thread has appended (the worker sends on)."""
        for token, index in self._files.take_appended():
            entry = self._by_token.get(token)
            if entry is None:
                continue
            (job_id, idx), part = entry
            self._send(part.peer, m.ResultChunkAck(job_id, idx, part.attempt, index))
            # After its last chunk's acknowledgement nothing more comes for a complete one.
            if self._partials.get((job_id, idx)) is not part and index + 1 >= part.next_index:
                self._by_token.pop(token, None)


__all__ = ["ChunkedResults", "Complete", "Partial"]
