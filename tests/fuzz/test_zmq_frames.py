"""Malformed ZeroMQ traffic to a real coordinator and a real worker (daemon processes).

The sender holds the cluster key (the worst case: a buggy or hostile peer that passed CURVE), and
sends hypothesis-generated garbage, every truncation of valid messages, wrong protocol versions,
unknown message types, wrong field types, messages out of place and replayed messages. Each is
rejected and logged; the node keeps serving: a real job completes with the right result
afterwards, and no worker is lost.

Frames are built with the protocol's own codec (``encode``), and mutated from there, so the tests
follow the wire format wherever the protocol package puts it.
"""

from __future__ import annotations

import http.server
import json
import os
import threading
import time
from pathlib import Path
from typing import Any, Iterator

import cloudpickle
import msgpack
import numpy as np
import pyarrow as pa
import pytest
import zmq
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import sabot_test_nodes as nodes
from sabot.cluster.protocol import HEADER, MAGIC, PROTOCOL_VERSION, REGISTRY, encode
from sabot.cluster.protocol import messages as m
from sabot.cluster.protocol import payload
from sabot.cluster.security import ClusterKeys, load_secret
from sabot.config import load_config


def cluster_keys(key_file: Path) -> ClusterKeys:
    return ClusterKeys.from_secret(load_secret(load_config(env={}, cluster_key_file=str(key_file)),
                                               create=False))


def with_header(frames: list[bytes], *, version: int | None = None, code: int | None = None,
                session: int | None = None, seq: int | None = None,
                magic: bytes | None = None) -> list[bytes]:
    """The same message with some header fields replaced (the header starts the first frame)."""
    mg, v, c, s, q = HEADER.unpack_from(frames[0])
    head = HEADER.pack(magic if magic is not None else mg, v if version is None else version,
                       c if code is None else code, s if session is None else session,
                       q if seq is None else seq)
    return [head + frames[0][HEADER.size:]] + list(frames[1:])


