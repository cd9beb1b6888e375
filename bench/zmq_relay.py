"""The floor under any Python cluster with a coordinator in the path, measured in the same run.

A hand-written relay over ZeroMQ with nothing else: a client sends a 10-item job (msgpack) to a
broker process, the broker hands it to a worker process, the worker squares the items and
answers, the broker passes the answer back. The same four one-way hops as a Sabot job (client ->
coordinator -> worker -> coordinator -> client), each end a Python process in a blocking loop,
with no journal, no CURVE, no flow control, no retries and no pool process: what the machine
charges for the hops alone.

Run as ``python -m bench.zmq_relay broker FRONT BACK`` and ``python -m bench.zmq_relay worker
BACK``; :class:`ZmqRelayEngine` starts both.
"""

from __future__ import annotations

import subprocess
import sys
import time
from typing import Any

from .engines import ItemEngine
from .harness import REPO_ROOT


def _broker(front_port: int, back_port: int) -> None:
    import zmq

    ctx = zmq.Context()
    front = ctx.socket(zmq.ROUTER)
    front.bind(f"tcp://127.0.0.1:{front_port}")
    back = ctx.socket(zmq.ROUTER)
    back.bind(f"tcp://127.0.0.1:{back_port}")
    poller = zmq.Poller()
    poller.register(front, zmq.POLLIN)
    poller.register(back, zmq.POLLIN)
    workers: list[bytes] = []
    while True:
        events = dict(poller.poll())
        if back in events:
            worker, client, seq, body = back.recv_multipart()
            if client == b"":
                workers.append(worker)  # a worker says it is there
            else:
                front.send_multipart([client, seq, body])
        if front in events:
            client, seq, body = front.recv_multipart()
            if not workers:
                front.send_multipart([client, seq, b""])
                continue
            worker = workers.pop(0)
            workers.append(worker)  # round robin
            back.send_multipart([worker, client, seq, body])


def _worker(back_port: int) -> None:
    import msgpack
    import zmq

    from .workloads import square

    ctx = zmq.Context()
    sock = ctx.socket(zmq.DEALER)
    sock.connect(f"tcp://127.0.0.1:{back_port}")
    sock.send_multipart([b"", b"", b""])
    while True:
        client, seq, body = sock.recv_multipart()
        sock.send_multipart([client, seq, msgpack.packb([square(x)
                                                         for x in msgpack.unpackb(body)])])


class ZmqRelayEngine(ItemEngine):
    """The hops alone: a hand-written ZeroMQ relay (client -> broker -> worker and back)."""

    name = "zeromq relay (floor)"

    def __init__(self, workers: int) -> None:
        super().__init__(workers=workers)
        self.procs: list[subprocess.Popen[bytes]] = []
        self.ctx: Any = None
        self.sock: Any = None
        self.seq = 0  # each request's number: a late answer to an earlier one is skipped

    def availability(self) -> tuple[bool, str]:
        try:
            import msgpack  # noqa: F401
            import zmq
        except ImportError as exc:
            return False, f"pyzmq or msgpack missing: {exc}"
        return True, f"pyzmq {zmq.__version__}, libzmq {zmq.zmq_version()}"

    def setup(self) -> None:
        import zmq

        from .cluster import _die_with_parent, _free_port

        front, back = _free_port(), _free_port()
        cmd = [sys.executable, "-m", "bench.zmq_relay"]
        self.procs.append(subprocess.Popen([*cmd, "broker", str(front), str(back)],
                                           cwd=REPO_ROOT, preexec_fn=_die_with_parent))
        for _ in range(self.workers):
            self.procs.append(subprocess.Popen([*cmd, "worker", str(back)], cwd=REPO_ROOT,
                                               preexec_fn=_die_with_parent))
        self.ctx = zmq.Context()
        self.sock = self.ctx.socket(zmq.DEALER)
        self.sock.connect(f"tcp://127.0.0.1:{front}")
        deadline = time.monotonic() + 30
        while True:  # until a worker answers
            for p in self.procs:
                if p.poll() is not None:
                    raise RuntimeError(f"a relay process exited with {p.returncode}")
            if self._ask([1], wait_ms=1000) is not None:
                return
            if time.monotonic() > deadline:
                raise RuntimeError("the relay did not answer within 30 s")
            time.sleep(0.05)  # no worker yet

    def _ask(self, items: list[Any], wait_ms: int | None = None) -> list[Any] | None:
        import msgpack

        self.seq += 1
        want = self.seq.to_bytes(8, "big")
        self.sock.send_multipart([want, msgpack.packb(items)])
        while True:
            if wait_ms is not None and not self.sock.poll(wait_ms):
                return None
            seq, body = self.sock.recv_multipart()
            if seq == want:
                return None if body == b"" else list(msgpack.unpackb(body))

    def run(self) -> Any:
        out = self._ask(list(self.data))
        if out is None:
            raise RuntimeError("the relay has no worker")
        return out

    def teardown(self) -> None:
        if self.sock is not None:
            self.sock.close(0)
            self.ctx.term()
            self.sock = self.ctx = None
        from .cluster import stop_processes

        stop_processes(self.procs, wait_s=10)
        self.procs.clear()


if __name__ == "__main__":
    if sys.argv[1] == "broker":
        _broker(int(sys.argv[2]), int(sys.argv[3]))
    else:
        _worker(int(sys.argv[2]))
