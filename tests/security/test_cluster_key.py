"""The cluster key on real daemons: pickled code from a peer without the cluster key, or with a
wrong one, never runs; a worker with another key is refused with a clear message on both sides;
the key file is created owner-only; the secret (and the HTTP token) never appear in logs or in
anything the nodes serve.
"""

from __future__ import annotations

import os
import stat
import subprocess
import time
from pathlib import Path
from typing import Any, Iterator

import cloudpickle
import pytest
import zmq

import sabot_test_nodes as nodes
from sabot.cluster.protocol import PROTOCOL_VERSION, decode, encode, payload
from sabot.cluster.protocol import messages as m
from sabot.cluster.security import ClusterKeys, generate_secret, load_secret, parse_secret
from sabot.config import load_config

TOKEN = "http-token-never-logged-4d2a9e"


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    c = nodes.Cluster(tmp_path_factory.mktemp("key") / "cluster",
                      {"SABOT_HEARTBEAT_S": "0.2", "SABOT_NODE_TIMEOUT_S": "2"}, token=TOKEN)
    c.start_coordinator()
    c.add_worker()
    c.wait_workers(1)
    yield c
    c.stop()


def zmq_endpoint(cluster: Any) -> str:
    return f"tcp://127.0.0.1:{cluster.coordinator.request('GET', '/cluster').json['zmq_port']}"


class _Touch:
    """Unpickling this creates a file: proof that a pickle sent by the peer was loaded."""

    def __init__(self, path: str) -> None:
        self.path = path

    def __reduce__(self) -> tuple[Any, ...]:
        return (Path.touch, (Path(self.path),))


def peer(endpoint: str, keys: ClusterKeys | None, *, server_key: bytes | None = None
         ) -> tuple[zmq.Context, zmq.Socket]:
    ctx = zmq.Context()
    sock = ctx.socket(zmq.DEALER)
    sock.setsockopt(zmq.LINGER, 0)
    if keys is not None:
        sock.curve_serverkey = server_key or keys.server_public
        sock.curve_publickey = keys.client_public
        sock.curve_secretkey = keys.client_secret
    sock.connect(endpoint)
    return ctx, sock


def send_pickled_job(sock: zmq.Socket, job_id: str, func_pickle: bytes) -> list[m.Message]:
    """hello + a submit whose function is ``func_pickle``; the replies received within 3 s."""
    session = int.from_bytes(os.urandom(8), "big") | 1
    sock.send_multipart(encode(m.Hello(PROTOCOL_VERSION, "sabot-cluster", "client", "intruder"),
                               session, 1))
    kind, morsels = payload.split([1, 2, 3], 64 * 1024)
    sock.send_multipart(encode(m.SubmitJob(1, job_id, "fn", func_pickle, kind, morsels),
                               session, 2))
    replies: list[m.Message] = []
    deadline = time.monotonic() + 2
    while time.monotonic() < deadline:
        if sock.poll(100):
            replies.append(decode(sock.recv_multipart()).msg)
            if isinstance(replies[-1], (m.SubmitAck, m.ErrorReply)):
                break
    return replies


def job_known(cluster: Any, job_id: str) -> bool:
    return cluster.coordinator.request("GET", f"/job/{job_id}").status == 200


@pytest.mark.parametrize("who", ["no-curve", "wrong-key", "right-server-key-wrong-client"])
def test_pickled_code_from_a_peer_without_the_key_never_runs(cluster: Any, tmp_path: Path,
                                                             who: str) -> None:
    marker = tmp_path / f"pwned-{who}"
    endpoint = zmq_endpoint(cluster)
    right = ClusterKeys.from_secret(load_secret(
        load_config(env={}, cluster_key_file=str(cluster.key_file)), create=False))
    other = ClusterKeys.from_secret(parse_secret(generate_secret(), "test"))
    if who == "no-curve":
        ctx, sock = peer(endpoint, None)
    elif who == "wrong-key":
        ctx, sock = peer(endpoint, other)
    else:  # knows the coordinator's public key (it is no secret), not the client key
        ctx, sock = peer(endpoint, other, server_key=right.server_public)
    job_id = f"intruder-{who}"
    try:
        replies = send_pickled_job(sock, job_id, cloudpickle.dumps(_Touch(str(marker))))
    finally:
        sock.close(0)
        ctx.term()
    assert replies == [], replies  # nothing comes back to a peer that failed CURVE
    time.sleep(1.0)
    assert not marker.exists(), "a pickle from an unauthenticated peer was loaded"
    assert not job_known(cluster, job_id)
    if who != "no-curve":
        text = cluster.coordinator.log_text()
        assert "refused" in text and ("cluster key" in text or "CURVE" in text), \
            cluster.coordinator.log_tail()
    # The same path with the right key is accepted: the refusal above was the key's doing.
    ctx, sock = peer(endpoint, right)
    try:
        replies = send_pickled_job(sock, "insider-" + who, cloudpickle.dumps(lambda x: x + 1))
    finally:
        sock.close(0)
        ctx.term()
    assert any(isinstance(r, m.SubmitAck) for r in replies), replies
    assert cluster.coordinator.wait_job("insider-" + who)["result"] == [2, 3, 4]