def truncations(frames: list[bytes]) -> Iterator[list[bytes]]:
    """Every way of cutting the message short: frames dropped, the last kept frame cut."""
    for i, frame in enumerate(frames):
        step = max(1, len(frame) // 40)
        for cut in range(0, len(frame), step):
            yield list(frames[:i]) + [frame[:cut]] if i or cut else [b""]


class Attacker:
    """A CURVE-authenticated DEALER on the coordinator's endpoint."""

    def __init__(self, endpoint: str, keys: ClusterKeys) -> None:
        self.ctx, self.sock, self.session = nodes.curve_dealer(endpoint, keys)
        self.seq = 0
        self.sent = 0

    def frames(self, msg: m.Message, **kw: Any) -> list[bytes]:
        self.seq += 1
        return encode(msg, kw.pop("session", self.session), kw.pop("seq", self.seq), **kw)

    def send(self, frames: list[bytes]) -> None:
        self.sock.send_multipart([bytes(f) for f in frames])
        self.sent += 1

    def replies(self, wait_s: float = 0.3) -> list[m.Message]:
        out = []
        while self.sock.poll(int(wait_s * 1000)):
            out += nodes.decode_all(self.sock.recv_multipart())
            wait_s = 0.05
        return out

    def request(self, msg: m.Message, wait_s: float = 10) -> m.Message:
        self.send(self.frames(msg))
        deadline = time.monotonic() + wait_s
        while time.monotonic() < deadline:
            if self.sock.poll(100):
                for reply in nodes.decode_all(self.sock.recv_multipart()):
                    if getattr(reply, "request_id", None) == getattr(msg, "request_id", None):
                        return reply
        raise AssertionError(f"no reply to {msg.OP}")

    def close(self) -> None:
        self.sock.close(0)
        self.ctx.term()


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    # One cluster for the coordinator tests: each ends by checking that it still serves.
    c = nodes.Cluster(tmp_path_factory.mktemp("zmq") / "cluster",
                      {"SABOT_HEARTBEAT_S": "0.2", "SABOT_NODE_TIMEOUT_S": "2"})
    c.start_coordinator()
    c.add_worker()
    c.wait_workers(1)
    yield c
    c.stop()


@pytest.fixture
def attacker(cluster: Any) -> Iterator[Attacker]:
    info = cluster.coordinator.request("GET", "/cluster").json
    a = Attacker(f"tcp://127.0.0.1:{info['zmq_port']}", cluster_keys(cluster.key_file))
    yield a
    a.close()


def client_hello(a: Attacker, **kw: Any) -> list[bytes]:
    return a.frames(m.Hello(PROTOCOL_VERSION, "sabot-cluster", "client", "fuzz-client"), **kw)


def assert_cluster_serves(cluster: Any, workers: int = 1) -> None:
    assert cluster.coordinator.running(), cluster.logs()
    job_id = cluster.coordinator.submit(list(range(500)), "square")
    job = cluster.coordinator.wait_job(job_id, timeout=120)
    assert job["status"] == "completed", job
    assert job["result"] == [i * i for i in range(500)]
    assert len(cluster.alive_workers()) >= workers, cluster.logs()
    assert all(w.running() for w in cluster.workers), cluster.logs()


def protocol_errors(cluster: Any) -> int:
    return int(cluster.coordinator.request("GET", "/stats").json["counters"]["protocol_errors"])


# -- the coordinator ------------------------------------------------------------------------------
def test_coordinator_rejects_malformed_frames_and_keeps_serving(cluster: Any,
                                                                attacker: Attacker) -> None:
    before = protocol_errors(cluster)
    a = attacker
    hello = client_hello(a)
    stats = a.frames(m.GetStats(7))
    bad: list[list[bytes]] = []
    # truncated messages
    bad += list(truncations(hello))
    bad += list(truncations(stats))
    # wrong magic, unknown message types, zero session / sequence
    bad.append(with_header(stats, magic=b"XXXX"))
    used = set(REGISTRY)
    bad += [with_header(stats, code=c) for c in (0, 12, 19, 30, 999, 65535) if c not in used]
    bad.append(with_header(stats, session=0))
    bad.append(with_header(stats, seq=0))
    # wrong versions on a message that is not a hello
    bad += [with_header(stats, version=v) for v in (0, PROTOCOL_VERSION + 1, 65535)]
    # a valid header over a body that is not msgpack, not a map, or has wrong field types
    head = stats[0][:HEADER.size]
    for body in (b"\xc1", b"\x92\x01", msgpack.packb([1, 2]), msgpack.packb({"request_id": "x"}),
                 msgpack.packb({}), msgpack.packb({"request_id": 2**64 - 1}), msgpack.packb({"request_id": -1}), b"\xdd\xff\xff\xff\xff"):
        bad.append([head + body] if len(stats) == 1 else [head, body])
    # extra frames
    bad.append(list(stats) + [b"extra"])
    for frames in bad:
        a.send(frames)
    time.sleep(0.5)
    after = protocol_errors(cluster)
    assert after - before >= len(bad) * 0.9, (before, after, len(bad))
    assert "rejected a message" in cluster.coordinator.log_text()
    assert_cluster_serves(cluster)


def test_coordinator_refuses_wrong_versions_and_out_of_place_messages(
        cluster: Any, attacker: Attacker) -> None:
    a = attacker
    # A hello of another version is answered with a clear refusal (hello is versionless):
    # also version 3, the last one before the spool's references (a peer of that version
    # would take a `spool` morsel for data), and 4, the last one before the data port (a
    # worker of that version elsewhere would be sent references it cannot read).
    for version in (0, 3, 4, 5, PROTOCOL_VERSION + 1):
        a.send(a.frames(m.Hello(version, "sabot-cluster", "worker", "old-node"), version=version))
        replies = a.replies(1.0)
        assert any(isinstance(r, m.Refused) and r.code == "version_mismatch" for r in replies), \
            replies
    # Another cluster's hello is refused by name.
    a.send(a.frames(m.Hello(PROTOCOL_VERSION, "other-cluster", "worker", "stranger")))
    assert any(isinstance(r, m.Refused) and r.code == "cluster_mismatch" for r in a.replies(1.0))
    # A request before hello: refused, asking for hello.
    fresh = Attacker(a.sock.getsockopt_string(zmq.LAST_ENDPOINT), cluster_keys(cluster.key_file))
    try:
        fresh.send(fresh.frames(m.GetStats(1)))
        assert any(isinstance(r, m.Refused) for r in fresh.replies(1.0))
    finally:
        fresh.close()
    # After hello, messages only a coordinator sends are rejected, not obeyed.
    a.send(client_hello(a))
    assert any(isinstance(r, m.Welcome) for r in a.replies(1.0))
    a.send(a.frames(m.Welcome("fake", "sabot-cluster", PROTOCOL_VERSION, 0.1, 0.1)))
    a.send(a.frames(m.Assign("j", 0, 1, 0, "square", None, "msgpack", msgpack.packb([1]))))
    a.send(a.frames(m.MorselResult("no-such-job", 0, 1, 1, "msgpack", msgpack.packb([1]))))
    a.send(a.frames(m.HeartbeatAck(1.0)))
    assert_cluster_serves(cluster)


def test_coordinator_ignores_replayed_messages(cluster: Any, attacker: Attacker) -> None:
    a = attacker
    a.send(client_hello(a))
    assert any(isinstance(r, m.Welcome) for r in a.replies(1.0))
    stats = a.frames(m.GetStats(41))
    a.send(stats)
    first = a.replies(1.0)
    assert sum(isinstance(r, m.Stats) for r in first) == 1, first
    before = protocol_errors(cluster)
    for _ in range(5):
        a.send(stats)  # the very same frames again
    replayed = a.replies(1.0)
    assert not any(isinstance(r, m.Stats) for r in replayed), replayed
    assert protocol_errors(cluster) - before == 5
    # A replayed submit does not create a second job either.
    job_id = "replayed-submit-job-0001"
    kind, morsels = payload.split(list(range(50)), 64 * 1024)
    submit = a.frames(m.SubmitJob(42, job_id, "square", None, kind, morsels))
    a.send(submit)
    a.send(submit)
    acks = [r for r in a.replies(1.0) if isinstance(r, m.SubmitAck)]
    assert len(acks) == 1, acks
    job = cluster.coordinator.wait_job(job_id, timeout=60)
    assert job["result"] == [i * i for i in range(50)]
    jobs = cluster.coordinator.request("GET", "/jobs").json["jobs"]
    assert [j["job_id"] for j in jobs].count(job_id) == 1
    assert_cluster_serves(cluster)


def test_coordinator_survives_hostile_submits(cluster: Any, attacker: Attacker) -> None:
    """Well-formed submits with lies inside (item counts, encodings, a pickle that is not one):
    refused or failed with a reason; the cluster keeps its workers and serves the next job."""
    a = attacker
    a.send(client_hello(a))
    a.replies(1.0)
    cases = {
        "bad-encoding": m.SubmitJob(2, "lie-encoding", "square", None, "list",
                                    [["exe", 1, b"\x00"]]),
        "not-msgpack": m.SubmitJob(3, "lie-data", "square", None, "list",
                                   [["msgpack", 3, b"\xc1\xc1\xc1"]]),
        "not-arrow": m.SubmitJob(4, "lie-arrow", "square", None, "arrow-array",
                                 [["arrow-array", 3, b"ARROW1garbage"]]),
        "not-a-pickle": m.SubmitJob(5, "lie-pickle", "fn", b"\x80\x05garbage", "list",
                                    [["msgpack", 2, msgpack.packb([1, 2])]]),
        "bad-kind": m.SubmitJob(6, "lie-kind", "square", None, "dataframe",
                                [["msgpack", 1, msgpack.packb([1])]]),
        "unknown-processor": m.SubmitJob(7, "lie-proc", "os.system", None, "list",
                                         [["msgpack", 1, msgpack.packb(["id"])]]),
    }
    accepted = []
    for name, msg in cases.items():
        reply = a.request(msg)
        if isinstance(reply, m.SubmitAck):
            accepted.append((name, msg.job_id))
        else:
            assert isinstance(reply, m.ErrorReply) and reply.message, (name, reply)
    for name, job_id in accepted:
        job = cluster.coordinator.job(job_id)
        deadline = time.monotonic() + 90
        while job["status"] not in ("completed", "failed", "cancelled"):
            assert time.monotonic() < deadline, job
            time.sleep(0.1)
            job = cluster.coordinator.job(job_id)
        # A lie is caught (the job fails with a reason); it never "completes" with a result
        # that does not match its own item count.
        assert job["status"] == "failed" and job["error"], (name, job)
    assert_cluster_serves(cluster)


def test_coordinator_catches_an_item_count_lie(cluster: Any, attacker: Attacker) -> None:
    """A submit whose morsel claims more (or fewer) items than its data holds is refused with a
    reply naming the morsel and both counts; the coordinator keeps serving."""
    a = attacker
    a.send(client_hello(a))
    a.replies(1.0)
    for rid, (job_id, claimed, enc, data) in enumerate([
            ("lie-count", 10**12, "msgpack", msgpack.packb([1, 2])),
            ("lie-count-low", 1, "msgpack", msgpack.packb([1, 2, 3])),
            ("lie-count-npy", 9, *payload.encode_value(np.arange(4))),
            ("lie-count-arrow", 2**40, *payload.encode_value(pa.array([1, 2])))], start=1):
        reply = a.request(m.SubmitJob(rid, job_id, "square", None, "list",
                                      [["msgpack", 2, msgpack.packb([5, 6])],
                                       [enc, claimed, data]]))
        assert isinstance(reply, m.ErrorReply), (job_id, reply)
        assert reply.code == "bad_request" and "morsel 1 claims" in reply.message, reply
        assert f"{claimed}" in reply.message, reply
        # Refused, not journaled: the job does not exist.
        assert cluster.coordinator.request("GET", f"/job/{job_id}").status == 404
    assert_cluster_serves(cluster)


def test_a_pickle_item_count_lie_fails_the_job(cluster: Any, attacker: Attacker) -> None:
    """A pickle morsel cannot be counted without unpickling it, so the coordinator compares the
    count the worker decoded: the job fails naming both counts, it never completes with a
    result shorter than its own item count."""
    a = attacker
    a.send(client_hello(a))
    a.replies(1.0)
    enc, data = payload.encode_items([(1, 2), (3, 4)])
    assert enc == "pickle"
    reply = a.request(m.SubmitJob(1, "lie-count-pickle", "len", cloudpickle.dumps(len), "list",
                                  [["pickle", 1000, data]]))
    assert isinstance(reply, m.SubmitAck), reply
    job = cluster.coordinator.job("lie-count-pickle")
    deadline = time.monotonic() + 60
    while job["status"] not in ("completed", "failed", "cancelled"):
        assert time.monotonic() < deadline, job
        time.sleep(0.1)
        job = cluster.coordinator.job("lie-count-pickle")
    assert job["status"] == "failed", job
    assert "submitted as 1000 item(s)" in job["error"] and "decoded 2" in job["error"], job
    assert_cluster_serves(cluster)


@settings(max_examples=150, deadline=None, database=None, derandomize=True,
          suppress_health_check=list(HealthCheck))
@given(frames=st.lists(st.one_of(
    st.binary(max_size=300),
    st.builds(lambda v, c, s, q, body: HEADER.pack(MAGIC, v, c, s, q) + body,
              st.integers(0, 65535), st.integers(0, 65535), st.integers(0, 2**64 - 1),
              st.integers(0, 2**64 - 1), st.binary(max_size=200)),
    st.builds(lambda c, body: HEADER.pack(MAGIC, PROTOCOL_VERSION, c, 1, 1)
              + msgpack.packb(body), st.sampled_from(sorted(REGISTRY)),
              st.dictionaries(st.text(max_size=20), st.one_of(
                  st.none(), st.booleans(), st.integers(-2**63, 2**64 - 1), st.floats(),
                  st.text(max_size=30),
                  st.binary(max_size=30),
                  st.lists(st.integers(-2**63, 2**64 - 1), max_size=5)), max_size=8)),
), min_size=1, max_size=3))
def test_hypothesis_frames_to_the_coordinator(shared_target: dict[str, Any],
                                              frames: list[bytes]) -> None:
    shared_target["attacker"].send(frames)


@pytest.fixture(scope="module")
def shared_target(cluster: Any) -> Iterator[dict[str, Any]]:
    info = cluster.coordinator.request("GET", "/cluster").json
    a = Attacker(f"tcp://127.0.0.1:{info['zmq_port']}", cluster_keys(cluster.key_file))
    try:
        yield {"cluster": cluster, "attacker": a}
        # After everything hypothesis sent, the cluster still serves.
        time.sleep(0.5)
        assert protocol_errors(cluster) > 0
        assert_cluster_serves(cluster)
    finally:
        a.close()


# -- a worker --------------------------------------------------------------------------------------
class FakeCoordinator:
    """Serves GET /cluster and a CURVE ROUTER with the cluster's keys, so a real worker connects
    here; the test then talks to the worker as its coordinator."""

    def __init__(self, keys: ClusterKeys) -> None:
        self.ctx = zmq.Context()
        self.router = self.ctx.socket(zmq.ROUTER)
        self.router.curve_server = True
        self.router.curve_secretkey = keys.server_secret
        self.router.curve_publickey = keys.server_public
        self.router.setsockopt(zmq.LINGER, 0)
        self.zmq_port = self.router.bind_to_random_port("tcp://127.0.0.1")
        info = {"cluster_name": "sabot-cluster", "protocol_version": PROTOCOL_VERSION,
                "coordinator_id": "fake", "zmq_port": self.zmq_port,
                "curve_server_key": keys.server_public.decode(),
                "key_fingerprint": keys.fingerprint, "heartbeat_s": 0.2, "node_timeout_s": 30}
        body = json.dumps(info).encode()

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self) -> None:  # noqa: N802 (http.server's name)
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args: Any) -> None:
                pass

        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.http_port = self.httpd.server_address[1]
        self._thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self._thread.start()
        self.session = int.from_bytes(os.urandom(8), "big") | 1
        self.seq = 0
        self.peer: bytes | None = None
        self.inbox: list[m.Message] = []

    def frames(self, msg: m.Message, **kw: Any) -> list[bytes]:
        self.seq += 1
        return encode(msg, kw.pop("session", self.session), kw.pop("seq", self.seq), **kw)

    def send(self, frames: list[bytes]) -> None:
        assert self.peer is not None
        self.router.send_multipart([self.peer, *[bytes(f) for f in frames]])

    def recv(self, wait_s: float) -> m.Message | None:
        if not self.inbox:
            if not self.router.poll(int(wait_s * 1000)):
                return None
            peer, *frames = self.router.recv_multipart()
            self.peer = peer
            self.inbox = nodes.decode_all(frames)
        return self.inbox.pop(0)

    def wait_for(self, kind: type, wait_s: float = 30) -> Any:
        deadline = time.monotonic() + wait_s
        seen = []
        while time.monotonic() < deadline:
            msg = self.recv(0.2)
            if isinstance(msg, kind):
                return msg
            if msg is not None:
                seen.append(msg.OP)
        raise AssertionError(f"no {getattr(kind, '__name__', kind)} from the worker "
                             f"(saw {seen})")

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()
        self._thread.join(10)
        self.router.close(0)
        self.ctx.term()


