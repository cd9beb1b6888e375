"""CURVE authentication, handshake refusals and hostile frames against a real coordinator."""

from __future__ import annotations

import time

import msgpack
import pytest
import zmq
from sabot.cluster.protocol import HEADER, MAGIC, PROTOCOL_VERSION, Sender, decode, encode
from sabot.cluster.protocol import messages as m
from sabot.cluster.security import ClusterKeys, generate_secret, parse_secret


def _keys(cluster) -> ClusterKeys:
    return ClusterKeys.from_secret(parse_secret(
        (cluster.tmp / "cluster.key").read_text(), "key file"))


class RawPeer:
    """A bare pyzmq DEALER, as any-language client would use."""

    def __init__(self, cluster, *, client_keys: tuple[bytes, bytes] | None = None,
                 server_key: bytes | None = None, curve: bool = True) -> None:
        keys = _keys(cluster)
        self.ctx = zmq.Context()
        self.sock = self.ctx.socket(zmq.DEALER)
        self.sock.linger = 0
        if curve:
            public, secret = client_keys or (keys.client_public, keys.client_secret)
            self.sock.curve_serverkey = server_key or keys.server_public
            self.sock.curve_publickey = public
            self.sock.curve_secretkey = secret
        self.sock.connect(f"tcp://127.0.0.1:{cluster.zmq_port}")
        self.sender = Sender()

    def send(self, frames: list[bytes]) -> None:
        self.sock.send_multipart(frames)

    def send_msg(self, msg: m.Message) -> None:
        self.send(self.sender.encode(msg))

    def recv(self, timeout: float = 3.0) -> m.Message | None:
        if not self.sock.poll(int(timeout * 1000)):
            return None
        return decode(self.sock.recv_multipart()).msg

    def hello(self, **kw) -> m.Message | None:
        self.send_msg(m.Hello(kw.pop("version", PROTOCOL_VERSION),
                              kw.pop("cluster", "sabot-cluster"), "client", "raw-test"))
        return self.recv()

    def close(self) -> None:
        self.sock.close(0)
        self.ctx.term()


@pytest.fixture
def raw(lone_coordinator):
    peers: list[RawPeer] = []

    def make(**kw) -> RawPeer:
        peer = RawPeer(lone_coordinator, **kw)
        peers.append(peer)
        return peer

    yield make
    for p in peers:
        p.close()


def _wait_log(node, text: str, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if text in node.output:
            return
        time.sleep(0.05)
    raise AssertionError(f"coordinator log lacks {text!r}:\n{node.output[-3000:]}")


def test_a_worker_with_another_key_is_refused_on_both_sides(lone_coordinator):
    worker = lone_coordinator.start_worker(wait=False, SABOT_CLUSTER_KEY=generate_secret())
    assert worker.proc.wait(30) == 2
    worker.kill()
    assert "uses another cluster key" in worker.output
    # The key came from SABOT_CLUSTER_KEY: the message names that, not a key file it never read.
    assert "this node's key came from SABOT_CLUSTER_KEY" in worker.output
    assert "cluster.key" not in worker.output.split("uses another cluster key", 1)[1].split("\n")[0]
    _wait_log(lone_coordinator.coordinator, "CURVE handshake failed")
    assert lone_coordinator.alive_workers() == []


def test_a_peer_that_knows_only_the_public_server_key_is_refused(lone_coordinator, raw):
    public, secret = zmq.curve_keypair()
    peer = raw(client_keys=(public, secret))
    assert peer.hello() is None
    _wait_log(lone_coordinator.coordinator, "its CURVE client key is not derived")


def test_a_peer_without_curve_gets_nothing(lone_coordinator, raw):
    peer = raw(curve=False)
    assert peer.hello() is None


def test_another_protocol_version_is_refused_with_a_clear_message(lone_coordinator, raw):
    peer = raw()
    other = PROTOCOL_VERSION + 1
    peer.send(encode(m.Hello(other, "sabot-cluster", "client", "new-node"), 99, 1,
                     version=other))
    reply = peer.recv()
    assert isinstance(reply, m.Refused) and reply.code == "version_mismatch"
    assert f"version {PROTOCOL_VERSION}" in reply.message
    assert f"speaks {other}" in reply.message
    _wait_log(lone_coordinator.coordinator, "protocol version mismatch")


def test_a_worker_of_another_cluster_is_refused_on_both_sides(lone_coordinator):
    worker = lone_coordinator.start_worker(wait=False, CLUSTER_NAME="other-cluster")
    assert worker.proc.wait(30) == 2
    worker.kill()
    assert "cluster name mismatch" in worker.output and "other-cluster" in worker.output
    _wait_log(lone_coordinator.coordinator, "refused node")


def test_requests_sent_together_are_each_answered_and_a_bad_frame_among_them_alone_dropped(
        lone_coordinator, raw):
    peer = raw()
    assert isinstance(peer.hello(), m.Welcome)
    first, second = peer.sender.encode_many([m.GetStats(11), m.GetStatus(12, "no-such-job")])
    peer.send([first, b"junk", second])
    replies = [peer.recv(), peer.recv()]
    assert isinstance(replies[0], m.Stats) and replies[0].request_id == 11
    assert isinstance(replies[1], m.ErrorReply) and replies[1].request_id == 12
    assert replies[1].code == "job_not_found"
    _wait_log(lone_coordinator.coordinator, "less than its 24-byte header")


@pytest.mark.parametrize("credits, expected", [(0, 4), (-1, 4), (2, 2), (99, 4)])
def test_a_workers_first_credits_come_from_its_hello_within_its_slots(lone_coordinator, raw,
                                                                       credits, expected):
    peer = raw()
    node_id = f"raw-worker-{credits}"
    peer.send_msg(m.Hello(PROTOCOL_VERSION, "sabot-cluster", "worker", node_id, slots=4,
                          credits=credits))
    assert isinstance(peer.recv(), m.Welcome)
    node = next(n for n in lone_coordinator.http("/stats")["nodes"] if n["node_id"] == node_id)
    assert node["slots"] == 4 and node["credits"] == expected


def test_malformed_truncated_unknown_and_replayed_frames_are_dropped_and_logged(
        lone_coordinator, raw):
    peer = raw()
    assert isinstance(peer.hello(), m.Welcome)
    header = HEADER.pack(MAGIC, PROTOCOL_VERSION, m.GetStats.CODE, peer.sender.session, 1000)
    for frames in ([b"junk"], [header[:10]], [header + b"\xc1"], [header, b"two frames"],
                   [HEADER.pack(MAGIC, PROTOCOL_VERSION, 4242, peer.sender.session, 1001)
                    + msgpack.packb({})],
                   [header + msgpack.packb({"request_id": "x"})]):
        peer.send(frames)
    assert peer.recv(0.5) is None
    good = peer.sender.encode(m.GetStats(5))
    peer.send(good)
    reply = peer.recv()
    assert isinstance(reply, m.Stats) and reply.request_id == 5
    peer.send(good)  # the same frames again: a replay
    assert peer.recv(0.5) is None
    _wait_log(lone_coordinator.coordinator, "replayed")
    _wait_log(lone_coordinator.coordinator, "unknown message type 4242")
    # Still serving.
    peer.send_msg(m.GetStats(6))
    assert isinstance(peer.recv(), m.Stats)


def test_requests_before_hello_are_answered_with_unknown_session(raw):
    peer = raw()
    peer.send_msg(m.GetStats(1))
    reply = peer.recv()
    assert isinstance(reply, m.Refused) and reply.code == "unknown_session"
