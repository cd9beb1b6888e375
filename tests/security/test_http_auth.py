"""The HTTP API's security: with SABOT_AUTH_TOKEN set every protected endpoint (every operation
its own /openapi.json lists, so a new endpoint is covered without editing this file) refuses a
missing or wrong token with 401 while /health, /ready and /metrics stay open; and the API runs
named processors only — a module path, an expression or a pickled callable from a client never
executes.
"""

from __future__ import annotations

import base64
import pickle
from pathlib import Path
from typing import Any, Iterator

import pytest

import sabot_test_nodes as nodes

TOKEN = "s3cr3t-token-for-tests-0c7f"
OPEN = ("/health", "/ready", "/metrics")
#: Open by design, holding no job data: the status page shell and the API description.
OPEN_SHELLS = ("/", "/openapi.json")


@pytest.fixture(scope="module")
def token_node(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    node = nodes.InProcessNode(tmp_path_factory.mktemp("auth") / "node", auth_token=TOKEN)
    yield node
    node.stop()


def operations(node: Any) -> list[tuple[str, str]]:
    doc = nodes.http("GET", node.url + "/openapi.json").json
    ops = []
    for path, item in doc["paths"].items():
        for method in item:
            if method.lower() in ("get", "post", "put", "delete", "patch"):
                ops.append((method.upper(), path.replace("{job_id}", "0123456789abcdef")))
    return ops


WRONG = {
    "missing": {},
    "wrong": {"Authorization": "Bearer not-the-token"},
    "prefix": {"Authorization": f"Bearer {TOKEN[:-1]}"},
    "longer": {"Authorization": f"Bearer {TOKEN}x"},
    "basic": {"Authorization": "Basic " + base64.b64encode(f"u:{TOKEN}".encode()).decode()},
    "bare": {"Authorization": TOKEN},
    "empty": {"Authorization": "Bearer "},
    "other-header": {"X-Auth-Token": TOKEN},
    "nul": {"Authorization": f"Bearer {TOKEN}\x00"},
}


@pytest.mark.parametrize("kind", list(WRONG))
def test_protected_endpoints_refuse_missing_or_wrong_token(token_node: Any, kind: str) -> None:
    ops = operations(token_node)
    protected = [(m, p) for m, p in ops if p not in OPEN + OPEN_SHELLS]
    assert len(protected) >= 6, ops  # nodes, stats, cluster, submit, jobs, job (get, delete)...
    for method, path in protected:
        try:
            reply = nodes.http(method, token_node.url + path,
                               {"data": [1], "processor_func": "square"} if method == "POST"
                               else None, headers=WRONG[kind])
        except ValueError:  # urllib itself refuses a NUL in a header: nothing was sent
            assert kind == "nul"
            return
        if kind == "nul" and reply.status == 400:
            continue  # refused by the HTTP parser before any handler ran
        assert reply.status == 401, (method, path, reply)
        assert reply.headers.get("WWW-Authenticate", "").startswith("Bearer"), reply.headers
        assert "token" in reply.json["error"]


def test_token_in_the_query_string_is_not_accepted(token_node: Any) -> None:
    reply = nodes.http("GET", f"{token_node.url}/stats?token={TOKEN}")
    assert reply.status == 401


def test_open_endpoints_need_no_token_and_leak_no_jobs(token_node: Any) -> None:
    job_id = token_node.submit([1, 2, 3])  # with the token
    assert token_node.wait_job(job_id)["result"] == [1, 4, 9]
    for path in OPEN:
        reply = nodes.http("GET", token_node.url + path)
        assert reply.status == 200, (path, reply)
    for path in OPEN_SHELLS:
        reply = nodes.http("GET", token_node.url + path)
        assert reply.status == 200, (path, reply)
        assert job_id.encode() not in reply.body, path
    assert job_id.encode() not in nodes.http("GET", token_node.url + "/metrics").body


def test_right_token_is_accepted_everywhere(token_node: Any) -> None:
    for method, path in operations(token_node):
        body = {"data": [2], "processor_func": "square"} if method == "POST" else None
        reply = token_node.request(method, path, body)
        assert reply.status != 401, (method, path, reply)
        assert reply.status < 500, (method, path, reply)


# -- no client code runs ---------------------------------------------------------------------------
class _Marker:
    """Unpickling this creates a file: proof that a pickle from the client was loaded."""

    def __init__(self, path: str) -> None:
        self.path = path

    def __reduce__(self) -> tuple[Any, ...]:
        return (Path.touch, (Path(self.path),))


def code_payloads(marker: Path) -> list[dict[str, Any]]:
    blob = base64.b64encode(pickle.dumps(_Marker(str(marker)))).decode()
    expr = f"__import__('pathlib').Path({str(marker)!r}).touch()"
    return [
        {"data": [1], "processor_func": "os.system"},
        {"data": [f"touch {marker}"], "processor_func": "os.system"},
        {"data": [1], "processor_func": "builtins.eval"},
        {"data": [expr], "processor_func": "eval"},
        {"data": [1], "processor_func": expr},
        {"data": [1], "processor_func": "lambda x: " + expr},
        {"data": [1], "processor_func": "sabot.processors.square"},
        {"data": [1], "processor_func": "pathlib:Path.touch"},
        {"data": [1], "processor_func": blob},
        {"data": [1], "processor_func": "square", "func_pickle": blob},
        {"data": [1], "processor_func": {"pickle": blob}},
        {"data": [blob], "processor_func": "square", "encoding": "pickle"},
        {"data": [1], "processor_func": "__import__"},
    ]


def test_client_code_never_runs(tmp_path: Path) -> None:
    marker = tmp_path / "pwned"
    node = nodes.InProcessNode(tmp_path / "node")
    try:
        for payload in code_payloads(marker):
            reply = node.request("POST", "/submit_job", payload)
            if reply.status == 200:
                # only a registered processor may accept: the data is plain data to it
                assert payload["processor_func"] == "square", payload
                node.wait_job(reply.json["job_id"])
            else:
                assert reply.status == 400, (payload, reply)
                assert reply.json["error"], reply
        # the same through an input file: a pickle on disk is not an accepted format
        (node.config.data_dir / "blob.pkl").write_bytes(pickle.dumps(_Marker(str(marker))))
        reply = node.request("POST", "/submit_job", {
            "input": {"path": "blob.pkl", "format": "pickle"}, "processor_func": "identity"})
        assert reply.status == 400, reply
        reply = node.request("POST", "/submit_job", {
            "input": {"path": "blob.pkl"}, "processor_func": "identity"})
        assert reply.status == 400, reply
    finally:
        node.stop()
    assert not marker.exists(), "client-supplied code ran on the node"


def test_a_token_from_a_file_guards_the_api_and_stays_out_of_the_environment(tmp_path: Path
                                                                             ) -> None:
    """SABOT_AUTH_TOKEN_FILE (a mounted Secret): the daemon reads its token from the file,
    refuses requests without it, and the token is nowhere in its /proc/<pid>/environ."""
    token_file = tmp_path / "token"
    token_file.write_text(TOKEN + "\n")
    token_file.chmod(0o600)
    port = nodes.free_port()
    node = nodes.NodeProcess("file-token", {"SABOT_MODE": "single-node", "SABOT_PORT": str(port),
                                            "SABOT_HOST": "127.0.0.1",
                                            "SABOT_DATA_DIR": str(tmp_path / "data"),
                                            "SABOT_AUTH_TOKEN_FILE": str(token_file)},
                             port, tmp_path, TOKEN)
    node.start()
    try:
        node.wait_ready()
        assert nodes.http("GET", node.url + "/jobs").status == 401
        assert node.request("GET", "/jobs").status == 200
        environ = Path(f"/proc/{node.pid}/environ").read_bytes()
        assert TOKEN.encode() not in environ and b"SABOT_AUTH_TOKEN_FILE" in environ
    finally:
        node.stop()


def test_a_token_given_twice_is_refused(tmp_path: Path) -> None:
    from sabot.config import load_config
    from sabot.errors import ConfigError

    token_file = tmp_path / "token"
    token_file.write_text("abc\n")
    assert load_config(env={"SABOT_AUTH_TOKEN_FILE": str(token_file)}).auth_token == "abc"
    with pytest.raises(ConfigError, match="not both"):
        load_config(env={"SABOT_AUTH_TOKEN_FILE": str(token_file), "SABOT_AUTH_TOKEN": "x"})
    token_file.write_text("")
    with pytest.raises(ConfigError, match="SABOT_AUTH_TOKEN_FILE"):
        load_config(env={"SABOT_AUTH_TOKEN_FILE": str(token_file)})
