"""Stray results are refused (#16 item 8): a coordinator takes a morsel's result (or failure)
only from the worker its current assignment went to, for that assignment. A real ZeroMQ worker
session (CURVE, hello, credits) that answers with a wrong attempt number, or for a morsel it
was never given, is refused and counted (``results_refused`` in /stats,
``sabot_results_refused_total`` in /metrics); the job's result is the right one."""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Any

import zmq

import sabot_test_nodes as nodes
from sabot.cluster import transport
from sabot.cluster.protocol import PROTOCOL_VERSION, Sender, decode_frame, payload
from sabot.cluster.protocol import messages as m
from sabot.cluster.security import ClusterKeys
from sabot.config import load_config

procs = nodes.chaos_procs()
answer, make_items = procs.answer, procs.make_items


class ForgingWorker:
    """A worker session by hand: says hello, takes what it is assigned, answers as told."""

    def __init__(self, key_file: Path, zmq_port: int) -> None:
        keys = ClusterKeys.from_config(load_config(env={"SABOT_CLUSTER_KEY_FILE":
                                                        str(key_file)}))
        self.ctx = zmq.Context()
        self.sock = transport.client_socket(self.ctx, keys, f"tcp://127.0.0.1:{zmq_port}")
        self.sender = Sender()

    def send(self, *msgs: m.Message) -> None:
        self.sock.send_multipart(self.sender.encode_many(list(msgs)))

    def receive(self, kind: type, timeout: float = 20) -> list[Any]:
        """Messages of ``kind`` (assign-many expanded), waiting up to ``timeout`` for one."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if not self.sock.poll(100):
                continue
            found = []
            for frame in self.sock.recv_multipart():
                msg = decode_frame(frame).msg
                found += msg.expand() if isinstance(msg, m.AssignMany) else [msg]
            found = [msg for msg in found if isinstance(msg, kind)]
            if found:
                return found
        raise AssertionError(f"no {kind.__name__} within {timeout} s")

    def close(self) -> None:
        self.sock.close(0)
        self.ctx.term()


def _result(job_id: str, assign: m.Assign, attempt: int, values: list[str]) -> m.MorselResult:
    enc, blob = payload.encode_items(values)
    return m.MorselResult(job_id, assign.morsel, attempt, len(values), enc, blob)


def test_results_not_from_the_current_assignment_are_refused_and_counted(tmp_path: Path) -> None:
    cluster = nodes.Cluster(tmp_path, {**nodes.CHAOS_SETTINGS, "MORSEL_SIZE_KB": "1",
                                       "SABOT_NODE_TIMEOUT_S": "60"})
    coordinator = cluster.start_coordinator()
    zmq_port = int(coordinator.env["SABOT_ZMQ_PORT"])
    forger = ForgingWorker(cluster.key_file, zmq_port)
    try:
        forger.send(m.Hello(PROTOCOL_VERSION, "sabot-cluster", "worker", "forger",
                            host="127.0.0.1", pid=os.getpid(), cores=1, slots=1, credits=1))
        forger.receive(m.Welcome)
        items = make_items(40, pad=100)
        job_id = coordinator.submit(items, "chaos_fast")
        assign = forger.receive(m.Assign)[0]
        forger.send(m.Credit(0))  # nothing more for this session
        mine = payload.decode_value(assign.encoding, assign.data)
        forged = ["forged"] * len(mine)
        total = coordinator.job(job_id, "?limit=0")["progress"]["morsels_total"]
        other = (assign.morsel + 1) % total
        assert total > 1
        forger.send(
            # Its own morsel, but an attempt it was never given.
            _result(job_id, assign, assign.attempt + 1, forged),
            # A morsel it does not hold.
            m.MorselResult(job_id, other, 1, len(mine), *payload.encode_items(forged)),
            # A failure for an earlier attempt must not use up one of the morsel's attempts.
            m.MorselFailed(job_id, assign.morsel, assign.attempt - 1, "ValueError", "forged"),
            # Then the true answer of its current assignment: taken.
            _result(job_id, assign, assign.attempt, [answer(x) for x in mine]),
        )
        deadline = time.monotonic() + 20
        while coordinator.job(job_id, "?limit=0")["progress"]["morsels_done"] < 1:
            assert time.monotonic() < deadline, coordinator.log_tail()
            time.sleep(0.05)
        cluster.add_worker()
        job = coordinator.wait_job(job_id, timeout=60)
        assert job["status"] == "completed", job
        assert job["result"] == [answer(x) for x in items]

        counters = coordinator.request("GET", "/stats").json["counters"]
        assert counters["results_refused"] == 3, counters
        assert counters["morsels_failed"] == 0, counters
        metrics = coordinator.request("GET", "/metrics").body.decode()
        refused = [line for line in metrics.splitlines()
                   if line.startswith("sabot_results_refused_total{")]
        assert refused and float(refused[0].rsplit(" ", 1)[1]) == 3.0, refused
        assert "refused a result for job" in coordinator.log_text()
        nodes.record("stray results refused", variant="ci", jobs=1, results_checked=len(items),
                     lost=0, duplicated=0, forged_sent=3, refused=counters["results_refused"],
                     forged_in_result=sum(v == "forged" for v in job["result"]))
    finally:
        forger.close()
        cluster.stop()
