"""``env.from_socket``: a TCP server on host:port that reads newline-delimited JSON records from
every client that connects (unbounded). Lines are gathered for up to ``linger`` or
``batch_size`` lines and decoded as one block. The connections form one source partition."""

from __future__ import annotations

import asyncio
import itertools
import time
from collections.abc import AsyncIterator

import pyarrow as pa

from ..errors import ConfigError
from .record_parsing import parse_jsonl
from .source import Item, Source


class SocketSource(Source):
    def __init__(self, host: str, port: int, fmt: str, schema: pa.Schema | None, batch_size: int,
                 linger_ms: int) -> None:
        if fmt != "jsonl":
            raise ConfigError("from_socket(format)", fmt, "jsonl")
        if isinstance(port, bool) or not isinstance(port, int) or not 0 <= port < 65536:
            raise ConfigError("from_socket(port)", port, "a TCP port from 0 (any free) to 65535")
        self.host, self.port = host, port
        self.schema = schema
        self.batch_size = batch_size
        self.linger_s = linger_ms / 1000
        self.bounded = False
        self.partitions = 0
        self.name = f"from_socket({host}:{port})"
        self._server: asyncio.base_events.Server | None = None
        self.bound_port: int | None = None

    async def read(self) -> AsyncIterator[Item]:
        queue: asyncio.Queue[Item] = asyncio.Queue(8)  # backpressure reaches the clients
        ids = itertools.count()

        async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            part = 0
            next(ids)
            try:
                async for item in self._lines(part, reader):
                    await queue.put(item)
            finally:
                await queue.put((part, "closed"))  # type: ignore[arg-type]
                writer.close()

        try:
            self._server = await asyncio.start_server(serve, self.host, self.port)
        except OSError as exc:
            raise ConfigError("from_socket(host, port)", f"{self.host}:{self.port}",
                              f"an address this node can listen on ({exc})") from exc
        self.bound_port = self._server.sockets[0].getsockname()[1]
        while True:
            part, payload = await queue.get()
            if isinstance(payload, str):
                continue  # a client closed: its partition simply goes quiet
            yield part, payload

    async def _lines(self, part: int, reader: asyncio.StreamReader) -> AsyncIterator[Item]:
        lines: list[bytes] = []
        deadline: float | None = None
        eof = False
        while not eof:
            timeout = None if deadline is None else max(0.0, deadline - time.monotonic())
            try:
                line: bytes | None = await asyncio.wait_for(reader.readline(), timeout)
            except TimeoutError:
                line = None
            if line == b"":
                eof = True
            elif line is not None:
                lines.append(line if line.endswith(b"\n") else line + b"\n")
                if deadline is None:
                    deadline = time.monotonic() + self.linger_s
            if lines and (eof or line is None or len(lines) >= self.batch_size
                          or time.monotonic() >= (deadline or 0)):
                table, bad = parse_jsonl(b"".join(lines), self.schema)
                lines, deadline = [], None
                if bad:
                    yield part, bad
                if table is not None:
                    for b in table.to_batches():
                        yield part, b

    async def aclose(self) -> None:
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()
