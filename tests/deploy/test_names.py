"""One distribution name and one version, wherever a user meets them: the wheel's metadata, the
image's labels, the image the Helm chart installs, the self-references of the extras."""

from __future__ import annotations

import re
import shlex
import tomllib
from types import ModuleType
from typing import Any

import yaml
from deploy_support import REPO, Dockerfile, containers


def _pyproject() -> dict[str, Any]:
    return tomllib.loads((REPO / "pyproject.toml").read_text(encoding="utf-8"))


def _labels(dockerfile: Dockerfile) -> dict[str, str]:
    labels: dict[str, str] = {}
    for ins in dockerfile.runtime.all("LABEL"):
        for token in shlex.split(ins.rest):
            key, _, value = token.partition("=")
            labels[key] = value
    return labels


def test_the_distribution_is_not_named_like_the_import() -> None:
    # `sabot` on PyPI is another project's; the package still imports as sabot.
    project = _pyproject()["project"]
    assert project["name"] == "sabot-engine"
    assert _pyproject()["tool"]["scikit-build"]["wheel"]["packages"] == ["python/sabot"]


def test_extras_name_the_distribution_itself() -> None:
    project = _pyproject()["project"]
    own = re.compile(r"^([A-Za-z0-9._-]+)\[")
    for extra, requirements in project["optional-dependencies"].items():
        for req in requirements:
            match = own.match(req)
            if match and match.group(1).replace("_", "-").startswith("sabot"):
                assert match.group(1) == project["name"], \
                    f"extra {extra!r} requires {req!r}: pip would fetch another project"


def test_image_labels_and_chart_image_carry_the_name_and_version(
        dockerfile: Dockerfile, chart: ModuleType) -> None:
    project = _pyproject()["project"]
    labels = _labels(dockerfile)
    version_arg = dockerfile.args["SABOT_VERSION"]
    assert labels["org.opencontainers.image.title"] == project["name"]
    assert labels["org.opencontainers.image.version"] == "${SABOT_VERSION}"
    assert version_arg == project["version"], "docker/Dockerfile's SABOT_VERSION default"
    meta = yaml.safe_load((REPO / "helm" / "sabot" / "Chart.yaml").read_text(encoding="utf-8"))
    assert meta["appVersion"] == project["version"]
    rendered = chart.render()
    images = {c["image"] for d in rendered.of_kind("Deployment") for c in containers(d)}
    assert images == {f"{project['name']}:{project['version']}"}


def test_the_package_reports_the_released_version() -> None:
    text = (REPO / "python" / "sabot" / "version.py").read_text(encoding="utf-8")
    match = re.search(r'^__version__ = "([^"]+)"$', text, re.MULTILINE)
    assert match and match.group(1) == _pyproject()["project"]["version"]
