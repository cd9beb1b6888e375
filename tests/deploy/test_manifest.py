"""helm/k8s-deployment.yaml: the chart's default render for `kubectl apply -f`, kept current."""

from __future__ import annotations

import re
import subprocess
import sys
from typing import Any

import pytest
import yaml
from deploy_support import REPO, containers

pytest.importorskip("helm_python", reason="pip install helm-python-sdk")
kv_utils = pytest.importorskip("kubernetes_validate.utils", reason="pip install kubernetes-validate")

MANIFEST = REPO / "helm" / "k8s-deployment.yaml"


def _objects() -> list[dict[str, Any]]:
    return [d for d in yaml.safe_load_all(MANIFEST.read_text(encoding="utf-8")) if d]


def test_manifest_is_identical_to_a_fresh_render(chart: Any) -> None:
    fresh = chart.manifest_text()
    current = MANIFEST.read_text(encoding="utf-8")
    assert current == fresh, "helm/k8s-deployment.yaml is stale: run `python helm/render.py`"


def test_render_check_command(chart: Any) -> None:
    proc = subprocess.run([sys.executable, str(REPO / "helm" / "render.py"), "--check"],
                          capture_output=True, text=True, timeout=120, check=False)
    assert proc.returncode == 0, proc.stderr


def test_manifest_has_every_default_object_but_the_secret(chart: Any) -> None:
    rendered = chart.render()
    expected = [f"{d.kind}/{d.name}" for d in rendered.documents if d.kind != "Secret"]
    have = [f"{o['kind']}/{o['metadata']['name']}" for o in _objects()]
    assert have == expected
    assert "Secret" not in {o["kind"] for o in _objects()}


def test_manifest_tells_how_to_create_the_secret_it_mounts() -> None:
    text = MANIFEST.read_text(encoding="utf-8")
    referenced = set()
    for obj in _objects():
        if obj["kind"] != "Deployment":
            continue
        for vol in obj["spec"]["template"]["spec"]["volumes"]:
            if "secret" in vol:
                for item in vol["secret"]["items"]:
                    referenced.add((vol["secret"]["secretName"], item["key"]))
    assert referenced == {("sabot-cluster-key", "cluster.key")}
    match = re.search(r"kubectl create secret generic (\S+) --from-literal=([^=\s]+)="
                      r"\"\$\(sabot-node keygen\)\"", text)
    assert match, "the header must give the `kubectl create secret` command"
    assert (match.group(1), match.group(2)) in referenced


@pytest.mark.parametrize("kube_version", ["1.25.0", "1.37.0"])
def test_manifest_validates_strictly(kube_version: str) -> None:
    for obj in _objects():
        kv_utils.validate(obj, kube_version, strict=True)


def test_manifest_uses_the_readme_names() -> None:
    objs = {(o["kind"], o["metadata"]["name"]): o for o in _objects()}
    svc = objs[("Service", "sabot-coordinator")]
    assert {p["name"]: p["port"] for p in svc["spec"]["ports"]} == {"http": 8080, "zmq": 8081,
                                                                     "data": 8082}
    (coord,) = containers(objs[("Deployment", "sabot-coordinator")])
    assert {"name": "data", "containerPort": 8082, "protocol": "TCP"} in coord["ports"]
    assert {"name": "SABOT_DATA_PORT", "value": "8082"} in coord["env"]
    worker = objs[("Deployment", "sabot-worker")]
    assert containers(worker)[0]["image"] == "sabot-engine:0.1.0"  # docker/Dockerfile's image
    assert objs[("HorizontalPodAutoscaler", "sabot-worker")]["spec"]["maxReplicas"] >= 10
    assert ("PodDisruptionBudget", "sabot-worker") in objs
    # no namespace is written: `kubectl apply -n NS` decides
    assert all("namespace" not in o["metadata"] for o in objs.values())
