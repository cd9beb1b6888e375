"""Developer shim for ``python setup.py build_ext --inplace``.

The real build is CMake (driven by scikit-build-core for ``pip install``). This script keeps the
documented developer hook: it configures and builds the same CMake project into
``build/setup-py`` and, with ``--inplace``, copies the compiled modules (``sabot/_core``,
``sabot/_apply``) beside the Python sources in ``python/sabot`` so that
``PYTHONPATH=python python -c "import sabot"`` uses them. It needs cmake, a C++20 compiler,
pybind11, Cython and pyarrow (``pip install -e .[dev]`` installs them).

    python setup.py build_ext --inplace [-j N] [--debug]
    python setup.py clean
"""

from __future__ import annotations

import argparse
import glob
import os
import shutil
import subprocess
import sys
import sysconfig
from pathlib import Path

ROOT = Path(__file__).resolve().parent
BUILD = ROOT / "build" / "setup-py"
PACKAGE = ROOT / "python" / "sabot"


def _pyarrow_lib_dir() -> str:
    import pyarrow

    return pyarrow.get_library_dirs()[0]


def _cmake_prefix_path() -> str:
    paths = []
    for mod in ("pybind11",):
        try:
            module = __import__(mod)
            paths.append(module.get_cmake_dir())
        except (ImportError, AttributeError):
            pass
    return ";".join(paths)


#: What build_ext needs in this environment beside a C++20 compiler: module -> pip name.
_BUILD_MODULES = {"pybind11": "pybind11", "Cython": "cython", "pyarrow": "pyarrow"}


def _missing_build_tools() -> list[str]:
    missing = []
    for module, name in _BUILD_MODULES.items():
        try:
            __import__(module)
        except ImportError:
            missing.append(name)
    if shutil.which("cmake") is None:
        missing.append("cmake")
    return missing


def build_ext(inplace: bool, jobs: int | None, debug: bool) -> int:
    missing = _missing_build_tools()
    if missing:
        # `pip install .` builds in an isolated environment of its own, so its build tools are
        # not left in this one.
        print(f"error: python setup.py build_ext needs {', '.join(missing)} in this Python "
              f"environment ({sys.executable}); install the development tools with "
              f"pip install -e '.[dev]' (or: pip install {' '.join(missing)})",
              file=sys.stderr)
        return 1
    BUILD.mkdir(parents=True, exist_ok=True)
    configure = [
        "cmake", "-S", str(ROOT), "-B", str(BUILD),
        f"-DPython_EXECUTABLE={sys.executable}",
        f"-DCMAKE_BUILD_TYPE={'Debug' if debug else 'Release'}",
        f"-DCMAKE_PREFIX_PATH={_cmake_prefix_path()}",
        # In-place modules sit in the source tree, not in site-packages beside pyarrow, so they
        # also get pyarrow's library directory as an rpath.
        f"-DSABOT_EXTRA_RPATH={_pyarrow_lib_dir()}",
    ]
    if shutil.which("ninja"):
        configure += ["-G", "Ninja"]
    env = dict(os.environ)
    print("+", " ".join(configure), flush=True)
    if subprocess.call(configure, env=env) != 0:
        return 1
    build = ["cmake", "--build", str(BUILD), "--target", "_core", "_apply"]
    if jobs:
        build += ["-j", str(jobs)]
    print("+", " ".join(build), flush=True)
    if subprocess.call(build, env=env) != 0:
        return 1
    suffix = sysconfig.get_config_var("EXT_SUFFIX") or ".so"
    built = [p for name in ("_core", "_apply") for p in glob.glob(str(BUILD / "**" / f"{name}{suffix}"), recursive=True)]
    if not built:
        print(f"error: no compiled modules found under {BUILD}", file=sys.stderr)
        return 1
    if inplace:
        for path in built:
            target = PACKAGE / Path(path).name
            shutil.copy2(path, target)
            print(f"copied {Path(path).relative_to(ROOT)} -> {target.relative_to(ROOT)}")
    else:
        print("built:", *built, sep="\n  ")
    return 0


def clean() -> int:
    shutil.rmtree(BUILD, ignore_errors=True)
    suffix = sysconfig.get_config_var("EXT_SUFFIX") or ".so"
    for name in ("_core", "_apply"):
        (PACKAGE / f"{name}{suffix}").unlink(missing_ok=True)
    print(f"removed {BUILD.relative_to(ROOT)} and the in-place modules")
    return 0


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(
        prog="setup.py",
        description="Build Sabot's compiled modules with CMake (pip install uses scikit-build-core).",
    )
    sub = parser.add_subparsers(dest="command", required=True)
    ext = sub.add_parser("build_ext", help="build sabot._core and sabot._apply")
    ext.add_argument("--inplace", "-i", action="store_true",
                     help="copy the modules into python/sabot for in-place development")
    ext.add_argument("-j", "--parallel", type=int, default=None, help="parallel build jobs")
    ext.add_argument("--debug", "-g", action="store_true", help="build with debug information")
    sub.add_parser("clean", help="remove the build directory and in-place modules")
    args = parser.parse_args(argv)
    if args.command == "build_ext":
        return build_ext(args.inplace, args.parallel, args.debug)
    return clean()


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
