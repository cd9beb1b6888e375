"""The exchange of a distributed job: rows sent to the instance that owns their key.

Every instance of a job runs the whole graph. Where an operator needs all rows of a key (a keyed
window, ``process``, a join), the job puts an :class:`ExchangeSend` after its upstream and an
:class:`ExchangeInput` before it: the send splits each batch by owner (:mod:`.key_groups`) and
hands the pieces to the channels (:mod:`.exchange_channels`); the input takes what every
instance sent it, one input port per sending instance, so the operator's watermark is the
minimum over the senders' watermarks (an idle sender does not hold it back), as for any operator
with several inputs. A sender's final watermark (``MAX_TIME``) is its end of stream.
"""

from __future__ import annotations

from typing import Protocol

import numpy as np

from .chunk import Chunk
from .durations import MAX_TIME
from .key_groups import owners
from .operator import Operator


class Channels(Protocol):
    """What the exchange operators need of the transport."""

    instance: int
    instances: int
    key_groups: int

    def send_batch(self, exchange: int, dest: int, chunk: Chunk) -> None: ...

    def send_watermark(self, exchange: int, watermark: int) -> None: ...

    def send_idle(self, exchange: int, idle: bool) -> None: ...

    def send_barrier(self, exchange: int, epoch: int) -> None: ...


class ExchangeSend(Operator):
    """The end of the upstream part: each row goes to the instance owning its key."""

    def __init__(self, name: str, exchange: int, keys: list[str], channels: Channels) -> None:
        super().__init__(name)
        self.exchange = exchange
        self.keys = keys
        self.channels = channels

    def process(self, chunk: Chunk, port: int) -> None:
        ch = self.channels
        if ch.instances == 1:
            ch.send_batch(self.exchange, 0, chunk)
            self.rows_out += chunk.num_rows
            return
        dest = owners(chunk.batch, self.keys, ch.key_groups, ch.instances)
        order = np.argsort(dest, kind="stable")
        counts = np.bincount(dest, minlength=ch.instances)
        start = 0
        for d, n in enumerate(counts):
            if n:
                idx = order[start:start + n]
                piece = chunk if n == chunk.num_rows else chunk.take(idx)
                ch.send_batch(self.exchange, d, piece)
                start += n
        self.rows_out += chunk.num_rows

    def on_watermark(self, watermark: int) -> None:
        self.channels.send_watermark(self.exchange, watermark)

    def emit_idle(self, idle: bool) -> None:
        self.channels.send_idle(self.exchange, idle)


class ExchangeInput(Operator):
    """The start of the downstream part: one input port per sending instance."""

    def __init__(self, name: str, exchange: int, senders: int) -> None:
        super().__init__(name, inputs=senders)
        self.exchange = exchange

    def process(self, chunk: Chunk, port: int) -> None:
        self.rows_in += chunk.num_rows
        self.emit(chunk)

    def ended(self, sender: int) -> bool:
        """The sending instance ``sender`` sent its end (its final watermark)."""
        return self._in_wm[sender] >= MAX_TIME
