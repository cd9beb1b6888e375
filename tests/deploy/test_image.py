"""The container image, built for real from docker/Dockerfile and run as users run it.

buildah builds the Dockerfile (both stages, from a Debian base made by mmdebstrap with the
Python the Dockerfile asks for: see debian_base.py), tagged with the image reference the Helm
chart's defaults name. Then, from that image: its user, labels and contents; its Python's
``sabot.get_stats()``; and a coordinator and two workers, each a container running the image's
own CMD as the image's user, which register, run the README's curl job, pass the image's own
HEALTHCHECK and stop on SIGTERM with status 0.

A cold build takes minutes, so these tests carry the ``artifacts`` marker: ``pytest -m
artifacts tests/deploy`` (.ci/run does). The image's size, layers and build times are printed
in the summary at the end of the run.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import time
import tomllib
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import Any

import buildah
import debian_base
import deploy_support
import pytest
from deploy_support import DOCKERFILE, REPO, Dockerfile, free_port

pytestmark = [pytest.mark.artifacts, pytest.mark.timeout(3600)]

#: Hang guards, not timing assertions (a cold build on two busy cores takes 5 to 10 minutes).
BASE_TIMEOUT_S = 1800.0
BUILD_TIMEOUT_S = 3000.0
REGISTER_DEADLINE_S = 120.0
JOB_DEADLINE_S = 120.0
STOP_GRACE_S = 60.0
README_JOB = '{"data": [1,2,3,4,5], "processor_func": "square"}'
BUILD_TOOLS = ("cc", "gcc", "g++", "c++", "clang", "cmake", "make", "ld", "ninja")
LEFTOVERS = ("/root/.cache/pip", "/home/*/.cache/pip", "/wheels", "/src",
             "/var/cache/apt/archives/*.deb", "/var/cache/apt/*.bin",
             "/var/lib/apt/lists/*_Packages*", "/usr/include/hwloc.h", "/usr/include/arrow",
             "/usr/include/python3*/Python.h")


@dataclass(frozen=True)
class BuiltImage:
    ref: str  #: as the chart names it
    info: buildah.ImageInfo
    python_version: str


def _unavailable(reason: str) -> None:
    # On CI this test is the only proof that the image works: never let it skip there.
    if os.environ.get("CI"):
        pytest.fail(f"the image test cannot run: {reason}")
    pytest.skip(reason)


def _project() -> dict[str, Any]:
    return tomllib.loads((REPO / "pyproject.toml").read_text(encoding="utf-8"))["project"]


def _chart_image(chart: ModuleType) -> str:
    """The image reference the chart's default render gives every pod."""
    rendered = chart.render()
    images = {c["image"] for dep in rendered.of_kind("Deployment")
              for c in deploy_support.containers(dep)}
    assert len(images) == 1, images
    return images.pop()


@pytest.fixture(scope="module")
def image(chart: ModuleType, dockerfile: Dockerfile,
          tmp_path_factory: pytest.TempPathFactory) -> BuiltImage:
    reason = debian_base.available()
    if reason:
        _unavailable(reason)
    work = tmp_path_factory.mktemp("image")
    python_version = dockerfile.args["PYTHON_VERSION"]
    t0 = time.monotonic()
    base, made = debian_base.DebianPythonBase(python_version).ensure(
        work / "base", work / "mmdebstrap.log", timeout=BASE_TIMEOUT_S)
    t_base = time.monotonic() - t0
    ref = _chart_image(chart)
    t0 = time.monotonic()
    buildah.build(REPO, DOCKERFILE, ref, build_args={"BASE_IMAGE": base},
                  log_path=work / "build.log", timeout=BUILD_TIMEOUT_S)
    t_build = time.monotonic() - t0
    info = buildah.inspect(ref)
    deploy_support.SUMMARY.extend([
        (f"image {ref}: {info.size}, {len(info.layers)} layers (base {base}, "
         f"{'built' if made else 'reused'} in {t_base:.0f} s; image built in {t_build:.0f} s)"),
        *(f"  layer {n}: {step[:110]}" for n, step in enumerate(info.layers, 1)),
    ])
    return BuiltImage(ref, info, python_version)


@pytest.fixture
def containers(image: BuiltImage) -> Iterator[Any]:
    """A factory of working containers of the image, all removed afterwards."""
    made: list[buildah.Container] = []

    def make(role: str) -> buildah.Container:
        ctr = buildah.Container.create(image.ref, f"sabot-test-{role}-{uuid.uuid4().hex[:8]}")
        made.append(ctr)
        return ctr

    yield make
    for ctr in made:
        ctr.remove()


