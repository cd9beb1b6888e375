"""A worker whose connection resets says hello again from a new socket (what a real worker does
after a network blip, see test_network_partition.py). Morsels the coordinator had sent to the old
session never reach the new one: they must be handed out again, or the job waits forever.

Deterministic form of the race: a protocol-level worker (the test, holding the cluster key)
takes morsels, drops them as a cut link would, re-registers under the same node id from a new
socket, and from then on computes every morsel it gets (``square``) and answers. A real worker
runs beside it. The job must complete with every result exactly once.
"""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Any, Iterator

import pytest

import sabot_test_nodes as nodes
from sabot.cluster.protocol import PROTOCOL_VERSION, encode, payload
from sabot.cluster.protocol import messages as m
from sabot.cluster.security import ClusterKeys, load_secret
from sabot.config import load_config


class ProtocolWorker:
    """One session of a minimal worker speaking the wire protocol."""

    def __init__(self, endpoint: str, keys: ClusterKeys, node_id: str) -> None:
        self.ctx, self.sock, self.session = nodes.curve_dealer(endpoint, keys)
        self.seq = 0
        self.node_id = node_id
        self.inbox: list[m.Message] = []

    def send(self, msg: m.Message) -> None:
        self.seq += 1
        self.sock.send_multipart(encode(msg, self.session, self.seq))

    def hello(self, slots: int) -> None:
        self.send(m.Hello(PROTOCOL_VERSION, "sabot-cluster", "worker", self.node_id,
                          host="127.0.0.1", pid=os.getpid(), cores=1, slots=slots,
                          processors=["square"]))
        self.send(m.Credit(slots))

    def recv(self, wait_s: float) -> m.Message | None:
        if not self.inbox:
            if not self.sock.poll(int(wait_s * 1000)):
                return None
            self.inbox = nodes.decode_all(self.sock.recv_multipart())
        return self.inbox.pop(0)

    def close(self) -> None:
        self.sock.close(0)
        self.ctx.term()


@pytest.fixture
def cluster(tmp_path: Path) -> Iterator[Any]:
    c = nodes.Cluster(tmp_path / "cluster", {"SABOT_HEARTBEAT_S": "0.2",
                                              "SABOT_NODE_TIMEOUT_S": "3", "MORSEL_SIZE_KB": "1"})
    c.start_coordinator()
    yield c
    c.stop()


def test_morsels_of_a_reset_session_are_handed_out_again(cluster: Any) -> None:
    info = cluster.coordinator.request("GET", "/cluster").json
    endpoint = f"tcp://127.0.0.1:{info['zmq_port']}"
    keys = ClusterKeys.from_secret(load_secret(
        load_config(env={}, cluster_key_file=str(cluster.key_file)), create=False))
    node_id = "protocol-worker-1"
    first = ProtocolWorker(endpoint, keys, node_id)
    second: ProtocolWorker | None = None
    try:
        first.hello(slots=4)
        assert isinstance(first.recv(5), m.Welcome)
        data = list(range(3000))
        job_id = cluster.coordinator.submit(data, "square")
        # The first session takes morsels, then its link "breaks": they are never answered.
        dropped = 0
        deadline = time.monotonic() + 20
        while dropped < 4 and time.monotonic() < deadline:
            msg = first.recv(0.2)
            dropped += isinstance(msg, m.Assign)
        assert dropped == 4, "the coordinator never gave the protocol worker its morsels"
        # Same node, new socket and session: what a worker does when it reconnects.
        second = ProtocolWorker(endpoint, keys, node_id)
        second.hello(slots=4)
        cluster.add_worker()  # a real worker beside it
        answered = 0
        # The new session stays healthy (heartbeats, answers) all along, so nothing but the
        # re-hello can tell the coordinator that the first session's morsels are gone.
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline:
            job = cluster.coordinator.job(job_id)
            if job["status"] in ("completed", "failed", "cancelled"):
                break
            msg = second.recv(0.1)
            if isinstance(msg, m.Assign):
                items = payload.decode_value(msg.encoding, msg.data)
                enc, blob = payload.encode_value([x * x for x in items])
                second.send(m.MorselResult(msg.job_id, msg.morsel, msg.attempt, len(items),
                                           enc, blob))
                second.send(m.Credit(4))
                answered += 1
            elif isinstance(msg, m.HeartbeatAck) or msg is None:
                second.send(m.Heartbeat(0, 0))
        job = cluster.coordinator.job(job_id)
        assert job["status"] == "completed", (
            "the morsels sent to the reset session were never handed out again", job,
            cluster.logs())
        job = cluster.coordinator.wait_job(job_id, timeout=5)
        assert job["result"] == [x * x for x in data]
        nodes.record("worker session reset (re-hello from a new socket)", variant="ci", jobs=1,
                     dropped_morsels=dropped, results_checked=len(data), lost=0, duplicated=0)
    finally:
        first.close()
        if second is not None:
            second.close()
