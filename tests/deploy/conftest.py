"""Fixtures of the deployment tests; the helpers live in deploy_support.py."""

from __future__ import annotations

import sys
from pathlib import Path
from types import ModuleType

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))

import deploy_support


@pytest.fixture(scope="session")
def chart() -> ModuleType:
    """helm/render.py: ``chart.render(values)`` renders helm/sabot with Helm's own engine."""
    return deploy_support.load_render_module()


@pytest.fixture(scope="session")
def dockerfile() -> deploy_support.Dockerfile:
    """docker/Dockerfile, parsed."""
    return deploy_support.parse_dockerfile()