# -- what the image is ---------------------------------------------------------------------------
def test_image_config_names_the_distribution_and_a_non_root_user(
        image: BuiltImage, dockerfile: Dockerfile, chart: ModuleType) -> None:
    config = image.info.config
    project = _project()
    labels = config["Labels"]
    assert labels["org.opencontainers.image.title"] == project["name"]
    assert labels["org.opencontainers.image.version"] == project["version"]
    assert image.ref.rsplit(":", 1) == [project["name"], project["version"]], \
        "the chart's default image is named after the distribution and its version"
    user = dockerfile.runtime.last("USER")
    assert user is not None and config["User"] == user.rest
    assert config["User"].split(":")[0] not in ("", "0", "root")
    assert image.info.command == ["sabot-node"]
    health = config.get("Healthcheck") or {}
    assert health.get("Test", [""])[0] == "CMD", f"the HEALTHCHECK was not kept: {health}"


def test_image_holds_no_compiler_headers_or_caches(image: BuiltImage, containers: Any) -> None:
    ctr = containers("contents")
    who = ctr.run(["id", "-u"])
    assert who.returncode == 0 and who.stdout.strip() == image.info.config["User"].split(":")[0]
    version = ctr.run(["python", "-c", "import sys; print('%d.%d' % sys.version_info[:2])"])
    assert version.stdout.strip() == image.python_version, version
    tools = ctr.run(["sh", "-c", "for t in " + " ".join(BUILD_TOOLS) + "; do command -v $t; "
                                 "done; true"], user="0:0")
    assert tools.returncode == 0 and tools.stdout.strip() == "", \
        f"build tools in the runtime image: {tools.stdout}"
    packages = ctr.run(["dpkg-query", "-W", "-f", "${Package}\n"]).stdout.split()
    dev = [p for p in packages if p.endswith("-dev") or p in ("build-essential", "cpp")]
    assert packages and not dev, f"runtime image has build packages: {dev}"
    # Nothing the build downloaded or compiled against is left (looked for as root, who can
    # see everywhere): pip's caches, apt's archives and lists, the wheelhouse, headers.
    leftovers = ctr.run(["sh", "-c", "ls -d " + " ".join(LEFTOVERS) + " 2>/dev/null; true"],
                        user="0:0")
    assert leftovers.returncode == 0 and leftovers.stdout.strip() == "", \
        f"left in the image: {leftovers.stdout}"


def test_native_core_and_hwloc_load_in_the_image(containers: Any) -> None:
    ctr = containers("stats")
    proc = ctr.run(["python", "-c", "import json, sabot; print(json.dumps(sabot.get_stats()))"])
    assert proc.returncode == 0, proc.stdout + proc.stderr
    stats = json.loads(proc.stdout.strip().splitlines()[-1])
    assert stats["native"] is True and stats["cython_optimization"] is True, stats
    assert stats["hwloc"] is True and stats["hwloc_version"], stats
    assert stats["numa_nodes"] >= 1 and stats["threads"] >= 1, stats


# -- a cluster of containers ----------------------------------------------------------------------
@dataclass
class Node:
    role: str
    container: buildah.Container
    env: dict[str, str]
    http_port: int
    running: buildah.RunningCommand | None = None


def _curl(*args: str) -> tuple[int, str]:
    curl = shutil.which("curl")
    assert curl, "curl is needed to run the README's job (apt-get install curl)"
    proc = subprocess.run([curl, "-sS", "--max-time", "30", *args], capture_output=True,
                          text=True, timeout=60, check=False)
    return proc.returncode, proc.stdout + proc.stderr


def _wait_for(nodes: list[Node], what: str, check: Any, deadline_s: float) -> Any:
    deadline = time.monotonic() + deadline_s
    last: Any = None
    while time.monotonic() < deadline:
        for node in nodes:
            assert node.running is not None and node.running.poll() is None, \
                f"{node.role} exited:\n{node.running and node.running.tail()}"
        last = check()
        if last:
            return last
        time.sleep(0.5)
    logs = "\n".join(f"--- {n.role}\n{n.running.tail() if n.running else ''}" for n in nodes)
    raise AssertionError(f"{what} did not happen within {deadline_s:.0f} s (last: {last!r})\n"
                         f"{logs}")


def _seconds(nanoseconds: int) -> float:
    return nanoseconds / 1e9


