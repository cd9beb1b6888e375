"""Sabot: a distributed streaming and data-processing engine.

The public API is re-exported here lazily, so ``import sabot`` stays cheap and a part that is
not needed (the cluster, the HTTP API) is not imported until it is used.
"""

from __future__ import annotations

import importlib
from typing import Any

from .errors import (  # noqa: F401  (re-exported)
    AuthenticationError,
    CancelledError,
    ClusterMismatchError,
    ConfigError,
    CoordinatorUnavailableError,
    JobExpiredError,
    JobFailedError,
    JobIdConflictError,
    JobNotFoundError,
    JobTimeoutError,
    JournalUnwritableError,
    ProcessingError,
    ProtocolError,
    SabotError,
    UnknownProcessorError,
    VersionMismatchError,
    WorkerLostError,
)
from .version import __version__  # noqa: F401  (re-exported)

# public name -> module (relative to this package) that defines it
_LAZY: dict[str, str] = {
    # configuration
    "Config": ".config",
    "load_config": ".config",
    # native core
    "get_stats": "._native",
    "native_available": "._native",
    "columnar": ".columnar",
    # single-node engine and launcher
    "ComposableLauncher": ".launcher",
    "create_composable_launcher": ".launcher",
    "launch_sabot": ".launcher",
    "process": ".launcher",
    "batch": ".engine.functions",
    "processor": ".processors",
    "register_processor": ".processors",
    "get_processor": ".processors",
    "list_processors": ".processors",
    # cluster (the distributed API)
    "create_distributed_coordinator": ".distributed",
    "create_worker_node": ".distributed",
    "submit_distributed_job": ".distributed",
    "get_distributed_job_result": ".distributed",
    "get_distributed_job_status": ".distributed",
    "cancel_distributed_job": ".distributed",
    "stream_distributed_job_result": ".distributed",
}


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'sabot' has no attribute {name!r}")
    mod = importlib.import_module(module, __name__)
    value = mod if name == module.lstrip(".") else getattr(mod, name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_LAZY))


__all__ = sorted(set(_LAZY) | {
    "AuthenticationError", "CancelledError", "ClusterMismatchError", "ConfigError",
    "CoordinatorUnavailableError", "JobExpiredError", "JobFailedError", "JobIdConflictError", "JobNotFoundError",
    "JobTimeoutError", "JournalUnwritableError", "ProcessingError", "ProtocolError", "SabotError", "UnknownProcessorError",
    "VersionMismatchError", "WorkerLostError",
})
