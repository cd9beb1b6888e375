"""Build the C++ unit tests (cpp/tests, GoogleTest) with CMake and run them through ctest: once
as a normal build and once under ThreadSanitizer. This is how ``pytest`` runs the C++ tests.

Builds go to ``build/cpp-tests*`` in the source tree (incremental on reruns). The scheduler tests
link only the scheduler library (no Arrow), so those builds take seconds; that is also the part
run under ThreadSanitizer (libarrow is not built with it, so reports from inside it would not be
ours). The compute tests (aggregate strategies, grouped partial states) have a build of their
own, which compiles the Arrow compute library.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
BUILD_ROOT = ROOT / "build"


def _run(cmd: list[str], **kwargs: object) -> subprocess.CompletedProcess[str]:
    return subprocess.run(cmd, capture_output=True, text=True, **kwargs)  # type: ignore[call-overload]


SCHEDULER_SUITES = ("MorselPlan.", "Topology.", "TaskScheduler.")
COMPUTE_SUITES = ("AggregateStrategy.", "GroupedStates.", "IntGroupMap.")


def _build(
    name: str, extra_flags: list[str], targets: tuple[str, ...] = ("sabot_cpp_tests",)
) -> Path:
    if shutil.which("cmake") is None:
        pytest.skip("cmake is not installed (pip install cmake, or apt-get install cmake)")
    build = BUILD_ROOT / name
    configure = [
        "cmake", "-S", str(ROOT), "-B", str(build),
        "-DSABOT_BUILD_TESTS=ON", "-DSABOT_BUILD_PYTHON=OFF",
        "-DCMAKE_BUILD_TYPE=RelWithDebInfo", f"-DPython_EXECUTABLE={sys.executable}",
        *extra_flags,
    ]
    if shutil.which("ninja"):
        configure += ["-G", "Ninja"]
    cache = build / "CMakeCache.txt"
    if cache.exists() and "Ninja" not in cache.read_text() and shutil.which("ninja"):
        shutil.rmtree(build)  # generator changed since the last run
    result = _run(configure)
    if result.returncode != 0:
        if "GTest" in result.stderr or "GTest" in result.stdout:
            pytest.skip("GoogleTest is not installed (apt-get install libgtest-dev googletest)")
        pytest.fail(f"cmake configure failed:\n{result.stdout[-3000:]}\n{result.stderr[-3000:]}")
    result = _run(["cmake", "--build", str(build), "--target", *targets])
    assert result.returncode == 0, f"C++ test build failed:\n{result.stdout[-6000:]}\n{result.stderr[-3000:]}"
    return build


def _ctest(build: Path, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return _run(
        ["ctest", "--test-dir", str(build), "--output-on-failure", "--timeout", "120"],
        env={**os.environ, **(env or {})},
        timeout=600,
    )


def _tsan_supported() -> str | None:
    """None when the compiler can build and run a -fsanitize=thread program, else why not."""
    cxx = os.environ.get("CXX") or shutil.which("c++") or shutil.which("g++") or shutil.which("clang++")
    if cxx is None:
        return "no C++ compiler found"
    probe_dir = BUILD_ROOT / "tsan-probe"
    probe_dir.mkdir(parents=True, exist_ok=True)
    src = probe_dir / "probe.cpp"
    src.write_text("#include <thread>\nint main(){int x=0; std::thread t([&]{x=1;}); t.join(); return x-1;}\n")
    exe = probe_dir / "probe"
    built = _run([cxx, "-fsanitize=thread", "-pthread", str(src), "-o", str(exe)])
    if built.returncode != 0:
        return f"the toolchain cannot build with -fsanitize=thread: {built.stderr.strip()[:300]}"
    ran = _run([str(exe)])
    if ran.returncode != 0:
        return f"ThreadSanitizer programs do not run here: {ran.stderr.strip()[:300]}"
    return None


def test_cpp_unit_tests() -> None:
    build = _build("cpp-tests", ["-DSABOT_WITH_HWLOC=ON", "-DSABOT_BUILD_COMPUTE_TESTS=OFF"])
    result = _ctest(build)
    assert result.returncode == 0, f"C++ tests failed:\n{result.stdout[-8000:]}\n{result.stderr[-2000:]}"
    assert "100% tests passed" in result.stdout
    # Every test file contributed tests (guards against a silently empty discovery).
    for suite in SCHEDULER_SUITES:
        assert suite in result.stdout


# A fresh build compiles the whole Arrow compute library (minutes on a loaded machine): the
# timeout is a hang guard, not a speed check.
@pytest.mark.timeout(1200)
def test_cpp_compute_unit_tests() -> None:
    build = _build("cpp-tests-compute", ["-DSABOT_BUILD_COMPUTE_TESTS=ON"],
                   ("sabot_cpp_tests", "sabot_compute_tests"))
    result = _ctest(build)
    assert result.returncode == 0, f"C++ tests failed:\n{result.stdout[-8000:]}\n{result.stderr[-2000:]}"
    assert "100% tests passed" in result.stdout
    for suite in SCHEDULER_SUITES + COMPUTE_SUITES:
        assert suite in result.stdout


def test_cpp_unit_tests_without_hwloc() -> None:
    # The sysfs fallback: topology from /sys, pinning with sched_setaffinity, numa_binding false.
    build = _build("cpp-tests-nohwloc", ["-DSABOT_WITH_HWLOC=OFF", "-DSABOT_BUILD_COMPUTE_TESTS=OFF"])
    cache = (build / "CMakeCache.txt").read_text()
    assert "SABOT_WITH_HWLOC:BOOL=OFF" in cache
    result = _ctest(build)
    assert result.returncode == 0, f"C++ tests without hwloc failed:\n{result.stdout[-8000:]}"
    assert "100% tests passed" in result.stdout


def test_cpp_unit_tests_under_thread_sanitizer() -> None:
    reason = _tsan_supported()
    if reason is not None:
        pytest.skip(reason)
    flags = "-fsanitize=thread -fno-omit-frame-pointer"
    build = _build("cpp-tests-tsan", [f"-DCMAKE_CXX_FLAGS={flags}", "-DCMAKE_EXE_LINKER_FLAGS=-fsanitize=thread",
                                      "-DSABOT_BUILD_COMPUTE_TESTS=OFF"])
    # halt_on_error: a data race fails the test process instead of only printing a report.
    result = _ctest(build, {"TSAN_OPTIONS": "halt_on_error=1 exitcode=66 second_deadlock_stack=1"})
    assert result.returncode == 0, f"C++ tests under TSan failed:\n{result.stdout[-8000:]}\n{result.stderr[-2000:]}"
    assert "ThreadSanitizer" not in result.stdout
    assert "100% tests passed" in result.stdout