def _worker_of_a_fake_coordinator(tmp_path: Path, settings: dict[str, str] | None = None
                                  ) -> tuple[FakeCoordinator, Any]:
    """A fake coordinator and a real worker process (not started) configured to join it."""
    root = tmp_path / "cluster"
    c = nodes.Cluster(root, {"SABOT_HEARTBEAT_S": "0.2", "SABOT_NODE_TIMEOUT_S": "30",
                             **(settings or {})})
    # The worker needs a key file that exists: make the cluster's key as a coordinator would.
    load_secret(load_config(env={}, cluster_key_file=str(c.key_file)), create=True)
    fake = FakeCoordinator(cluster_keys(c.key_file))
    worker = nodes.NodeProcess("worker", {**c._base_env(), "SABOT_MODE": "worker",
                                          "SABOT_WORKER_PORT": str(nodes.free_port()),
                                          "COORDINATOR_HOST": "127.0.0.1",
                                          "COORDINATOR_PORT": str(fake.http_port),
                                          "SABOT_DATA_DIR": str(root / "w")},
                               0, root)
    worker.http_port = int(worker.env["SABOT_WORKER_PORT"])
    worker.url = f"http://127.0.0.1:{worker.http_port}"
    return fake, worker


def test_worker_rejects_malformed_frames_and_keeps_serving(tmp_path: Path) -> None:
    fake, worker = _worker_of_a_fake_coordinator(tmp_path)
    try:
        worker.start()
        hello = fake.wait_for(m.Hello)
        assert hello.role == "worker"
        # Garbage before the welcome: the worker keeps waiting for a real answer.
        heartbeat_ack = fake.frames(m.HeartbeatAck(1.0))
        junk = list(truncations(heartbeat_ack)) + [
            [b"\x00" * 3], [b"SABT"], with_header(heartbeat_ack, magic=b"EVIL"),
            with_header(heartbeat_ack, code=999), with_header(heartbeat_ack, version=65535),
            [heartbeat_ack[0][:HEADER.size] + b"\xc1"]]
        for frames in junk:
            fake.send(frames)
        fake.send(fake.frames(m.Welcome("fake", "sabot-cluster", PROTOCOL_VERSION, 0.2, 30.0)))
        fake.wait_for(m.Heartbeat)
        # Garbage during the session, a replay, and messages only workers send.
        for frames in junk:
            fake.send(frames)
        fake.send(heartbeat_ack)  # replayed: seen before the welcome? no: first time here
        fake.send(heartbeat_ack)  # now a replay
        fake.send(fake.frames(m.SubmitJob(1, "x", "square", None, "list", [])))
        fake.send(fake.frames(m.Assign("bad", 0, 1, 0, "square", None, "msgpack", b"\xc1")))
        fake.send(fake.frames(m.Assign("bad2", 0, 1, 0, "no_such_processor", None, "msgpack",
                                       msgpack.packb([1]))))
        fake.send(fake.frames(m.Assign("bad3", 0, 1, 0, "fn", b"\x80\x05junk", "msgpack",
                                       msgpack.packb([1]))))
        # It still serves: a real morsel comes back right.
        fake.send(fake.frames(m.Assign("good", 0, 1, 0, "square", None, "msgpack",
                                       msgpack.packb(list(range(20))))))
        deadline = time.monotonic() + 60
        outcome: dict[str, Any] = {}
        while "good" not in outcome and time.monotonic() < deadline:
            msg = fake.recv(0.2)
            if isinstance(msg, (m.MorselResult, m.MorselFailed)):
                outcome[msg.job_id] = msg
        good = outcome.get("good")
        assert isinstance(good, m.MorselResult), (outcome, worker.log_tail())
        assert list(payload.decode_value(good.encoding, good.data)) == [i * i for i in range(20)]
        for job_id in ("bad", "bad2", "bad3"):
            if job_id in outcome:  # bad morsels fail with a reason, they never succeed
                assert isinstance(outcome[job_id], m.MorselFailed), outcome[job_id]
        assert worker.running()
        assert nodes.http("GET", worker.url + "/health").status == 200
        assert "rejected a message" in worker.log_text()
    finally:
        worker.stop()
        fake.close()


