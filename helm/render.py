"""Render the Sabot Helm chart with Helm's own engine, and keep helm/k8s-deployment.yaml in step.

    python helm/render.py            # rewrite helm/k8s-deployment.yaml from helm/sabot
    python helm/render.py --check    # exit 1 if the file differs from a fresh render
    python helm/render.py --stdout   # print the manifest instead of writing it

Rendering uses the PyPI package ``helm-python-sdk`` (Helm's Go engine behind a C ABI), so no
``helm`` binary and no cluster are needed. The tests in tests/deploy import this module.
"""

from __future__ import annotations

import argparse
import re
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

HELM_DIR = Path(__file__).resolve().parent
CHART_DIR = HELM_DIR / "sabot"
MANIFEST_PATH = HELM_DIR / "k8s-deployment.yaml"
#: The release name the plain manifest is rendered with: it gives the README's object names
#: (sabot-coordinator, sabot-worker).
RELEASE = "sabot"
NAMESPACE = "default"

# Helm's install order (pkg/release/util/kind_sorter.go); kinds not listed go last.
_INSTALL_ORDER = [
    "PriorityClass", "Namespace", "NetworkPolicy", "ResourceQuota", "LimitRange",
    "PodSecurityPolicy", "PodDisruptionBudget", "ServiceAccount", "Secret", "SecretList",
    "ConfigMap", "StorageClass", "PersistentVolume", "PersistentVolumeClaim",
    "CustomResourceDefinition", "ClusterRole", "ClusterRoleList", "ClusterRoleBinding",
    "ClusterRoleBindingList", "Role", "RoleList", "RoleBinding", "RoleBindingList", "Service",
    "DaemonSet", "Pod", "ReplicationController", "ReplicaSet", "Deployment",
    "HorizontalPodAutoscaler", "StatefulSet", "Job", "CronJob", "IngressClass", "Ingress",
    "APIService",
]
_DOC_SPLIT = re.compile(r"^---[ \t]*$", re.MULTILINE)


@dataclass(frozen=True)
class Document:
    """One rendered Kubernetes object: the template it came from, its YAML text, parsed."""

    source: str
    text: str
    obj: dict[str, Any]

    @property
    def kind(self) -> str:
        return str(self.obj["kind"])

    @property
    def name(self) -> str:
        return str(self.obj["metadata"]["name"])


@dataclass(frozen=True)
class Rendered:
    """A chart render: its objects in install order, and NOTES.txt."""

    documents: list[Document]
    notes: str

    def get(self, kind: str, name: str) -> dict[str, Any]:
        for doc in self.documents:
            if doc.kind == kind and doc.name == name:
                return doc.obj
        raise KeyError(f"no {kind} named {name!r} in the render; have: {self.names()}")

    def of_kind(self, kind: str) -> list[dict[str, Any]]:
        return [d.obj for d in self.documents if d.kind == kind]

    def names(self) -> list[str]:
        return [f"{d.kind}/{d.name}" for d in self.documents]


def render(
    values: dict[str, Any] | None = None,
    *,
    release: str = RELEASE,
    namespace: str = NAMESPACE,
    chart_dir: Path = CHART_DIR,
) -> Rendered:
    """Render the chart as ``helm template`` would (``lookup`` sees no cluster).

    Raises helm_python.HelmError subclasses: HelmValuesError when ``values`` break
    values.schema.json, HelmRenderError when a template fails (e.g. its own ``fail`` checks).
    """
    import helm_python  # imported here so `--help` works without the package

    with helm_python.Chart.load(chart_dir) as chart:
        out = chart.render(values or {}, name=release, namespace=namespace, is_install=True)
    documents: list[Document] = []
    notes = ""
    for path, text in out.items():
        if path.endswith("NOTES.txt"):
            notes = text
            continue
        for part in _DOC_SPLIT.split(text):
            obj = yaml.safe_load(part)
            if not obj:
                continue  # a template switched off by its values
            documents.append(Document(path, part.strip("\n") + "\n", obj))
    documents.sort(key=_install_rank)
    return Rendered(documents, notes)


def _install_rank(doc: Document) -> tuple[int, str, str]:
    kind = doc.kind
    rank = _INSTALL_ORDER.index(kind) if kind in _INSTALL_ORDER else len(_INSTALL_ORDER)
    return rank, kind, doc.name


def manifest_text() -> str:
    """helm/k8s-deployment.yaml: the chart's default render, less the generated Secret."""
    rendered = render()
    secrets = rendered.of_kind("Secret")
    if len(secrets) != 1:
        raise RuntimeError(f"expected the chart to render one Secret by default, got {len(secrets)}")
    secret = secrets[0]
    secret_name = secret["metadata"]["name"]
    (secret_key,) = secret["data"]
    header = f"""\
# Sabot on Kubernetes without Helm:
#
#   kubectl create secret generic {secret_name} --from-literal={secret_key}="$(sabot-node keygen)"
#   kubectl apply -f helm/k8s-deployment.yaml
#
# GENERATED FILE, do not edit: the Helm chart helm/sabot rendered with its default values as
# release "{RELEASE}" by `python helm/render.py` (tests/deploy/test_manifest.py checks that it
# matches a fresh render). Change the chart, or install it with Helm to set values.
#
# The cluster secret is the one object left out: the chart generates it at install, a static
# file cannot. Create it first (command above; every ZeroMQ key is derived from it, so keep it
# private). Without sabot installed locally, any 32 random bytes as 64 hex digits will do:
#   kubectl create secret generic {secret_name} \\
#     --from-literal={secret_key}="$(python3 -c 'import secrets; print(secrets.token_hex(32))')"
#
# The pods run the image {_default_image()} (PyPI distribution and image: sabot-engine;
# Python package: sabot); build it from the repository root with
#   docker build -f docker/Dockerfile -t {_default_image()} .
# and make it available to the cluster (push it to a registry, `kind load docker-image`, ...).
# Autoscaling is on (HorizontalPodAutoscaler sabot-worker, 2 to 10 workers, needs the metrics
# server); to scale by hand instead, delete the HPA and run
#   kubectl scale deployment sabot-worker --replicas=10
"""
    body = [
        f"---\n# Source: {doc.source}\n{doc.text}"
        for doc in rendered.documents
        if doc.kind != "Secret"
    ]
    return header + "".join(body)


def _default_image() -> str:
    """The image reference of a default install: values' repository, tag = appVersion."""
    meta = yaml.safe_load((CHART_DIR / "Chart.yaml").read_text(encoding="utf-8"))
    values = yaml.safe_load((CHART_DIR / "values.yaml").read_text(encoding="utf-8"))
    image = values["image"]
    return f"{image['repository']}:{image.get('tag') or meta['appVersion']}"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    group = parser.add_mutually_exclusive_group()
    group.add_argument("--check", action="store_true", help="fail if the file is out of date")
    group.add_argument("--stdout", action="store_true", help="print instead of writing")
    args = parser.parse_args(argv)
    text = manifest_text()
    if args.stdout:
        sys.stdout.write(text)
        return 0
    if args.check:
        current = MANIFEST_PATH.read_text(encoding="utf-8") if MANIFEST_PATH.exists() else ""
        if current != text:
            print(f"{MANIFEST_PATH.name} is out of date: run `python helm/render.py`",
                  file=sys.stderr)
            return 1
        print(f"{MANIFEST_PATH.name} matches the chart")
        return 0
    MANIFEST_PATH.write_text(text, encoding="utf-8")
    print(f"wrote {MANIFEST_PATH}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
