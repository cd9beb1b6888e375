"""sabot.get_stats(): the same keys with native and fallback, and values that are true."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pyarrow
import pytest

import sabot
from sabot import _native

KEYS = {
    "cython_optimization", "native", "native_status", "numa_binding", "numa_nodes", "pinned",
    "topology", "hwloc", "threads", "usable_cores", "arrow_version", "morsels_executed",
    "morsels_stolen", "busy_seconds", "worker_busy_seconds", "workers",
}


def test_same_keys_in_both_modes(native_mode: str) -> None:
    stats = sabot.get_stats()
    assert KEYS <= set(stats)
    assert stats["cython_optimization"] is (native_mode == "native")
    assert stats["native"] is (native_mode == "native")
    assert stats["arrow_version"] == pyarrow.__version__
    assert stats["numa_nodes"] >= 1
    assert stats["threads"] >= 1
    json.dumps(stats)  # plain data, ready for the HTTP API


def test_fallback_reports_what_is_true() -> None:
    previous = _native.is_native_enabled()
    _native.set_native_enabled(False)
    try:
        stats = sabot.get_stats()
        assert stats["numa_binding"] is False and stats["pinned"] is False
        assert stats["morsels_executed"] == 0 and stats["workers"] == []
        assert "disabled" in stats["native_status"]
        assert sabot.native_available() is False
        _native.set_threads(3)
        assert sabot.get_stats()["threads"] == 3
    finally:
        _native.set_native_enabled(previous)


def test_native_counters_and_binding(native_core) -> None:
    before = sabot.get_stats()
    native_core.run_spin(before["threads"] * 5, 2_000_000)
    after = sabot.get_stats()
    assert after["morsels_executed"] == before["morsels_executed"] + before["threads"] * 5
    assert len(after["worker_busy_seconds"]) == after["threads"]
    assert sum(after["worker_busy_seconds"]) > sum(before["worker_busy_seconds"])
    # NUMA binding means hwloc bound every worker; without hwloc it must say False.
    assert after["numa_binding"] == (after["hwloc"] and after["pinned"])
    assert after["topology"] == ("hwloc" if after["hwloc"] else "sysfs")
    for w in after["workers"]:
        assert {"worker_id", "tid", "cpu", "numa_node", "morsels_executed", "morsels_stolen",
                "busy_seconds"} <= set(w)


def test_disable_native_environment_variable(native_core) -> None:
    code = "import sabot, json; print(json.dumps(sabot.get_stats()))"
    env = {**os.environ, "SABOT_DISABLE_NATIVE": "1"}
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True,
                         timeout=60, check=True)
    stats = json.loads(out.stdout)
    assert stats["cython_optimization"] is False
    assert stats["native"] is False
    # And the compiled module was not even imported.
    code2 = "import sys, sabot; sabot.get_stats(); print('sabot._core' in sys.modules)"
    out2 = subprocess.run([sys.executable, "-c", code2], env=env, capture_output=True, text=True,
                          timeout=60, check=True)
    assert out2.stdout.strip() == "False"


def test_invalid_disable_native_value_is_refused() -> None:
    code = "import sabot; sabot.get_stats()"
    env = {**os.environ, "SABOT_DISABLE_NATIVE": "maybe"}
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True,
                         timeout=60)
    assert out.returncode != 0
    assert "SABOT_DISABLE_NATIVE='maybe' is invalid" in out.stderr


@pytest.mark.parametrize("value", ["0", "false"])
def test_native_module_loads_when_enabled(native_core, value: str) -> None:
    # SABOT_DISABLE_NATIVE=0 / false (the default) uses the compiled parts.
    code = "import sabot; print(sabot.get_stats()['cython_optimization'])"
    env = {**os.environ, "SABOT_DISABLE_NATIVE": value}
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True,
                         timeout=60, check=True)
    assert out.stdout.strip() == "True"


def test_configure_applies_disable_native_and_max_workers(native_core) -> None:
    from sabot.config import load_config

    original = native_core.num_threads()
    previous = _native.is_native_enabled()
    try:
        _native.configure(load_config(env={}, max_workers=1))
        assert _native.native_available() and native_core.num_threads() == 1
        _native.configure(load_config(env={"SABOT_DISABLE_NATIVE": "1"}))
        assert sabot.get_stats()["native"] is False
    finally:
        _native.set_native_enabled(previous)
        native_core.set_threads(original)