def test_worker_runs_assignments_that_came_with_the_welcome(tmp_path: Path) -> None:
    """A worker that registers while work is queued gets its welcome and first assignments in
    one ZeroMQ message; it runs them at once, not when some later message (a heartbeat ack,
    which this fake coordinator never sends) wakes its reader."""
    fake, worker = _worker_of_a_fake_coordinator(tmp_path)
    try:
        worker.start()
        assert fake.wait_for(m.Hello).role == "worker"
        fake.send([*fake.frames(m.Welcome("fake", "sabot-cluster", PROTOCOL_VERSION, 0.2, 30.0)),
                   *fake.frames(m.Assign("first", 0, 1, 0, "square", None, "msgpack",
                                         msgpack.packb([1, 2, 3]))),
                   *fake.frames(m.Assign("first", 1, 1, 3, "square", None, "msgpack",
                                         msgpack.packb([4, 5])))])
        results = {}
        deadline = time.monotonic() + 30  # far beyond a morsel; the worker's timeout is 30 s
        while len(results) < 2 and time.monotonic() < deadline:
            msg = fake.recv(0.2)
            if isinstance(msg, (m.MorselResult, m.MorselFailed)):
                results[msg.morsel] = msg
        assert sorted(results) == [0, 1], (results, worker.log_tail())
        assert payload.decode_value(results[0].encoding, results[0].data) == [1, 4, 9]
        assert payload.decode_value(results[1].encoding, results[1].data) == [16, 25]
    finally:
        worker.stop()
        fake.close()


