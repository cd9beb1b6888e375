"""The generated cluster secret survives upgrades: Helm's real ``lookup`` reads it back.

Helm's cluster-aware render (helm-python-sdk's ``Config.render``) contacts the API server only
for ``lookup``. A minimal Kubernetes API on loopback answers discovery and the Secret GET, so the
chart's template logic is exercised exactly as an upgrade in a cluster would run it.
"""

from __future__ import annotations

import base64
import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest
import yaml
from deploy_support import REPO

helm_python = pytest.importorskip("helm_python", reason="pip install helm-python-sdk")

CHART_DIR = REPO / "helm" / "sabot"
NAMESPACE = "apps"


class FakeApiServer:
    """Just enough of a Kubernetes API server for Helm's lookup of one Secret."""

    def __init__(self) -> None:
        self.secrets: dict[str, dict[str, str]] = {}  # name -> data (base64 values)
        self.requests: list[str] = []
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: Any) -> None:  # keep pytest output clean
                pass

            def do_GET(self) -> None:
                path = self.path.split("?")[0]
                outer.requests.append(path)
                status, body = outer.answer(path)
                raw = json.dumps(body).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(raw)))
                self.end_headers()
                self.wfile.write(raw)

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}"

    def answer(self, path: str) -> tuple[int, dict[str, Any]]:
        if path == "/version":
            return 200, {"major": "1", "minor": "33", "gitVersion": "v1.33.0"}
        if path == "/api":
            return 200, {"kind": "APIVersions", "versions": ["v1"],
                         "serverAddressByClientCIDRs": []}
        if path == "/apis":
            return 200, {"kind": "APIGroupList", "apiVersion": "v1", "groups": []}
        if path == "/api/v1":
            return 200, {"kind": "APIResourceList", "groupVersion": "v1", "resources": [
                {"name": "secrets", "singularName": "secret", "namespaced": True,
                 "kind": "Secret", "verbs": ["get", "list"]}]}
        prefix = f"/api/v1/namespaces/{NAMESPACE}/secrets/"
        if path.startswith(prefix) and path[len(prefix):] in self.secrets:
            name = path[len(prefix):]
            return 200, {"apiVersion": "v1", "kind": "Secret", "type": "Opaque",
                         "metadata": {"name": name, "namespace": NAMESPACE},
                         "data": self.secrets[name]}
        return 404, {"kind": "Status", "apiVersion": "v1", "status": "Failure",
                     "reason": "NotFound", "code": 404, "message": f"{path} not found"}

    def kubeconfig(self) -> str:
        return yaml.safe_dump({
            "apiVersion": "v1", "kind": "Config", "current-context": "fake",
            "clusters": [{"name": "fake", "cluster": {"server": self.url}}],
            "users": [{"name": "fake", "user": {"token": "unused"}}],
            "contexts": [{"name": "fake", "context": {"cluster": "fake", "user": "fake",
                                                      "namespace": NAMESPACE}}],
        })


@pytest.fixture()
def api() -> Iterator[FakeApiServer]:
    server = FakeApiServer()
    server.thread.start()
    try:
        yield server
    finally:
        server.server.shutdown()
        server.server.server_close()
        server.thread.join(timeout=10)


def _cluster_key(api: FakeApiServer, **render: Any) -> str:
    with helm_python.Config(kubeconfig_content=api.kubeconfig(), namespace=NAMESPACE) as cfg, \
            helm_python.Chart.load(CHART_DIR) as chart:
        out = cfg.render(chart, {}, name="sabot", namespace=NAMESPACE, **render)
    secret = yaml.safe_load(out["sabot/templates/secret-cluster-key.yaml"])
    return base64.b64decode(secret["data"]["cluster.key"]).decode()


def test_upgrade_keeps_the_stored_cluster_key(api: FakeApiServer) -> None:
    stored = "0123456789abcdef" * 4
    api.secrets["sabot-cluster-key"] = {"cluster.key": base64.b64encode(stored.encode()).decode()}
    assert _cluster_key(api, is_upgrade=True) == stored
    assert f"/api/v1/namespaces/{NAMESPACE}/secrets/sabot-cluster-key" in api.requests


def test_install_without_a_stored_key_generates_one(api: FakeApiServer) -> None:
    first = _cluster_key(api, is_install=True)
    second = _cluster_key(api, is_install=True)
    assert len(first) == 64 and int(first, 16) >= 0
    assert first != second
    assert f"/api/v1/namespaces/{NAMESPACE}/secrets/sabot-cluster-key" in api.requests
