"""The data port on real ZeroMQ sockets (CURVE, the ZAP check) and a real data dir.

A :class:`SpoolServer` (the coordinator's side) and :class:`SpoolClient`s (a peer's): files put
whole in chunks and got back byte for byte; what is refused (a name outside the spool's shapes,
bytes that are not what the sender described, another protocol version, another cluster's key)
and that a refused put leaves no file; a connection cut in the middle of a put (a TCP relay
that drops it) is survived by sending again on a new connection.
"""

from __future__ import annotations

import json
import os
import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import msgpack
import pytest
import zmq
from sabot.cluster import transport
from sabot.cluster.coordinator.spool_server import SpoolServer
from sabot.cluster.protocol import data_port as dp
from sabot.cluster.protocol.version import PROTOCOL_VERSION
from sabot.cluster.security import ClusterKeys
from sabot.cluster.spool_client import SpoolClient, SpoolTransferError
from sabot.crc import crc32

KEYS = ClusterKeys.from_secret(b"k" * 32)
NAME = "spool/j-job-1/3.{:08x}.in"


@pytest.fixture
def server(tmp_path: Path) -> Iterator[SpoolServer]:
    ctx = zmq.Context()
    auth = transport.start_authenticator(ctx, KEYS)
    srv = SpoolServer(ctx, KEYS, tmp_path / "data", "127.0.0.1", 0, sync=True)
    srv.start()
    yield srv
    srv.stop()
    srv.join(5)
    auth.stop()
    ctx.term()


@pytest.fixture
def ctx() -> Iterator[zmq.Context]:
    c = zmq.Context()
    yield c
    c.term()


def client(ctx: zmq.Context, port: int, keys: ClusterKeys = KEYS, **kw: Any) -> SpoolClient:
    return SpoolClient(ctx, keys, f"tcp://127.0.0.1:{port}", **kw)


def test_a_file_goes_in_chunks_and_comes_back_whole(server: SpoolServer,
                                                    ctx: zmq.Context) -> None:
    blob = os.urandom(dp.CHUNK_BYTES * 2 + 12345)  # three requests each way
    crc = crc32(blob)
    name = NAME.format(crc)
    c = client(ctx, server.port)
    try:
        assert c.size_of(name) is None
        # given as parts, as a numpy morsel is (its header, then the array's memory)
        c.put(name, [blob[:100], memoryview(blob)[100:]], len(blob), crc)
        assert (server.data_dir / name).read_bytes() == blob
        assert c.size_of(name) == len(blob)
        assert bytes(c.get(name, len(blob), crc)) == blob
        assert server.bytes_in == len(blob) and server.bytes_out == len(blob)
        # nothing but the file itself is left (no temporary from the upload)
        assert sorted(p.name for p in (server.data_dir / name).parent.iterdir()) == \
            [Path(name).name]
    finally:
        c.close()


def test_bytes_other_than_described_are_refused_and_leave_no_file(server: SpoolServer,
                                                                  ctx: zmq.Context) -> None:
    blob = os.urandom(100_000)
    name = NAME.format(crc32(blob))
    c = client(ctx, server.port)
    try:
        with pytest.raises(SpoolTransferError) as err:
            c.put(name, [blob], len(blob), crc32(blob) ^ 1)
        assert err.value.code == dp.DAMAGED and name in str(err.value)
        assert not (server.data_dir / name).exists()
        assert list((server.data_dir / name).parent.iterdir()) == []
        # a got file that does not match its reference is found out too
        c.put(name, [blob], len(blob), crc32(blob))
        with pytest.raises(SpoolTransferError) as err:
            c.get(name, len(blob), crc32(blob) ^ 1)
        assert err.value.code == dp.DAMAGED and "is damaged" in str(err.value)
    finally:
        c.close()


@pytest.mark.parametrize("name", [
    "journal.db",                       # the journal itself
    "results/../journal.db",            # out of the results dir
    "spool/j-x/../../journal.db",
    "spool/.token",                     # the same-host proof
    "spool/j-x/1.0000000g.in",          # not a CRC
    "/etc/passwd",
])
def test_names_outside_the_spool_are_refused(server: SpoolServer, ctx: zmq.Context,
                                             name: str) -> None:
    (server.data_dir).mkdir(parents=True, exist_ok=True)
    (server.data_dir / "journal.db").write_bytes(b"secret")
    c = client(ctx, server.port)
    try:
        for call in (lambda: c.get(name, 6, crc32(b"secret")),
                     lambda: c.put(name, [b"x"], 1, crc32(b"x"))):
            with pytest.raises(SpoolTransferError) as err:
                call()
            assert err.value.code == dp.REFUSED, err.value
            assert "not accepted" in str(err.value) and "spool/j-<job>" in str(err.value)
        assert (server.data_dir / "journal.db").read_bytes() == b"secret"
        assert server.refused >= 2
    finally:
        c.close()


