"""The README's install and build commands, run as written in a fresh virtual environment.

tests/test_readme.py runs the README against this checkout's installed package, so the commands
that install or build the package itself are only checked statically there. Here they run for
real, on a copy of the sources, in a new ``python -m venv``: the pure-Python install (with no
compiler reachable), then ``python setup.py build_ext --inplace`` without the build tools (it
must say which are missing and how to get them) and with them (it must build the native core).
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import venv
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
README = REPO / "README.md"


def _bash_blocks(text: str) -> list[str]:
    return re.findall(r"^```bash\n(.*?)^```", text, flags=re.S | re.M)


def _readme_command(needle: str) -> str:
    """The README line (of a bash block) that contains ``needle``, comment stripped."""
    for block in _bash_blocks(README.read_text()):
        for line in block.splitlines():
            if needle in line:
                return line.split("  #")[0].strip()
    raise AssertionError(f"the README has no bash command containing {needle!r}")


def _copy_sources(dest: Path) -> None:
    listed = subprocess.run(["git", "ls-files", "-z"], cwd=REPO, capture_output=True,
                            check=False)
    if listed.returncode == 0 and listed.stdout:
        files = [f for f in listed.stdout.decode().split("\0") if f]
    else:  # not a git checkout: everything but build outputs
        files = [str(p.relative_to(REPO)) for p in REPO.rglob("*") if p.is_file()
                 and not {"build", ".git", ".venv", "__pycache__"} & set(p.parts)]
    for rel in files:
        src = REPO / rel
        if src.is_file():
            target = dest / rel
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(src, target)


def _run(cmd: str, cwd: Path, env: dict[str, str], timeout: float = 900
         ) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["bash", "-c", cmd], cwd=cwd, env=env, capture_output=True,
                          text=True, timeout=timeout)


@pytest.mark.timeout(1500)
def test_install_and_build_commands_work_as_written(tmp_path: Path) -> None:
    src = tmp_path / "sabot"
    _copy_sources(src)
    env_dir = tmp_path / "venv"
    venv.EnvBuilder(with_pip=True).create(env_dir)
    bin_dir = env_dir / "bin"
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("SABOT_", "PYTHON", "PIP_")) and k != "VIRTUAL_ENV"}
    env.update(PATH=f"{bin_dir}{os.pathsep}{env.get('PATH', '')}", VIRTUAL_ENV=str(env_dir),
               HOME=str(tmp_path / "home"), PIP_DISABLE_PIP_VERSION_CHECK="1")
    env.setdefault("XDG_CACHE_HOME", str(Path(os.environ.get("HOME", "/root")) / ".cache"))
    python = str(bin_dir / "python")

    # 1. The pure-Python install, with no C or C++ compiler reachable: it must not need one.
    fallback = _readme_command("SABOT_BUILD_NATIVE=0 pip install")
    no_compiler = dict(env, CC=str(tmp_path / "no-cc"), CXX=str(tmp_path / "no-c++"))
    done = _run(fallback, src, no_compiler)
    assert done.returncode == 0, f"`{fallback}` failed:\n{done.stdout[-3000:]}\n" \
                                 f"{done.stderr[-3000:]}"
    probe = ("import sabot; from sabot import _native; "
             "print(sabot.process(range(5), lambda x: x * x)); "
             "print(_native.native_available(), _native.native_status())")
    ran = subprocess.run([python, "-c", probe], cwd=tmp_path, env=env, capture_output=True,
                         text=True, timeout=120)
    assert ran.returncode == 0, ran.stderr[-3000:]
    lines = ran.stdout.splitlines()
    assert lines[0] == "[0, 1, 4, 9, 16]"
    assert lines[1].startswith("False"), lines[1]

    # 2. The README's rebuild hook in that environment: the build tools were only in pip's
    # isolated build environment, so it must say which are missing and how to install them.
    build = _readme_command("setup.py build_ext")
    failed = _run(build, src, env)
    assert failed.returncode != 0
    assert "pybind11" in failed.stderr and "pip install -e '.[dev]'" in failed.stderr, \
        failed.stderr[-2000:]

    # 3. With the build tools the same command builds the native core into the source tree.
    tools = _run(f"{python} -m pip install -q pybind11 cython" + (
        "" if shutil.which("cmake") else " cmake") + ("" if shutil.which("ninja") else " ninja"),
        src, env)
    assert tools.returncode == 0, tools.stderr[-3000:]
    built = _run(build, src, env)
    assert built.returncode == 0, f"`{build}` failed:\n{built.stdout[-3000:]}\n" \
                                  f"{built.stderr[-3000:]}"
    probe = ("from sabot import _native; import sabot; "
             "print(_native.native_available(), sabot.get_stats()['cython_optimization'])")
    ran = subprocess.run([python, "-c", probe], cwd=tmp_path, env=env, capture_output=True,
                         text=True, timeout=120)
    assert ran.returncode == 0, ran.stderr[-3000:]
    assert ran.stdout.split() == ["True", "True"], ran.stdout + ran.stderr[-2000:]
