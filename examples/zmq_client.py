"""A Sabot client in plain pyzmq and the standard library: what docs/protocol.md describes,
written out so it can be ported to any language with a ZeroMQ binding.

    SABOT_CLUSTER_KEY_FILE=~/.sabot/cluster.key python examples/zmq_client.py \
        --host localhost --port 8080 --processor square 1 2 3 4 5

It reads the coordinator's ZeroMQ port from GET /cluster, derives the CURVE keys from the cluster
secret, says hello, submits a job that runs a named processor (no code is shipped), waits for
its result and prints it. Nothing from Sabot is imported; msgpack is encoded by hand below.
"""

from __future__ import annotations

import argparse
import hashlib
import hmac
import json
import os
import struct
import sys
import urllib.request
import uuid

import zmq
from zmq.utils import z85

PROTOCOL_VERSION = 6
HEADER = struct.Struct("!4sHHQQ")  # magic, version, type, session, seq
HELLO, WELCOME, REFUSED = 1, 2, 3
SUBMIT_JOB, SUBMIT_ACK, FETCH_RESULTS, RESULT_BATCH, ERROR = 20, 21, 24, 25, 29


# -- a small msgpack (nil, bool, int, float, str, bin, array, map) ------------------------------
def pack(v: object) -> bytes:
    if v is None:
        return b"\xc0"
    if v is True or v is False:
        return b"\xc3" if v else b"\xc2"
    if isinstance(v, int):
        if 0 <= v < 128:
            return bytes([v])
        if -32 <= v < 0:
            return struct.pack("b", v)
        return b"\xd3" + struct.pack(">q", v) if v < 0 else b"\xcf" + struct.pack(">Q", v)
    if isinstance(v, float):
        return b"\xcb" + struct.pack(">d", v)
    if isinstance(v, str):
        raw = v.encode()
        return b"\xdb" + struct.pack(">I", len(raw)) + raw
    if isinstance(v, bytes):
        return b"\xc6" + struct.pack(">I", len(v)) + v
    if isinstance(v, (list, tuple)):
        return b"\xdd" + struct.pack(">I", len(v)) + b"".join(pack(x) for x in v)
    if isinstance(v, dict):
        return b"\xdf" + struct.pack(">I", len(v)) + b"".join(
            pack(k) + pack(x) for k, x in v.items())
    raise TypeError(f"cannot pack {type(v).__name__}")


def unpack(buf: bytes) -> object:
    value, end = _unpack(memoryview(buf), 0)
    if end != len(buf):
        raise ValueError("trailing bytes after a msgpack value")
    return value


def _unpack(b: memoryview, i: int) -> tuple[object, int]:
    t = b[i]
    i += 1
    if t <= 0x7F:
        return t, i
    if t >= 0xE0:
        return t - 0x100, i
    if 0x80 <= t <= 0x8F:
        return _map(b, i, t & 0x0F)
    if 0x90 <= t <= 0x9F:
        return _array(b, i, t & 0x0F)
    if 0xA0 <= t <= 0xBF:
        n = t & 0x1F
        return bytes(b[i:i + n]).decode(), i + n
    fixed = {0xC0: None, 0xC2: False, 0xC3: True}
    if t in fixed:
        return fixed[t], i
    sized = {0xCC: ">B", 0xCD: ">H", 0xCE: ">I", 0xCF: ">Q", 0xD0: ">b", 0xD1: ">h",
             0xD2: ">i", 0xD3: ">q", 0xCA: ">f", 0xCB: ">d"}
    if t in sized:
        fmt = sized[t]
        return struct.unpack_from(fmt, b, i)[0], i + struct.calcsize(fmt)
    lengths = {0xD9: ">B", 0xDA: ">H", 0xDB: ">I", 0xC4: ">B", 0xC5: ">H", 0xC6: ">I",
               0xDC: ">H", 0xDD: ">I", 0xDE: ">H", 0xDF: ">I"}
    if t in lengths:
        fmt = lengths[t]
        n = struct.unpack_from(fmt, b, i)[0]
        i += struct.calcsize(fmt)
        if t in (0xD9, 0xDA, 0xDB):
            return bytes(b[i:i + n]).decode(), i + n
        if t in (0xC4, 0xC5, 0xC6):
            return bytes(b[i:i + n]), i + n
        return _array(b, i, n) if t in (0xDC, 0xDD) else _map(b, i, n)
    raise ValueError(f"msgpack type 0x{t:02x} is not used by Sabot's protocol")


def _array(b: memoryview, i: int, n: int) -> tuple[list[object], int]:
    out = []
    for _ in range(n):
        v, i = _unpack(b, i)
        out.append(v)
    return out, i