def test_another_protocol_version_is_refused_naming_both(server: SpoolServer,
                                                         ctx: zmq.Context) -> None:
    sock = transport.client_socket(ctx, KEYS, f"tcp://127.0.0.1:{server.port}")
    try:
        old = dp.request(b"stat", NAME.format(0), {})
        old[0] = old[0][:4] + (PROTOCOL_VERSION - 1).to_bytes(2, "big")
        sock.send_multipart(old)
        assert sock.poll(10_000)
        reply = sock.recv_multipart()
        with pytest.raises(dp.DataPortError) as err:
            dp.parse_reply(reply)
        assert err.value.code == dp.VERSION
        assert f"version {PROTOCOL_VERSION - 1}" in str(err.value)
        assert f"version {PROTOCOL_VERSION}" in str(err.value)
        # a malformed meta is refused too, and the port still serves
        sock.send_multipart([dp.head(), b"get", NAME.format(0).encode(), b"\xc1"])
        assert sock.poll(10_000)
        with pytest.raises(dp.DataPortError) as err:
            dp.parse_reply(sock.recv_multipart())
        assert err.value.code == dp.REFUSED
        sock.send_multipart(dp.request(b"get", NAME.format(0), {"offset": -1, "length": 1}))
        assert sock.poll(10_000)
        with pytest.raises(dp.DataPortError) as err:
            dp.parse_reply(sock.recv_multipart())
        assert err.value.code == dp.REFUSED and "'offset'" in str(err.value)
    finally:
        sock.close(0)


def test_another_clusters_key_gets_no_answer(server: SpoolServer, ctx: zmq.Context) -> None:
    stranger = client(ctx, server.port, ClusterKeys.from_secret(b"o" * 32), timeout_s=0.5,
                      tries=1)
    try:
        assert not stranger.reachable(timeout_s=0.5)
        with pytest.raises(SpoolTransferError) as err:
            stranger.size_of(NAME.format(0))
        assert err.value.code == dp.IO and "no answer" in str(err.value)
    finally:
        stranger.close()
    friend = client(ctx, server.port)
    try:
        assert friend.reachable()
    finally:
        friend.close()


class _CuttingRelay:
    """A TCP relay to the data port that cuts its first connection once ``cut_after`` bytes
    went through it towards the port (a network that drops a connection mid-transfer)."""

    def __init__(self, port: int, cut_after: int) -> None:
        self.target = port
        self.cut_after = cut_after
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = self.listener.getsockname()[1]
        self.connections = 0
        self.cuts = 0
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                down, _ = self.listener.accept()
            except OSError:
                return
            self.connections += 1
            up = socket.create_connection(("127.0.0.1", self.target))
            cut = self.connections == 1
            threading.Thread(target=self._pump, args=(down, up, cut), daemon=True).start()
            threading.Thread(target=self._pump, args=(up, down, False), daemon=True).start()

    def _pump(self, src: socket.socket, dst: socket.socket, cut: bool) -> None:
        moved = 0
        try:
            while True:
                data = src.recv(65536)
                if not data:
                    break
                moved += len(data)
                if cut and moved > self.cut_after:
                    self.cuts += 1
                    break
                dst.sendall(data)
        except OSError:
            pass
        for s in (src, dst):
            try:
                s.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            s.close()

    def close(self) -> None:
        self.listener.close()


