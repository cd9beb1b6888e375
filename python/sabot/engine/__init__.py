"""Single-node execution: morsels, executors, the adaptive controller and streaming.

``LocalEngine`` is what single-node mode runs and what every cluster worker runs its morsels
through. ``batch`` marks a function that takes a whole morsel.

Exports are lazy: a pool worker process imports ``sabot.engine.worker_process`` alone and must
not pay for numpy and pyarrow before it needs them.
"""

from __future__ import annotations

import importlib
from typing import Any

_LAZY = {
    "LocalEngine": ".local_engine",
    "AdaptiveController": ".controller",
    "Plan": ".controller",
    "Reading": ".controller",
    "batch": ".functions",
    "BatchFunction": ".functions",
    "FunctionSpec": ".functions",
    "resolve_function": ".functions",
}


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'sabot.engine' has no attribute {name!r}")
    value = getattr(importlib.import_module(module, __name__), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_LAZY))


__all__ = [
    "AdaptiveController", "BatchFunction", "FunctionSpec", "LocalEngine", "Plan", "Reading",
    "batch", "resolve_function",
]
