"""Fixtures of the deployment tests; the helpers live in deploy_support.py."""

from __future__ import annotations

import os
import sys
from pathlib import Path
from types import ModuleType

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))

import deploy_support


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """The artifact tests (@pytest.mark.artifacts: the container image and the binary wheel,
    built whole, minutes each) run only when asked for: ``-m artifacts`` (or any -m naming
    it) or SABOT_ARTIFACTS=1. .ci/run asks for them after the suite."""
    expr = str(config.getoption("markexpr", "") or "")
    if os.environ.get("SABOT_ARTIFACTS") == "1" or "artifacts" in expr:
        return
    keep, dropped = [], []
    for item in items:
        (dropped if item.get_closest_marker("artifacts") else keep).append(item)
    if dropped:
        config.hook.pytest_deselected(items=dropped)
        items[:] = keep


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    if deploy_support.SUMMARY:
        terminalreporter.section("artifacts built")
        for line in deploy_support.SUMMARY:
            terminalreporter.write_line(line)


@pytest.fixture(scope="session")
def chart() -> ModuleType:
    """helm/render.py: ``chart.render(values)`` renders helm/sabot with Helm's own engine."""
    return deploy_support.load_render_module()


@pytest.fixture(scope="session")
def dockerfile() -> deploy_support.Dockerfile:
    """docker/Dockerfile, parsed."""
    return deploy_support.parse_dockerfile()
