"""Shared fixtures. Keep additions small and additive (several parts of Sabot use this file)."""

from __future__ import annotations

import importlib.util
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest


@pytest.fixture(params=["native", "fallback"])
def native_mode(request: pytest.FixtureRequest) -> Iterator[str]:
    """Run the test twice: with the compiled parts (skipped when they are not built) and with
    the pure-Python fallback (as under SABOT_DISABLE_NATIVE=1). Yields "native" or "fallback"."""
    from sabot import _native

    previous = _native.is_native_enabled()
    want = request.param == "native"
    _native.set_native_enabled(want)
    try:
        if want and not _native.native_available():
            pytest.skip(f"compiled parts not available: {_native.native_status()}")
        yield request.param
    finally:
        _native.set_native_enabled(previous)


@pytest.fixture
def native_core():  # type: ignore[no-untyped-def]
    """The compiled sabot._core module; skips when Sabot was installed without it."""
    from sabot import _native

    core = _native.get_core()
    if core is None:
        pytest.skip(f"compiled parts not available: {_native.native_status()}")
    return core


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Long variants (@pytest.mark.slow: chaos loops, soak, large fuzz, full builds) are
    deselected unless asked for with ``-m slow`` (or any -m naming slow) or SABOT_SLOW=1, so a
    plain ``pytest`` (CI) runs the short forms."""
    import os

    expr = str(config.getoption("markexpr", "") or "")
    if os.environ.get("SABOT_SLOW") == "1" or "slow" in expr:
        return
    keep, dropped = [], []
    for item in items:
        (dropped if item.get_closest_marker("slow") else keep).append(item)
    if dropped:
        config.hook.pytest_deselected(items=dropped)
        items[:] = keep


def _load_helper(name: str, file: str) -> Any:
    # pytest's importlib mode puts no test directory on sys.path: load a shared helper module
    # (tests/nodes.py, tests/kafka_broker.py) by path once, under ``name``, for the test modules
    # to import.
    if name not in sys.modules:
        spec = importlib.util.spec_from_file_location(name, Path(__file__).parent / file)
        assert spec is not None and spec.loader is not None
        module = importlib.util.module_from_spec(spec)
        sys.modules[name] = module
        spec.loader.exec_module(module)
    return sys.modules[name]


nodes = _load_helper("sabot_test_nodes", "nodes.py")
kafka = _load_helper("sabot_test_kafka", "kafka_broker.py")
_load_helper("sabot_test_killable", "stream/procs/killable.py")

# The session's Tansu broker and a factory of topics on it (tests/kafka_broker.py).
kafka_broker = kafka.kafka_broker
kafka_topic = kafka.kafka_topic


@pytest.fixture
def inproc_node(tmp_path: Path) -> Iterator[Any]:
    """An in-process HTTP node (HttpApi + LocalBackend on a free loopback port)."""
    node = nodes.InProcessNode(tmp_path / "node")
    yield node
    node.stop()
