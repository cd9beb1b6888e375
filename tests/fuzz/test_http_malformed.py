"""Hostile HTTP input against a real HTTP API and engine: oversize and chunked bodies, deep JSON,
numbers JSON can carry but Python cannot, wrong content types, raw garbage on the socket, and
slow-loris connections. Each gets a 4xx with a JSON reason (or the connection is closed); the
server never answers 5xx, and keeps serving other clients meanwhile and afterwards.
"""

from __future__ import annotations

import json
import socket
import threading
import time
from pathlib import Path
from typing import Any, Iterator

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import sabot_test_nodes as nodes


@pytest.fixture
def small_node(tmp_path: Path) -> Iterator[Any]:
    """A node with a 16 KiB body limit and 1 s request/idle timeouts."""
    node = nodes.InProcessNode(tmp_path / "node", max_request_mb=1 / 64,
                               api_kw={"request_timeout_s": 1.0, "idle_timeout_s": 1.0})
    yield node
    node.stop()


def post_raw(node: Any, body: bytes, content_type: str | None = "application/json"
             ) -> nodes.HttpReply:
    headers = {} if content_type is None else {"Content-Type": content_type}
    return nodes.http("POST", node.url + "/submit_job", raw=body, headers=headers)


def assert_json_error(reply: nodes.HttpReply, status: int, needle: str = "") -> dict[str, Any]:
    assert reply.status == status, reply
    body = reply.json
    assert isinstance(body.get("error"), str) and body["error"], body
    assert needle.lower() in body["error"].lower(), body
    return dict(body)


def assert_serves(node: Any) -> None:
    job_id = node.submit([1, 2, 3, 4, 5], "square")
    assert node.wait_job(job_id, timeout=60)["result"] == [1, 4, 9, 16, 25]


def raw_exchange(port: int, payload: bytes, timeout: float = 10) -> bytes:
    """Send bytes on a fresh connection; what the server answers before it closes (or times
    out waiting)."""
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as sock:
        try:
            sock.sendall(payload)
            sock.shutdown(socket.SHUT_WR)
        except OSError:
            pass  # the server may close on the first bad byte
        chunks = []
        try:
            while chunk := sock.recv(65536):
                chunks.append(chunk)
        except (ConnectionResetError, socket.timeout):
            pass
    return b"".join(chunks)


# -- size ------------------------------------------------------------------------------------------
def test_oversize_body_with_length_is_413(small_node: Any) -> None:
    body = json.dumps({"data": list(range(20_000)), "processor_func": "square"}).encode()
    assert len(body) > 16 * 1024
    err = assert_json_error(post_raw(small_node, body), 413, "SABOT_MAX_REQUEST_MB")
    assert err["max_bytes"] == 16 * 1024
    assert_serves(small_node)


def test_oversize_chunked_body_is_413(small_node: Any) -> None:
    """A body without Content-Length (chunked) is cut off at the limit, not read whole."""
    chunk = b"[" + b"1," * 4000 + b"1]"
    head = (b"POST /submit_job HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
            b"Transfer-Encoding: chunked\r\nConnection: close\r\n\r\n")
    parts = [head]
    for _ in range(40):  # 40 x 8 KB = 320 KB, 20 x the limit
        parts.append(f"{len(chunk):x}\r\n".encode() + chunk + b"\r\n")
    parts.append(b"0\r\n\r\n")
    reply = raw_exchange(small_node.port, b"".join(parts))
    assert reply.startswith(b"HTTP/1.1 413"), reply[:300]
    assert b"SABOT_MAX_REQUEST_MB" in reply
    assert_serves(small_node)


# -- JSON that is deep, huge or not JSON at all ---------------------------------------------------
@pytest.mark.parametrize("opener, closer", [("[", "]"), ('{"a":', "}")], ids=["arrays", "objects"])
def test_deeply_nested_json_is_400(inproc_node: Any, opener: str, closer: str) -> None:
    depth = 200_000
    body = (opener * depth + "1" + closer * depth).encode()
    assert_json_error(post_raw(inproc_node, body), 400, "nested too deeply")
    inner = (opener * depth + "1" + closer * depth)
    body = ('{"data": [' + inner + '], "processor_func": "identity"}').encode()
    assert_json_error(post_raw(inproc_node, body), 400, "nested too deeply")
    assert_serves(inproc_node)


