"""The protocol version and the fixed frame header every message starts with."""

from __future__ import annotations

import struct

#: Bumped on any incompatible change to a message, an encoding or the framing. Peers refuse
#: another version. 2: a ZeroMQ message may carry several message frames. 3: assign-many and
#: morsel-results carry several morsels of one job in one message. (Chunked results came
#: without a bump: a coordinator offers them in welcome's ``chunk_bytes``, which an older
#: worker ignores, and a worker sends chunks only to a coordinator that offered them.) 4: the
#: same-host data plane (morsels and results as ``spool`` references to files, hello's
#: ``spool_token``, welcome's ``spool``, fetch-results' ``files``) and pieces of morsels
#: (assign's ``start`` and ``count``). 5: the data port (spool files put and got by peers that
#: do not share the data dir: hello's ``remote_spool``, welcome's ``data_port`` and ``spool``
#: 3, the data port's own frames in :mod:`sabot.cluster.protocol.data_port`). 6: streaming
#: pipelines (submit-pipeline .. task-event: a worker runs pipeline tasks, which talk to each
#: other over their exchange, :mod:`sabot.stream.exchange_channels`).
PROTOCOL_VERSION = 6

#: First four bytes of every header frame.
MAGIC = b"SABT"

#: Message header (the first 24 bytes of every message frame): magic, protocol version (u16),
#: message type (u16), sender session (u64), sequence number within that session (u64);
#: network byte order. Frozen across versions, so a peer of any version can read the version
#: and refuse cleanly.
HEADER = struct.Struct("!4sHHQQ")

__all__ = ["HEADER", "MAGIC", "PROTOCOL_VERSION"]