def test_worker_sends_a_big_result_in_chunks_with_its_heartbeats_between_them(
        tmp_path: Path) -> None:
    """A 40 MB result goes as result-chunk messages of CHUNK_BYTES: no more than CHUNK_WINDOW
    before the coordinator acknowledges one, the worker's heartbeats go on meanwhile (one big
    message held them back for seconds), each acknowledgement lets one more go, and the chunks
    join into the result, its size and CRC-32 in the last one."""
    import zlib

    fake, worker = _worker_of_a_fake_coordinator(tmp_path, nodes.CHAOS_SETTINGS)
    procs = nodes.chaos_procs()
    try:
        worker.start()
        assert fake.wait_for(m.Hello).role == "worker"
        # (a coordinator that takes chunks says so in its welcome)
        fake.send(fake.frames(m.Welcome("fake", "sabot-cluster", PROTOCOL_VERSION, 0.2, 30.0,
                                        m.CHUNK_BYTES)))
        (item,) = procs.make_big_items(1, 40 << 20)
        fake.send(fake.frames(m.Assign("big", 0, 1, 0, "chaos_big", None, "msgpack",
                                       msgpack.packb([item]))))
        chunks: list[m.ResultChunk] = []
        while len(chunks) < m.CHUNK_WINDOW:
            msg = fake.wait_for((m.ResultChunk, m.MorselResult), wait_s=60)
            assert isinstance(msg, m.ResultChunk), f"sent as one {msg.OP}"
            chunks.append(msg)
        # Nothing acknowledged: the worker waits, and its heartbeats keep coming (two of them
        # after the window, with no chunk among them).
        for _ in range(2):
            msg = fake.wait_for((m.Heartbeat, m.ResultChunk))
            assert isinstance(msg, m.Heartbeat), f"chunk {msg.index} before any ack"
        acked = -1
        while not chunks[-1].final:
            # Each acknowledgement of the oldest chunk lets exactly one more go.
            acked += 1
            fake.send(fake.frames(m.ResultChunkAck("big", 0, 1, acked)))
            msg = fake.wait_for(m.ResultChunk, wait_s=60)
            assert msg.index == acked + m.CHUNK_WINDOW, (msg.index, acked)
            chunks.append(msg)
        assert [c.index for c in chunks] == list(range(len(chunks)))
        assert all(len(c.data) == m.CHUNK_BYTES for c in chunks[:-1])
        data = b"".join(bytes(c.data) for c in chunks)
        last = chunks[-1]
        assert (last.size, last.crc, last.items, last.attempt) == (len(data), zlib.crc32(data),
                                                                   1, 1)
        assert payload.decode_value(last.encoding, data) == [procs.big_answer(item)]
        assert len(chunks) == -(-len(data) // m.CHUNK_BYTES) >= 10
        assert worker.running()
    finally:
        worker.stop()
        fake.close()