def test_nested_items_that_parse_come_back_or_fail_cleanly(inproc_node: Any) -> None:
    """Items nested as deep as the parser allows run and their result is readable (or the job
    fails with a reason) — GET /job never answers 5xx."""
    for depth in (50, 400, 900):
        body = ('{"data": [' + "[" * depth + "]" * depth + '], "processor_func": "identity"}')
        reply = post_raw(inproc_node, body.encode())
        assert reply.status in (200, 400), reply
        if reply.status == 200:
            job = inproc_node.wait_job(reply.json["job_id"])
            assert job["status"] in ("completed", "failed"), job
            if job["status"] == "failed":
                assert job["error"], job
    assert_serves(inproc_node)


def test_integer_longer_than_python_parses_is_400(inproc_node: Any) -> None:
    """JSON has no limit on digits; Python refuses to convert more than 4300. The client must get
    a 400 naming the problem, not a 500."""
    body = b'{"data": [' + b"7" * 5000 + b'], "processor_func": "square"}'
    reply = post_raw(inproc_node, body)
    assert reply.status == 400, reply
    assert "digit" in reply.json["error"], reply
    assert_serves(inproc_node)


def test_float_overflow_is_refused_or_fails_the_job(inproc_node: Any) -> None:
    """1e400 is valid JSON but not a finite double: a 400 at submit, or a failed job that says why;
    never a 5xx, never a result that is not JSON."""
    reply = post_raw(inproc_node, b'{"data": [1e400, 2], "processor_func": "square"}')
    assert reply.status in (200, 400), reply
    if reply.status == 200:
        job = inproc_node.wait_job(reply.json["job_id"])
        assert job["status"] == "failed" and job["error"], job
    assert_serves(inproc_node)


@pytest.mark.parametrize("raw", [
    b'{"data": ["\\ud800", "a\\u0000b"], "processor_func": "identity"}',
    b'{"data": [1], "processor_func": "' + b"x" * 10_000 + b'"}',
    b'{"data": [1], "processor_func": "square\\u0000"}',
    b'{"data": [1], "processor_func": "square", "processor_func": "os.system"}',
    b'{"data": [1], "processor_func": "square"} trailing',
    b'\xef\xbb\xbf{"data": [1], "processor_func": "square"}',
    b'{"data": [1], "processor_func": "square", "priority": -0.0}',
    b'{"data": [1], "processor_func": "square", "priority": 1.5}',
    b'{"data": {"__class__": "os.system"}, "processor_func": "identity"}',
    b'{"input": {"path": "/etc/passwd"}, "processor_func": "identity"}',
    b'{"input": {"path": "../../../../etc/passwd", "format": "csv"}, "processor_func": "identity"}',
    b'{"input": {"path": "x.csv", "format": "pickle"}, "processor_func": "identity"}',
], ids=["surrogate-and-nul", "long-processor", "nul-in-processor", "duplicate-key", "trailing",
        "utf8-bom", "negative-zero-priority", "float-priority", "object-data", "absolute-path",
        "traversal", "pickle-format"])
def test_odd_bodies_never_5xx(inproc_node: Any, raw: bytes) -> None:
    reply = post_raw(inproc_node, raw)
    assert reply.status in (200, 400, 404), reply
    if reply.status >= 400:
        assert reply.json["error"], reply
    else:
        job = inproc_node.wait_job(reply.json["job_id"])
        assert job["status"] in ("completed", "failed"), job
        # the result (if any) is readable JSON
        nodes.http("GET", f"{inproc_node.url}/job/{job['job_id']}").json
    assert_serves(inproc_node)


@pytest.mark.parametrize("content_type, body", [
    ("text/plain", b'{"data": [1, 2], "processor_func": "square"}'),
    ("application/x-www-form-urlencoded", b"data=1&processor_func=square"),
    ("multipart/form-data; boundary=xx",
     b'--xx\r\nContent-Disposition: form-data; name="data"\r\n\r\n[1]\r\n--xx--\r\n'),
    ("application/octet-stream", bytes(range(256)) * 4),
    ("application/json; charset=latin-1", '{"data": ["\u00e9"], "processor_func": "identity"}'
     .encode("latin-1")),
    (None, b'{"data": [1, 2], "processor_func": "square"}'),
], ids=["text-plain", "form", "multipart", "binary", "latin1", "none"])
def test_wrong_content_types(inproc_node: Any, content_type: str | None, body: bytes) -> None:
    reply = post_raw(inproc_node, body, content_type)
    # A JSON body is accepted whatever its label (curl -d sends form-urlencoded); anything else is
    # refused with a reason.
    assert reply.status in (200, 400, 415), reply
    if reply.status != 200:
        assert reply.json["error"], reply
    assert_serves(inproc_node)


