"""Installing Sabot: the pure-Python install (SABOT_BUILD_NATIVE=0), the native wheel, and the
``python setup.py build_ext --inplace`` developer hook, each from a clean copy of the sources
into a fresh virtual environment (dependencies come from the configured package index)."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import sysconfig
import venv
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
EXT = sysconfig.get_config_var("EXT_SUFFIX") or ".so"


def _copy_sources(dest: Path) -> Path:
    """The tracked files only (no build directories, no compiled modules)."""
    src = dest / "src"
    listed = subprocess.run(["git", "ls-files", "-z"], cwd=ROOT, capture_output=True)
    if listed.returncode != 0:
        pytest.skip("not a git checkout: cannot list the tracked sources")
    for name in listed.stdout.decode().split("\0"):
        if not name or not (ROOT / name).is_file():
            continue
        target = src / name
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(ROOT / name, target)
    return src


def _venv(dest: Path) -> Path:
    venv.EnvBuilder(with_pip=True, clear=True).create(dest / "venv")
    return dest / "venv" / "bin" / "python"


def _pip(python: Path, *args: str, env: dict[str, str] | None = None, timeout: int = 900) -> None:
    result = subprocess.run([str(python), "-m", "pip", "install", "--disable-pip-version-check",
                             *args], capture_output=True, text=True, timeout=timeout,
                            env={**os.environ, **(env or {})})
    assert result.returncode == 0, f"pip install failed:\n{result.stdout[-4000:]}\n{result.stderr[-4000:]}"


def _stats(python: Path, cwd: Path) -> dict:
    code = ("import json, sabot, os; s = sabot.get_stats(); "
            "s['file'] = sabot.__file__; print(json.dumps(s))")
    out = subprocess.run([str(python), "-c", code], cwd=cwd, capture_output=True, text=True,
                         timeout=120, env={k: v for k, v in os.environ.items()
                                           if k not in ("PYTHONPATH", "SABOT_DISABLE_NATIVE")})
    assert out.returncode == 0, out.stderr
    return json.loads(out.stdout.strip().splitlines()[-1])


def test_pure_python_install(tmp_path: Path) -> None:
    src = _copy_sources(tmp_path)
    python = _venv(tmp_path)
    _pip(python, str(src), env={"SABOT_BUILD_NATIVE": "0"})
    site = Path(subprocess.check_output(
        [str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
        text=True).strip())
    assert not list((site / "sabot").glob(f"_core*{EXT}")), "SABOT_BUILD_NATIVE=0 compiled anyway"
    stats = _stats(python, tmp_path)
    assert stats["file"].startswith(str(site))
    assert stats["cython_optimization"] is False and stats["native"] is False
    # The fallback still works end to end.
    code = ("from sabot.apply import apply_items; "
            "assert apply_items(lambda x: x + 1, [1, 2]) == [2, 3]; print('ok')")
    out = subprocess.run([str(python), "-c", code], cwd=tmp_path, capture_output=True, text=True,
                         timeout=120)
    assert out.stdout.strip() == "ok", out.stderr


@pytest.mark.slow
def test_native_wheel_install(tmp_path: Path) -> None:
    src = _copy_sources(tmp_path)
    python = _venv(tmp_path)
    _pip(python, str(src))
    stats = _stats(python, tmp_path)
    assert "site-packages" in stats["file"]
    assert stats["cython_optimization"] is True
    assert stats["threads"] >= 1
    # The extension finds libarrow through its rpath into the installed pyarrow.
    site = Path(stats["file"]).parent
    core = next(site.glob(f"_core*{EXT}"))
    readelf = shutil.which("readelf")
    if readelf:
        dyn = subprocess.run([readelf, "-d", str(core)], capture_output=True, text=True).stdout
        assert "$ORIGIN/../pyarrow" in dyn


@pytest.mark.slow
def test_setup_py_build_ext_inplace(tmp_path: Path) -> None:
    src = _copy_sources(tmp_path)
    out = subprocess.run([sys.executable, "setup.py", "build_ext", "--inplace"], cwd=src,
                         capture_output=True, text=True, timeout=900)
    assert out.returncode == 0, out.stdout[-4000:] + out.stderr[-4000:]
    built = sorted(p.name for p in (src / "python" / "sabot").glob(f"*{EXT}"))
    assert built == sorted([f"_apply{EXT}", f"_core{EXT}"])
    # python -S and explicit paths: site-packages is searched, but its .pth files (such as the
    # editable install of the checkout running this test) are not executed.
    purelib = sysconfig.get_paths()["purelib"]
    code = (f"import sys; sys.path[:0] = [{str(src / 'python')!r}]; sys.path.append({purelib!r}); "
            "import sabot, sabot._core, sabot._apply; "
            "print(sabot._core.__file__, sabot.get_stats()['cython_optimization'])")
    env = {k: v for k, v in os.environ.items() if k not in ("SABOT_DISABLE_NATIVE", "PYTHONPATH")}
    run = subprocess.run([sys.executable, "-S", "-c", code], cwd=tmp_path, capture_output=True,
                         text=True, timeout=120, env=env)
    assert run.returncode == 0, run.stderr
    path, flag = run.stdout.split()
    assert path.startswith(str(src / "python" / "sabot"))
    assert flag == "True"