def test_a_put_cut_mid_way_is_sent_again_and_lands_whole(server: SpoolServer,
                                                          ctx: zmq.Context) -> None:
    blob = os.urandom(dp.CHUNK_BYTES * 3)
    crc = crc32(blob)
    name = NAME.format(crc)
    relay = _CuttingRelay(server.port, cut_after=dp.CHUNK_BYTES + dp.CHUNK_BYTES // 2)
    c = client(ctx, relay.port, timeout_s=2.0, tries=4)
    try:
        c.put(name, [blob], len(blob), crc)
        assert relay.cuts == 1 and relay.connections >= 2
        assert (server.data_dir / name).read_bytes() == blob
        assert bytes(c.get(name, len(blob), crc)) == blob
    finally:
        c.close()
        relay.close()


def test_a_put_that_stops_half_way_leaves_no_file(server: SpoolServer,
                                                  ctx: zmq.Context) -> None:
    """A sender that dies mid-upload: its temporary file is there, under another name, and
    nothing takes the file's name (a resubmit puts it again)."""
    sock = transport.client_socket(ctx, KEYS, f"tcp://127.0.0.1:{server.port}")
    name = NAME.format(7)
    try:
        sock.send_multipart(dp.request(b"put", name, {"upload": "abc", "offset": 0},
                                       b"x" * 1000))
        assert sock.poll(10_000)
        meta, _ = dp.parse_reply(sock.recv_multipart())
        assert meta == {"size": 1000}
    finally:
        sock.close(0)
    folder = server.data_dir / Path(name).parent
    assert [p.name for p in folder.iterdir()] == [Path(name).name + ".up-abc.tmp"]
    assert not (server.data_dir / name).exists()
    assert msgpack.unpackb(dp.ok({"a": 1})[1]) == {"a": 1}


def test_a_last_put_sent_again_is_answered_as_done(server: SpoolServer,
                                                   ctx: zmq.Context) -> None:
    """The reply to an upload's last request was lost and the sender asks again: the file is in
    place, so the answer is ok (not "damaged", which a fresh upload of one chunk would be)."""
    blob = os.urandom(300_000)
    crc = crc32(blob)
    name = NAME.format(crc)
    sock = transport.client_socket(ctx, KEYS, f"tcp://127.0.0.1:{server.port}")
    try:
        first = dp.request(b"put", name, {"upload": "u1", "offset": 0}, blob[:200_000])
        last = dp.request(b"put", name, {"upload": "u1", "offset": 200_000, "last": True,
                                         "size": len(blob), "crc": crc}, blob[200_000:])
        for frames in (first, last, last):
            sock.send_multipart(frames)
            assert sock.poll(10_000)
            meta, _ = dp.parse_reply(sock.recv_multipart())
        assert meta == {"size": len(blob)}
        assert (server.data_dir / name).read_bytes() == blob
    finally:
        sock.close(0)


def test_a_coordinator_whose_data_port_stopped_is_not_healthy(tmp_path: Path) -> None:
    """The data port's thread gone while the core runs: peers elsewhere could not get their
    morsels' files, so /health says so (503) and /ready is false."""
    import asyncio
    import urllib.error
    import urllib.request

    from sabot.config import load_config
    from sabot.node.coordinator_node import CoordinatorNode

    config = load_config(env={}, mode="coordinator", host="127.0.0.1", port=0, zmq_port=0,
                         data_port=0, data_dir=str(tmp_path / "data"),
                         cluster_key_file=str(tmp_path / "key"))

    def get(port: int, path: str) -> tuple[int, dict[str, Any]]:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=10) as r:
                return r.status, json.loads(r.read())
        except urllib.error.HTTPError as exc:
            return exc.code, json.loads(exc.read())

    async def main() -> None:
        node = CoordinatorNode(config)
        await node.start()
        try:
            port = node.http_port
            status, health = await asyncio.to_thread(get, port, "/health")
            assert status == 200 and health["data_port"] > 0, health
            server = node.coordinator.core.data_server
            server.stop()
            await asyncio.to_thread(server.join, 10)
            status, health = await asyncio.to_thread(get, port, "/health")
            assert status == 503, health
            assert "data port" in health["problem"] and str(server.port) in health["problem"]
            status, ready = await asyncio.to_thread(get, port, "/ready")
            assert status == 503 and ready["ready"] is False
        finally:
            await node.stop()

    asyncio.run(main())


def test_a_workers_staging_copies_go_and_a_live_neighbours_stay(tmp_path: Path) -> None:
    """Workers on one host may share a data dir: each keeps its copies under its own node id;
    at its start and stop it removes its own, and those a dead worker left (untouched for
    SABOT_SPOOL_ORPHAN_S), never a live neighbour's."""
    from sabot.cluster.remote_spool import staging_dir, sweep_staging

    data = tmp_path / "data"
    mine, live, dead = (staging_dir(data, n) for n in ("w/1", "w-2", "w-3"))
    for d in (mine, live, dead):
        (d / "spool" / "j-x").mkdir(parents=True)
        (d / "spool" / "j-x" / "0.00000000.in").write_bytes(b"x")
    assert mine.name == "w_1"  # (a node id is never a path)
    old = time.time() - 7200
    os.utime(dead, (old, old))
    assert sweep_staging(data, "w/1", 3600) == 2
    assert not mine.exists() and not dead.exists()
    assert (live / "spool" / "j-x" / "0.00000000.in").exists()
