"""Single-node execution: morsels, executors, the adaptive controller and streaming.

``LocalEngine`` is what single-node mode runs and what every cluster worker runs its morsels
through. ``batch`` marks a function that takes a whole morsel.
"""

from __future__ import annotations

from .controller import AdaptiveController, Plan, Reading
from .functions import BatchFunction, FunctionSpec, batch, resolve_function
from .local_engine import LocalEngine

__all__ = [
    "LocalEngine", "AdaptiveController", "Plan", "Reading", "batch", "BatchFunction",
    "FunctionSpec", "resolve_function",
]