def test_worker_with_another_key_is_refused_on_both_sides(cluster: Any, tmp_path: Path) -> None:
    other_key = tmp_path / "other.key"
    other_key.write_text(generate_secret() + "\n")
    other_key.chmod(0o600)
    intruder = cluster.add_worker(wait=False, SABOT_CLUSTER_KEY_FILE=str(other_key))
    try:
        intruder.proc.wait(60)  # type: ignore[union-attr]
    except subprocess.TimeoutExpired:
        pass
    text = intruder.log_text()
    assert "cluster key" in text.lower() or "SABOT_CLUSTER_KEY" in text, intruder.log_tail()
    # Refused for good: it exits non-zero instead of retrying forever.
    assert intruder.proc is not None and intruder.proc.returncode not in (None, 0), text
    pids = [n.get("pid") for n in cluster.coordinator.request("GET", "/nodes").json["nodes"]]
    assert intruder.pid not in pids
    assert "refused" in cluster.coordinator.log_text()
    intruder.stop()
    cluster.workers.remove(intruder)
    job = cluster.coordinator.wait_job(cluster.coordinator.submit([1, 2, 3]))
    assert job["result"] == [1, 4, 9]


def test_a_client_with_another_key_is_told_where_its_key_came_from(cluster: Any, tmp_path: Path
                                                                   ) -> None:
    import asyncio

    from sabot.cluster.client import ClusterClient
    from sabot.errors import AuthenticationError

    other_key = tmp_path / "client-other.key"
    other_key.write_text(generate_secret() + "\n")
    other_key.chmod(0o600)
    config = load_config({"SABOT_CLUSTER_KEY_FILE": str(other_key), "SABOT_AUTH_TOKEN": TOKEN})
    client = ClusterClient(config, "127.0.0.1", cluster.coordinator.http_port)

    async def connect() -> None:
        try:
            await client.connect()
        finally:
            await client.close()

    with pytest.raises(AuthenticationError) as err:
        asyncio.run(connect())
    assert "uses another cluster key" in str(err.value)
    assert f"came from SABOT_CLUSTER_KEY_FILE ({other_key})" in str(err.value)


def test_key_file_is_owner_only_and_secrets_never_shown(cluster: Any) -> None:
    mode = stat.S_IMODE(os.stat(cluster.key_file).st_mode)
    assert mode == 0o600, oct(mode)
    secret = cluster.key_file.read_text().strip()
    assert len(secret) in (40, 64)
    job = cluster.coordinator.wait_job(cluster.coordinator.submit([4]))
    assert job["result"] == [16]
    served = b""
    for path in ("/cluster", "/stats", "/nodes", "/jobs", "/metrics", "/health", "/",
                 "/openapi.json", f"/job/{job['job_id']}"):
        served += cluster.coordinator.request("GET", path).body
    worker = cluster.workers[0]
    for path in ("/health", "/metrics", "/stats"):
        served += nodes.http("GET", worker.url + path).body
    for name, value in (("cluster secret", secret), ("HTTP token", TOKEN)):
        assert value.encode() not in served, f"the {name} is served over HTTP"
        for node in [cluster.coordinator, *cluster.workers]:
            assert value not in node.log_text(), f"the {name} is in {node.name}'s log"


def test_secret_given_in_the_environment_is_never_logged(tmp_path: Path) -> None:
    secret = generate_secret()
    c = nodes.Cluster(tmp_path / "cluster", {"SABOT_CLUSTER_KEY": secret, "LOG_LEVEL": "DEBUG",
                                              "SABOT_HEARTBEAT_S": "0.2"})
    try:
        c.start_coordinator()
        c.add_worker()
        c.wait_workers(1)
        job = c.coordinator.wait_job(c.coordinator.submit([1, 2]))
        assert job["result"] == [1, 4]
        assert not c.key_file.exists()  # the environment's key is used, no file is made
        for node in [c.coordinator, *c.workers]:
            assert secret not in node.log_text(), node.name
            # nor the key derived from it that is secret
            keys = ClusterKeys.from_secret(parse_secret(secret, "test"))
            for derived in (keys.server_secret, keys.client_secret):
                assert derived.decode() not in node.log_text(), node.name
    finally:
        c.stop()