def _map(b: memoryview, i: int, n: int) -> tuple[dict[object, object], int]:
    out = {}
    for _ in range(n):
        k, i = _unpack(b, i)
        v, i = _unpack(b, i)
        out[k] = v
    return out, i


# -- keys and framing ---------------------------------------------------------------------------
def read_secret() -> bytes:
    text = os.environ.get("SABOT_CLUSTER_KEY")
    if text is None:
        path = os.path.expanduser(os.environ.get("SABOT_CLUSTER_KEY_FILE", "~/.sabot/cluster.key"))
        with open(path, encoding="ascii") as fh:
            text = fh.read()
    text = text.strip()
    return z85.decode(text.encode()) if len(text) == 40 else bytes.fromhex(text)


def derive(secret: bytes, label: bytes) -> bytes:
    """A CURVE secret key (Z85) from the cluster secret, as every Sabot node derives it."""
    return z85.encode(hmac.new(secret, b"sabot-curve-v1/" + label, hashlib.sha256).digest())


class Session:
    def __init__(self, sock: zmq.Socket) -> None:
        self.sock = sock
        self.session = int.from_bytes(os.urandom(8), "big") or 1
        self.seq = 0

    def send(self, type_code: int, body: dict[str, object]) -> None:
        self.seq += 1
        header = HEADER.pack(b"SABT", PROTOCOL_VERSION, type_code, self.session, self.seq)
        self.sock.send(header + pack(body))

    def recv(self, timeout_s: float) -> tuple[int, dict]:
        if not self.sock.poll(int(timeout_s * 1000)):
            raise TimeoutError("no answer from the coordinator (wrong cluster key?)")
        frame = self.sock.recv()
        magic, _, type_code, _, _ = HEADER.unpack_from(frame)
        if magic != b"SABT":
            raise ValueError("not a Sabot message")
        body = unpack(frame[HEADER.size:])
        if type_code in (REFUSED, ERROR):
            raise RuntimeError(f"{body.get('code')}: {body.get('message')}")
        return type_code, body


def main() -> int:
    parser = argparse.ArgumentParser(description="submit a named-processor job over ZeroMQ")
    parser.add_argument("--host", default=os.environ.get("COORDINATOR_HOST", "localhost"))
    parser.add_argument("--port", type=int, default=int(os.environ.get("COORDINATOR_PORT", "8080")))
    parser.add_argument("--cluster", default=os.environ.get("CLUSTER_NAME", "sabot-cluster"))
    parser.add_argument("--processor", default="square")
    parser.add_argument("items", nargs="*", type=int, default=[1, 2, 3, 4, 5])
    args = parser.parse_args()

    with urllib.request.urlopen(f"http://{args.host}:{args.port}/cluster", timeout=10) as resp:
        info = json.loads(resp.read())
    secret = read_secret()
    server_secret, client_secret = derive(secret, b"server"), derive(secret, b"client")

    ctx = zmq.Context()
    sock = ctx.socket(zmq.DEALER)
    sock.linger = 0
    sock.curve_serverkey = zmq.curve_public(server_secret)
    sock.curve_secretkey = client_secret
    sock.curve_publickey = zmq.curve_public(client_secret)
    sock.connect(f"tcp://{args.host}:{info['zmq_port']}")
    try:
        s = Session(sock)
        s.send(HELLO, {"protocol_version": PROTOCOL_VERSION, "cluster_name": args.cluster,
                       "role": "client", "node_id": f"zmq-example-{os.getpid()}"})
        code, body = s.recv(10)
        assert code == WELCOME, code

        job_id = uuid.uuid4().hex
        morsel = ["msgpack", len(args.items), pack(args.items)]
        s.send(SUBMIT_JOB, {"request_id": 1, "job_id": job_id, "func_name": args.processor,
                            "func_pickle": None, "result_kind": "list", "morsels": [morsel],
                            "priority": 0})
        code, body = s.recv(30)
        assert code == SUBMIT_ACK, code

        results: list[object] = []
        start = 0
        while True:
            s.send(FETCH_RESULTS, {"request_id": 2 + start, "job_id": job_id, "start": start,
                                   "max_bytes": 16 << 20, "wait_ms": 10_000,
                                   "until_done": True})
            code, body = s.recv(20)
            assert code == RESULT_BATCH, code
            if body["status"] in ("failed", "cancelled"):
                print(f"job {job_id} {body['status']}: {body['error']}", file=sys.stderr)
                return 1
            for encoding, _, data in body["morsels"]:
                assert encoding == "msgpack", encoding
                results.extend(unpack(data))
            start += len(body["morsels"])
            if body["status"] == "completed" and start >= body["total_morsels"]:
                break
        print(f"job {job_id} completed: {results}")
        return 0
    finally:
        sock.close(0)
        ctx.term()


if __name__ == "__main__":
    sys.exit(main())
