"""Fixtures of the fuzz tests: real nodes from tests/nodes.py (loaded as ``sabot_test_nodes``)."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from typing import Any, Iterator

import pytest


def _load_nodes() -> Any:
    # pytest's importlib mode puts no test directory on sys.path: load the shared helper by path.
    name = "sabot_test_nodes"
    if name not in sys.modules:
        spec = importlib.util.spec_from_file_location(name, Path(__file__).parents[1] / "nodes.py")
        assert spec is not None and spec.loader is not None
        module = importlib.util.module_from_spec(spec)
        sys.modules[name] = module
        spec.loader.exec_module(module)
    return sys.modules[name]


nodes = _load_nodes()


@pytest.fixture(autouse=True)
def _slow_gate(request: pytest.FixtureRequest) -> None:
    if request.node.get_closest_marker("slow") and not nodes.slow_enabled(request.config):
        pytest.skip("long variant: run with -m slow or SABOT_SLOW=1")


@pytest.fixture
def inproc_node(tmp_path: Path) -> Iterator[Any]:
    node = nodes.InProcessNode(tmp_path / "node")
    yield node
    node.stop()
