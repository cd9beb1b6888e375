"""Every endpoint of the HTTP API, with good and bad input, on a real server and engine."""

from __future__ import annotations

import json
import logging
import os
import socket
import subprocess
import time

import pyarrow as pa
import pyarrow.csv as pcsv
import pyarrow.parquet as pq
import pytest
from sabot.http.server import HttpApi

README_CURL = """curl -X POST http://sabot-coordinator:8080/submit_job \\
  -H "Content-Type: application/json" \\
  -d '{"data": [1,2,3,4,5], "processor_func": "square"}'"""


def curl(node, command: str) -> str:
    """Run a README curl command verbatim, with the README's host:port pointed at ``node``."""
    command = command.replace("http://sabot-coordinator:8080", node.url)
    command = command.replace("http://localhost:8080", node.url)
    out = subprocess.run(["bash", "-c", command.replace("curl ", "curl -sS ", 1)],
                         capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    return out.stdout


def test_readme_curl_submit_then_job_result(node) -> None:
    accepted = json.loads(curl(node, README_CURL))
    assert accepted["status"] in ("pending", "running", "completed")
    job_id = accepted["job_id"]
    node.wait(job_id)
    job = json.loads(curl(node, f"curl http://localhost:8080/job/{job_id}"))
    assert job["status"] == "completed"
    assert job["result"] == [1, 4, 9, 16, 25]
    assert job["progress"] == {"done": 5, "total": 5, "fraction": 1.0}
    assert job["finished_at"] >= job["created_at"]
    assert job["error"] is None


def test_readme_curl_health_nodes_stats(node) -> None:
    health = json.loads(curl(node, "curl http://localhost:8080/health"))
    assert health["status"] == "ok" and health["role"] == "single-node"
    nodes = json.loads(curl(node, "curl http://sabot-coordinator:8080/nodes"))
    assert nodes["count"] == 1 and nodes["nodes"][0]["status"] == "alive"
    assert nodes["nodes"][0]["address"].endswith(f":{node.port}")
    stats = json.loads(curl(node, "curl http://sabot-coordinator:8080/stats"))
    for key in ("nodes", "jobs", "system_resources"):
        assert key in stats
    assert stats["system_resources"]["usable_cores"] >= 1


def test_ready_and_cluster_on_single_node(node) -> None:
    status, _, body = node.request("GET", "/ready")
    assert status == 200 and body["ready"] is True
    status, _, body = node.request("GET", "/cluster")
    assert status == 404 and "not a coordinator" in body["error"]


@pytest.mark.parametrize("raw, needle", [
    (b"{bad json", "malformed JSON"),
    (b"", "empty"),
    (b"[1, 2]", "must be a JSON object"),
    (b'{"data": [1], "processor_func": "square", "data2": 1}', "unknown field"),
    (b'{"data": "12345", "processor_func": "square"}', "data must be a JSON array"),
    (b'{"data": [1]}', "processor_func must be a non-empty string"),
    (b'{"data": [1], "processor_func": 7}', "processor_func must be"),
    (b'{"data": [1], "processor_func": "square", "priority": true}', "priority must be an integer"),
    (b'{"data": [1], "processor_func": "square", "priority": 1e9}', "priority must be an integer"),
    (b'{"processor_func": "square"}', "exactly one of data"),
    (b'{"data": [NaN], "processor_func": "square"}', "NaN is not valid JSON"),
    (b'\xff\xfe', "not UTF-8"),
    (b"[" * 100_000 + b"]" * 100_000, "malformed JSON"),
])
def test_submit_bad_input_is_400_with_reason(node, raw: bytes, needle: str) -> None:
    status, headers, body = node.request("POST", "/submit_job", raw=raw)
    assert status == 400
    assert headers["Content-Type"].startswith("application/json")
    assert needle in body["error"]


def test_unknown_processor_lists_known_ones(node) -> None:
    status, _, body = node.request("POST", "/submit_job",
                                   {"data": [1], "processor_func": "rm -rf /"})
    assert status == 400
    assert "square" in body["known_processors"]
    assert "unknown processor" in body["error"] and "square" in body["error"]


def test_unknown_job_and_route_and_method(node) -> None:
    status, _, body = node.request("GET", "/job/does-not-exist")
    assert status == 404 and body["job_id"] == "does-not-exist"
    status, _, body = node.request("DELETE", "/job/does-not-exist")
    assert status == 404
    status, _, body = node.request("GET", "/no/such/thing")
    assert status == 404 and "no such endpoint" in body["error"]
    status, headers, body = node.request("PUT", "/submit_job", raw=b"{}")
    assert status == 405 and headers["Allow"] == "POST" and body["allowed_methods"] == ["POST"]


def test_body_over_limit_is_413(node_factory) -> None:
    node = node_factory(max_request_mb=0.01)  # 10 KiB
    big = {"data": list(range(5000)), "processor_func": "square"}
    status, _, body = node.request("POST", "/submit_job", big)
    assert status == 413 and "SABOT_MAX_REQUEST_MB" in body["error"]
    # Without a Content-Length (chunked), the limit holds while reading.
    out = subprocess.run(
        ["curl", "-sS", "-X", "POST", "-H", "Transfer-Encoding: chunked",
         "-H", "Content-Type: application/json", "--data-binary", "@-", node.url + "/submit_job"],
        input=json.dumps(big), capture_output=True, text=True, timeout=60)
    assert json.loads(out.stdout)["status"] == 413
    # The node still works.
    assert node.wait(node.submit([3]))["result"] == [9]


def test_bearer_token(node_factory) -> None:
    node = node_factory(auth_token="s3cret-token")
    for path in ("/health", "/ready", "/metrics", "/openapi.json", "/"):
        assert node.request("GET", path)[0] == 200, path
    status, headers, body = node.request("GET", "/stats")
    assert status == 401 and "Bearer" in headers["WWW-Authenticate"]
    assert "bearer token" in body["error"]
    assert node.request("GET", "/stats", headers={"Authorization": "Bearer wrong"})[0] == 401
    assert node.request("GET", "/stats", headers={"Authorization": "Basic s3cret-token"})[0] == 401
    status, _, body = node.request("POST", "/submit_job", {"data": [2], "processor_func": "square"})
    assert status == 401
    auth = {"Authorization": "Bearer s3cret-token"}
    status, _, body = node.request("POST", "/submit_job",
                                   {"data": [2], "processor_func": "square"}, headers=auth)
    assert status == 200
    job_id = body["job_id"]
    for _ in range(500):
        status, _, job = node.request("GET", f"/job/{job_id}", headers=auth)
        if job["status"] == "completed":
            break
        time.sleep(0.02)
    assert job["result"] == [4]
    # The status page shell carries no data without the token.
    page = node.request("GET", "/")[2]
    assert job_id not in page and 'data-auth="required"' in page


def test_result_paging(node) -> None:
    job = node.wait(node.submit(list(range(25))))
    assert job["result_total"] == 25 and job["next_offset"] is None
    page = node.wait(node.submit(list(range(25))), query="?offset=10&limit=5")
    assert page["result"] == [100, 121, 144, 169, 196]
    assert (page["result_offset"], page["next_offset"], page["result_total"]) == (10, 15, 25)
    last = node.request("GET", f"/job/{page['job_id']}?offset=20&limit=100")[2]
    assert last["result"] == [400, 441, 484, 529, 576] and last["next_offset"] is None
    polled = node.request("GET", f"/job/{page['job_id']}?limit=0")[2]
    assert polled["result"] == [] and polled["progress"]["done"] == 25
    for query in ("?offset=abc", "?limit=-1", "?offset=-1", "?limit=99999999", "?limit="):
        status, _, body = node.request("GET", f"/job/{page['job_id']}{query}")
        assert status == 400 and "query parameter" in body["error"], query


def test_failing_job_reports_error_and_others_survive(node) -> None:
    bad = node.submit([1, 2, 3], processor="len")  # len(int) raises TypeError
    good = node.submit([1, 2, 3], processor="double")
    failed = node.wait(bad)
    assert failed["status"] == "failed" and "TypeError" in failed["error"]
    assert failed["result"] is None
    assert node.wait(good)["result"] == [2, 4, 6]
    mixed = node.wait(node.submit([1, "a", None], processor="square"))
    assert mixed["status"] == "failed"
    assert node.request("GET", "/health")[2]["status"] == "ok"


def test_cancel_running_and_pending_jobs(node_factory) -> None:
    node = node_factory(gated=True, backend_kw={"max_concurrent_jobs": 1})
    running = node.submit(list(range(20_000)))
    pending = node.submit([1, 2])
    node.release(1)  # the first chunk of `running` runs
    job = node.wait(running, states=("running",))
    status, _, cancelled = node.request("DELETE", f"/job/{running}")
    assert status == 200 and cancelled["status"] == "cancelled"
    assert node.request("GET", f"/job/{running}")[2]["status"] == "cancelled"
    status, _, body = node.request("DELETE", f"/job/{running}")  # cancelling twice is harmless
    assert status == 200 and body["status"] == "cancelled"
    node.release(10)
    assert node.wait(pending)["result"] == [1, 4]
    final = node.request("GET", f"/job/{running}")[2]
    assert final["status"] == "cancelled" and final["progress"]["done"] < final["progress"]["total"]
    assert job["status"] == "running"
    # A finished job stays as it is.
    assert node.request("DELETE", f"/job/{pending}")[2]["status"] == "completed"
    jobs = node.request("GET", "/jobs")[2]["jobs"]
    assert [j["job_id"] for j in jobs[:2]] == [pending, running]


def test_priority_orders_pending_jobs(node_factory) -> None:
    node = node_factory(gated=True, backend_kw={"max_concurrent_jobs": 1})
    first = node.submit([1])
    low = node.submit([2], priority=-5)
    high = node.submit([3], priority=7)
    node.release(3)
    jobs = {j: node.wait(j) for j in (first, low, high)}
    assert jobs[first]["started_at"] <= jobs[high]["started_at"] <= jobs[low]["started_at"]


def test_results_expire_after_ttl(node_factory) -> None:
    node = node_factory(result_ttl_s=0.3)
    job_id = node.submit([1, 2])
    node.wait(job_id)
    time.sleep(0.5)
    status, _, body = node.request("GET", f"/job/{job_id}")
    assert status == 404 and "SABOT_RESULT_TTL_S" in body["error"]


def test_input_files_under_data_dir(node, tmp_path) -> None:
    data_dir = node.config.data_dir
    pq.write_table(pa.table({"v": [1, 2, 3]}), data_dir / "nums.parquet")
    pcsv.write_csv(pa.table({"a": [5, 6], "b": [7, 8]}), data_dir / "two.csv")
    with pa.OSFile(str(data_dir / "x.arrow"), "wb") as f, pa.ipc.new_file(
            f, pa.schema([("x", pa.int64())])) as w:
        w.write_table(pa.table({"x": [4]}))
    (data_dir / "lines.jsonl").write_text('{"n": 9}\n{"n": 10}\n')

    def run(spec):
        status, _, body = node.request("POST", "/submit_job",
                                       {"input": spec, "processor_func": "square"})
        return status, body

    status, body = run({"path": "nums.parquet"})
    assert status == 200 and node.wait(body["job_id"])["result"] == [1, 4, 9]
    status, body = run({"path": "two.csv", "column": "b"})
    assert node.wait(body["job_id"])["result"] == [49, 64]
    status, body = run({"path": "x.arrow"})
    assert node.wait(body["job_id"])["result"] == [16]
    status, body = run({"path": "lines.jsonl"})
    assert node.wait(body["job_id"])["result"] == [81, 100]
    # One bare value per line, as `sabot-node submit --file` reads it.
    (data_dir / "bare.jsonl").write_text("3\n\n4\n5\n")
    status, body = run({"path": "bare.jsonl"})
    assert status == 200 and node.wait(body["job_id"])["result"] == [9, 16, 25]
    (data_dir / "broken.jsonl").write_text("3\n4,\n")
    status, body = run({"path": "broken.jsonl"})
    assert status == 400 and "line 2 is not valid JSON" in body["error"]

    status, body = run({"path": "two.csv"})
    assert status == 400 and "a, b" in body["error"]
    status, body = run({"path": "two.csv", "column": "zz"})
    assert status == 400 and "columns: a, b" in body["error"]
    status, body = run({"path": "nums.parquet", "format": "xls"})
    assert status == 400 and "parquet, csv, arrow, jsonl" in body["error"]
    status, body = run({"path": "missing.parquet"})
    assert status == 400 and "does not name a file" in body["error"]
    # a name longer than the file system allows (found by the schemathesis fuzz: was a 500)
    status, body = run({"path": "x" * 300 + ".jsonl"})
    assert status == 400 and "cannot name a file" in body["error"], body
    assert "File name too long" in body["error"] and "(306 characters)" in body["error"]
    (data_dir / "bad.parquet").write_bytes(b"not parquet")
    status, body = run({"path": "bad.parquet"})
    assert status == 400 and "cannot read" in body["error"]


@pytest.mark.parametrize("path", ["../secret.csv", "/etc/passwd", "sub/../../secret.csv",
                                  "link.csv"])
def test_input_path_traversal_is_refused(node, path: str) -> None:
    secret = node.config.data_dir.parent / "secret.csv"
    secret.write_text("a\n1\n")
    link = node.config.data_dir / "link.csv"
    if not link.exists():
        os.symlink(secret, link)
    (node.config.data_dir / "sub").mkdir(exist_ok=True)
    status, _, body = node.request("POST", "/submit_job",
                                   {"input": {"path": path}, "processor_func": "identity"})
    assert status == 400 and "outside SABOT_DATA_DIR" in body["error"]


def test_half_sent_body_times_out(node_factory) -> None:
    node = node_factory(api_kw={"request_timeout_s": 0.5})
    with socket.create_connection(("127.0.0.1", node.port), timeout=10) as sock:
        sock.sendall(b"POST /submit_job HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                     b"Content-Length: 100\r\n\r\n{\"data\": [1")
        reply = sock.recv(65536).decode()
    assert reply.startswith("HTTP/1.1 408") and "did not arrive" in reply


def test_half_sent_headers_are_dropped(node_factory) -> None:
    node = node_factory(api_kw={"idle_timeout_s": 0.5})
    with socket.create_connection(("127.0.0.1", node.port), timeout=10) as sock:
        sock.sendall(b"GET /health HTTP/1.1\r\nHost: x\r\n")  # never finishes its headers
        t0 = time.monotonic()
        assert sock.recv(1024) == b""  # the server closed the connection
    assert time.monotonic() - t0 < 10
    assert node.request("GET", "/health")[0] == 200


def test_status_page_shows_node_and_jobs(node) -> None:
    job_id = node.submit([1, 2, 3])
    node.wait(job_id)
    status, headers, page = node.request("GET", "/")
    assert status == 200 and headers["Content-Type"].startswith("text/html")
    assert f'data-job-id="{job_id}"' in page
    assert f'data-node-id="{node.backend.node_id}"' in page
    assert "<progress" in page
    status, headers, js = node.request("GET", "/static/status.js")
    assert status == 200 and "refresh" in js
    assert node.request("GET", "/static/../server.py")[0] == 404


def test_history_samples(node) -> None:
    body = node.request("GET", "/history")[2]
    assert body["interval_s"] > 0
    assert body["samples"] and {"time", "items_per_second", "items"} <= set(body["samples"][0])


def test_openapi_documents_every_route(node) -> None:
    doc = node.request("GET", "/openapi.json")[2]
    assert doc["openapi"].startswith("3.")
    routes = set()
    for route in node.api.app.router.routes():
        info = route.resource.get_info() if route.resource else {}
        path = info.get("path") or info.get("formatter")
        if path and route.method != "HEAD" and not path.startswith("/static"):
            routes.add((path, route.method.lower()))
    documented = {(p, m) for p, item in doc["paths"].items() for m in item}
    assert routes == documented


def test_loud_warning_without_token_beyond_loopback(node, caplog) -> None:
    async def start_stop(host: str) -> None:
        api = HttpApi(node.config, node.backend, node.api.metrics)
        await api.start(host, 0)
        await api.stop()

    with caplog.at_level(logging.WARNING, logger="sabot.http.server"):
        node.run(start_stop("127.0.0.1"))
        assert "WITHOUT authentication" not in caplog.text
        node.run(start_stop("0.0.0.0"))
    assert "WITHOUT authentication" in caplog.text and "SABOT_AUTH_TOKEN" in caplog.text


def test_large_job_round_trip(node) -> None:
    n = 250_000  # a body over 1 MiB and a result over the inline-encoding threshold
    job = node.wait(node.submit(list(range(n))))
    assert job["status"] == "completed" and job["result_total"] == n
    assert job["next_offset"] == 100_000 and job["result"][-1] == 99_999 ** 2
    rest = node.request("GET", f"/job/{job['job_id']}?offset=100000&limit=1000000")[2]
    assert rest["result"] == [i * i for i in range(100_000, n)] and rest["next_offset"] is None