def test_coordinator_and_two_workers_from_the_image_run_the_readme_job(
        image: BuiltImage, containers: Any, tmp_path: Path) -> None:
    config = image.info.config
    health_cmd = config["Healthcheck"]["Test"][1:]
    health = config["Healthcheck"]
    health_grace = (_seconds(health["StartPeriod"])
                    + health["Retries"] * _seconds(health["Interval"]))
    keygen = containers("keygen").run([*image.info.command, "keygen"])
    assert keygen.returncode == 0, keygen.stderr
    key = keygen.stdout.strip()
    assert key, "sabot-node keygen printed no secret"

    # Every container shares this machine's loopback, so each node gets free ports (as
    # `docker run -p` would map them) and listens on 127.0.0.1 only.
    coord_port = free_port()
    coordinator = Node("coordinator", containers("coordinator"), {
        "SABOT_MODE": "coordinator", "SABOT_HOST": "127.0.0.1",
        "SABOT_PORT": str(coord_port), "SABOT_ZMQ_PORT": str(free_port()),
        "SABOT_DATA_PORT": str(free_port()),
        "SABOT_CLUSTER_KEY": key}, coord_port)
    workers = []
    for n in (1, 2):
        port = free_port()
        workers.append(Node(f"worker-{n}", containers(f"worker-{n}"), {
            "SABOT_MODE": "worker", "SABOT_HOST": "127.0.0.1", "SABOT_WORKER_PORT": str(port),
            "SABOT_ADVERTISE_HOST": "127.0.0.1", "COORDINATOR_HOST": "127.0.0.1",
            "COORDINATOR_PORT": str(coord_port), "SABOT_CLUSTER_KEY": key}, port))
    nodes = [coordinator, *workers]
    api = f"http://127.0.0.1:{coord_port}"
    codes: dict[str, int | None] = {}
    try:
        for node in nodes:  # the image's own CMD, as the image's user
            node.running = node.container.start(image.info.command, node.env,
                                                tmp_path / f"{node.role}.log")
        for node in nodes:
            assert node.running is not None
            assert node.running.process().uids().real == int(config["User"].split(":")[0])

        def registered() -> list[dict[str, Any]] | None:
            code, out = _curl("--fail", f"{api}/nodes")
            if code != 0:
                return None
            found = [n for n in json.loads(out)["nodes"]
                     if n.get("role", "worker") == "worker" and n.get("status") == "alive"]
            return found if len(found) == len(workers) else None
        found = _wait_for(nodes, "two workers registering", registered, REGISTER_DEADLINE_S)
        text = json.dumps(found)
        for node in workers:
            assert str(node.http_port) in text, (node.role, text)

        # The image's HEALTHCHECK, run in each container as Docker runs it (same env), within
        # the grace Docker gives it (start period + retries x interval).
        for node in nodes:
            def healthy(node: Node = node) -> bool:
                return node.container.run(health_cmd, node.env,
                                          timeout=_seconds(health["Timeout"]) + 30).returncode == 0
            _wait_for(nodes, f"{node.role} HEALTHCHECK passing", healthy, health_grace)

        # The README's job, with the README's curl command.
        code, out = _curl("--fail-with-body", "-X", "POST", f"{api}/submit_job",
                          "-H", "Content-Type: application/json", "-d", README_JOB)
        assert code == 0, out
        job_id = json.loads(out)["job_id"]

        def finished() -> dict[str, Any] | None:
            rc, body = _curl("--fail", f"{api}/job/{job_id}")
            if rc != 0:
                return None
            state = json.loads(body)
            return state if state["status"] in ("completed", "failed", "cancelled") else None
        state = _wait_for(nodes, f"job {job_id} finishing", finished, JOB_DEADLINE_S)
        assert state["status"] == "completed", state
        assert state["result"] == [1, 4, 9, 16, 25], state
    finally:
        for node in sorted(nodes, key=lambda n: n.role == "coordinator"):  # workers first
            if node.running is not None:
                codes[node.role] = node.running.stop(STOP_GRACE_S)
    logs = "\n".join(f"--- {n.role}\n{n.running.tail() if n.running else ''}" for n in nodes)
    assert all(code == 0 for code in codes.values()), f"docker stop exit codes {codes}\n{logs}"
    # ... and once stopped, the HEALTHCHECK says so.
    after = coordinator.container.run(health_cmd, coordinator.env, timeout=60)
    assert after.returncode != 0, "HEALTHCHECK passes with the coordinator stopped"
