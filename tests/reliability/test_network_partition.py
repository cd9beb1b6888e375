"""A real network cut: the coordinator (with one worker beside it) in one network namespace, a
second worker in another, joined by a veth pair. Mid-job the worker's link goes down for longer
than SABOT_NODE_TIMEOUT_S and then comes back: the job completes with every result exactly once
(the cut worker's morsels are requeued), and the cut worker rejoins the cluster.

Needs root and ``ip netns``; skipped with the reason otherwise. Addresses (10.200.x.0/24) exist
only inside the namespaces this test creates, which it deletes at the end.
"""

from __future__ import annotations

import json
import os
import random
import shutil
import subprocess
import time
from pathlib import Path
from typing import Any, Iterator

import pytest

import sabot_test_nodes as nodes

SETTINGS = {
    **nodes.CHAOS_SETTINGS,
    "SABOT_HEARTBEAT_S": "0.2",
    "SABOT_NODE_TIMEOUT_S": "1.5",
    "MORSEL_SIZE_KB": "1",
    "SABOT_MAX_ATTEMPTS": "25",
    "SABOT_HOST": "0.0.0.0",
    # No SABOT_MORSEL_TIMEOUT_S: morsels sent to the cut worker's old session are handed out
    # again when it registers anew (test_session_reset.py), not recovered by a timeout.
}


def ip(*args: str, ns: str | None = None, check: bool = True) -> subprocess.CompletedProcess:
    cmd = (["ip", "netns", "exec", ns] if ns else []) + ["ip", *args]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=30, check=check)


def netns_unavailable() -> str | None:
    if os.geteuid() != 0:
        return "needs root to create network namespaces"
    if shutil.which("ip") is None or shutil.which("curl") is None:
        return "needs the ip (iproute2) and curl commands"
    probe = f"sabotprobe{os.getpid() % 100000}"
    out = subprocess.run(["ip", "netns", "add", probe], capture_output=True, text=True)
    if out.returncode != 0:
        return f"ip netns add failed: {out.stderr.strip()}"
    subprocess.run(["ip", "netns", "del", probe], capture_output=True)
    return None


class NsNode(nodes.NodeProcess):
    """A daemon inside a namespace; HTTP to it goes through curl run in that namespace."""

    def __init__(self, ns: str, host: str, *args: Any, **kw: Any) -> None:
        super().__init__(*args, **kw)
        self.ns = ns
        self.prefix = ["ip", "netns", "exec", ns]
        self.url = f"http://{host}:{self.http_port}"

    def request(self, method: str, path: str, body: Any = None, **kw: Any) -> nodes.HttpReply:
        cmd = [*self.prefix, "curl", "-s", "-m", str(kw.get("timeout", 30)), "-X", method,
               "-w", "\n%{http_code}", self.url + path]
        data = None
        if body is not None:
            cmd += ["-H", "Content-Type: application/json", "--data-binary", "@-"]
            data = json.dumps(body).encode()
        out = subprocess.run(cmd, input=data, capture_output=True, timeout=60)
        payload, _, code = out.stdout.rpartition(b"\n")
        if out.returncode != 0 or not code.strip().isdigit() or int(code) == 0:
            raise OSError(f"curl {method} {path} in {self.ns}: rc {out.returncode}")
        return nodes.HttpReply(int(code), {}, payload)


@pytest.fixture
def netns(tmp_path: Path) -> Iterator[dict[str, str]]:
    reason = netns_unavailable()
    if reason:
        pytest.skip(reason)
    tag = f"{os.getpid() % 10000}{random.randrange(100)}"
    net = random.randrange(1, 250)
    names = {"c": f"sabc{tag}", "w": f"sabw{tag}", "vc": f"vsc{tag}", "vw": f"vsw{tag}",
             "c_addr": f"10.200.{net}.1", "w_addr": f"10.200.{net}.2"}
    try:
        for ns in (names["c"], names["w"]):
            subprocess.run(["ip", "netns", "add", ns], check=True, capture_output=True)
            ip("link", "set", "lo", "up", ns=ns)
        ip("link", "add", names["vc"], "netns", names["c"], "type", "veth", "peer", "name",
           names["vw"], "netns", names["w"])
        ip("addr", "add", names["c_addr"] + "/24", "dev", names["vc"], ns=names["c"])
        ip("addr", "add", names["w_addr"] + "/24", "dev", names["vw"], ns=names["w"])
        ip("link", "set", names["vc"], "up", ns=names["c"])
        ip("link", "set", names["vw"], "up", ns=names["w"])
        yield names
    finally:
        for ns in (names["c"], names["w"]):
            subprocess.run(["ip", "netns", "del", ns], capture_output=True)