# -- not HTTP at all -------------------------------------------------------------------------------
@pytest.mark.parametrize("payload", [
    b"GARBAGE\r\n\r\n",
    b"GET / HTTP/9.9\r\n\r\n",
    b"GET /health HTTP/1.1\r\nHost: x\r\nContent-Length: -5\r\n\r\n",
    b"POST /submit_job HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n"
    b"\r\n0\r\n\r\n",
    b"GET /" + b"a" * 100_000 + b" HTTP/1.1\r\nHost: x\r\n\r\n",
    b"GET /health HTTP/1.1\r\nHost: x\r\nX-Big: " + b"b" * 100_000 + b"\r\n\r\n",
    b"GET /health HTTP/1.1\r\n" + b"X-Many: 1\r\n" * 10_000 + b"\r\n",
    b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03" + bytes(64),  # a TLS ClientHello
    b"\x00" * 1000,
], ids=["garbage", "bad-version", "negative-length", "length-and-chunked", "long-url",
        "huge-header", "many-headers", "tls-hello", "zeros"])
def test_not_http_is_refused_and_server_lives(inproc_node: Any, payload: bytes) -> None:
    reply = raw_exchange(inproc_node.port, payload)
    if reply:
        status = int(reply.split(b" ", 2)[1])
        assert 400 <= status < 500, reply[:300]
    assert_serves(inproc_node)


@settings(max_examples=60, deadline=None, database=None, derandomize=True,
          suppress_health_check=list(HealthCheck))
@given(payload=st.one_of(
    st.binary(min_size=1, max_size=2000),
    st.builds(lambda m, p, h: m + b" " + p + b" HTTP/1.1\r\n" + h + b"\r\n\r\n",
              st.sampled_from([b"GET", b"POST", b"DELETE", b"PUT", b"\x00", b"G\xffT"]),
              st.binary(min_size=0, max_size=200), st.binary(min_size=0, max_size=500)),
))
def test_random_bytes_on_the_http_port(shared_node: Any, payload: bytes) -> None:
    reply = raw_exchange(shared_node.port, payload, timeout=15)
    if reply.startswith(b"HTTP/1."):
        assert not reply.split(b" ", 2)[1].startswith(b"5"), reply[:300]
    assert shared_node.alive()


@pytest.fixture(scope="module")
def shared_node(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    node = nodes.InProcessNode(tmp_path_factory.mktemp("bytes") / "node",
                               api_kw={"request_timeout_s": 2.0, "idle_timeout_s": 2.0})
    yield node
    assert_serves(node)
    node.stop()


# -- slow clients ----------------------------------------------------------------------------------
def test_slow_loris_connections_time_out_and_block_nobody(small_node: Any) -> None:
    """60 connections drip headers or a body one byte at a time. Meanwhile ordinary requests and a
    job are served; every slow connection is closed by the server (or answered 408)."""
    outcomes: list[str] = []
    lock = threading.Lock()

    def drip(payload: bytes) -> None:
        sock = socket.create_connection(("127.0.0.1", small_node.port), timeout=60)
        sock.settimeout(0.2)
        outcome = "still open"
        deadline = time.monotonic() + 30  # the server's timeouts are 1 s
        try:
            for byte in payload:
                if time.monotonic() > deadline:
                    break
                try:
                    sock.sendall(bytes([byte]))
                except OSError:
                    outcome = "closed"
                    break
                try:
                    data = sock.recv(4096)
                    outcome = "408" if data.startswith(b"HTTP/1.1 408") else (
                        "closed" if not data else f"answered {data[:40]!r}")
                    break
                except socket.timeout:
                    pass
                except OSError:  # reset by the server: closed too
                    outcome = "closed"
                    break
        finally:
            sock.close()
        with lock:
            outcomes.append(outcome)

    headers = b"GET /health HTTP/1.1\r\nHost: x\r\n" + b"X-Slow: y\r\n" * 200
    body = (b"POST /submit_job HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
            b"Content-Length: 4000\r\n\r\n" + b" " * 4000)
    # The body drip sends its headers at once, then the body one byte per 0.2 s.
    threads = [threading.Thread(target=drip, args=(headers if i % 2 else body,))
               for i in range(60)]
    for t in threads:
        t.start()
    try:
        # While they hang on, others are served.
        for _ in range(5):
            assert small_node.alive()
        assert_serves(small_node)
    finally:
        for t in threads:
            t.join(60)
    assert len(outcomes) == 60
    assert all(o in ("closed", "408") for o in outcomes), outcomes
    assert_serves(small_node)