def test_worker_link_cut_mid_job_and_restored(netns: dict[str, str], tmp_path: Path) -> None:
    root = tmp_path / "cluster"
    c = nodes.Cluster(root, SETTINGS)
    base = c._base_env()
    port = nodes.free_port()
    coordinator = NsNode(netns["c"], "127.0.0.1", "coordinator", {
        **base, "SABOT_MODE": "coordinator", "SABOT_PORT": str(port),
        "SABOT_ZMQ_PORT": str(port + 1), "SABOT_DATA_PORT": str(port + 4),
        "SABOT_ADVERTISE_HOST": netns["c_addr"],
        "SABOT_DATA_DIR": str(root / "coordinator-data")}, port, root)
    local = NsNode(netns["c"], "127.0.0.1", "worker-local", {
        **base, "SABOT_MODE": "worker", "SABOT_WORKER_PORT": str(port + 2),
        "COORDINATOR_HOST": "127.0.0.1", "COORDINATOR_PORT": str(port),
        "SABOT_ADVERTISE_HOST": "127.0.0.1", "SABOT_DATA_DIR": str(root / "wl")}, port + 2, root)
    remote = NsNode(netns["w"], netns["w_addr"], "worker-remote", {
        **base, "SABOT_MODE": "worker", "SABOT_WORKER_PORT": str(port + 3),
        "COORDINATOR_HOST": netns["c_addr"], "COORDINATOR_PORT": str(port),
        "SABOT_ADVERTISE_HOST": netns["w_addr"], "SABOT_DATA_DIR": str(root / "wr")},
        port + 3, root)
    c.coordinator = coordinator
    c.workers = [local, remote]
    try:
        coordinator.start().wait_ready()
        local.start()
        remote.start()
        c.wait_workers(2)
        procs = nodes.chaos_procs()
        items = procs.make_items(1500)
        job_id = coordinator.submit(items, "chaos_slow")
        # Cut once the remote worker holds morsels.
        deadline = time.monotonic() + 60
        while True:
            mine = [n for n in c.alive_workers() if n.get("pid") == remote.pid]
            if mine and mine[0].get("running", 0) > 0:
                break
            assert time.monotonic() < deadline, c.logs()
            time.sleep(0.1)
        ip("link", "set", netns["vw"], "down", ns=netns["w"])
        try:
            deadline = time.monotonic() + 30
            while any(n.get("pid") == remote.pid for n in c.alive_workers()):
                assert time.monotonic() < deadline, "the cut worker was never marked dead"
                time.sleep(0.2)
        finally:
            ip("link", "set", netns["vw"], "up", ns=netns["w"])
        try:
            job = coordinator.wait_job(job_id, timeout=120)
        except AssertionError as exc:
            stats = coordinator.request("GET", "/stats").json
            raise AssertionError(f"{exc}\nstats: {stats}\n{c.logs()}") from None
        assert job["status"] == "completed", job
        result = job["result"]
        expected = [procs.answer(x) for x in items]
        lost = len(set(expected) - set(result))
        duplicated = len(result) - len(set(result))
        # The cut worker rejoins and takes work again.
        deadline = time.monotonic() + 60
        while not any(n.get("pid") == remote.pid for n in c.alive_workers()):
            assert time.monotonic() < deadline, c.logs()
            time.sleep(0.2)
        nodes.record("network namespace link cut and restored", variant="ci", jobs=1,
                     items=len(items), cuts=1, results_checked=len(result), lost=lost,
                     duplicated=duplicated, rejoined=1)
        assert result == expected
        assert remote.running()
    finally:
        c.stop()
