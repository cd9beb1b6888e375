"""Loading the compiled parts, and the stats they report.

``sabot._core`` (pybind11: scheduler, Arrow compute) and ``sabot._apply`` (Cython per-item loop)
are optional. They are used unless ``Config.disable_native`` (``SABOT_DISABLE_NATIVE=1``) is set
or they cannot be imported (a ``SABOT_BUILD_NATIVE=0`` install); then every caller takes its
pure-Python path. ``core`` is the loaded ``_core`` module or None, read at each access so that
:func:`set_native_enabled` takes effect everywhere.
"""

from __future__ import annotations

import importlib
import threading
from pathlib import Path
from types import ModuleType
from typing import Any

from .config import Config, load_config
from .errors import ConfigError
from .system import usable_cores

_lock = threading.Lock()
_loaded = False
_core: ModuleType | None = None
_apply: ModuleType | None = None
_import_errors: dict[str, str] = {}
_enabled: bool | None = None  # None: decided by the configuration on first use
_fallback_threads: int | None = None


def _load() -> None:
    global _loaded, _core, _apply
    if _loaded:
        return
    with _lock:
        if _loaded:
            return
        try:
            # _core needs libarrow; importing pyarrow first loads the very copy it was built
            # against (also for in-place builds, whose rpath cannot point at site-packages).
            import pyarrow  # noqa: F401
        except ImportError as exc:  # pragma: no cover - pyarrow is a dependency
            _import_errors["pyarrow"] = str(exc)
        for name in ("_core", "_apply"):
            try:
                module = importlib.import_module(f"{__package__}.{name}")
            except ImportError as exc:
                _import_errors[name] = f"{type(exc).__name__}: {exc}"
                module = None
            if name == "_core":
                _core = module
            else:
                _apply = module
        _loaded = True


def _configured_enabled() -> bool:
    try:
        return not load_config().disable_native
    except ConfigError as exc:
        if exc.variable == "SABOT_DISABLE_NATIVE":
            raise
        # Another setting is invalid: whoever starts a node reports it. Here only the native
        # switch matters, so read that one alone (still through the validating loader).
        import os

        raw = os.environ.get("SABOT_DISABLE_NATIVE")
        env = {} if raw is None else {"SABOT_DISABLE_NATIVE": raw}
        return not load_config(env=env).disable_native


def _is_enabled() -> bool:
    global _enabled
    if _enabled is None:
        _enabled = _configured_enabled()
    return _enabled


def configure(config: Config) -> None:
    """Apply a configuration: ``disable_native`` (SABOT_DISABLE_NATIVE) and, when MAX_WORKERS is
    set explicitly, the native pool's thread count (auto keeps the usable cores)."""
    set_native_enabled(not config.disable_native)
    if config.max_workers:
        set_threads(min(config.max_workers, 4096))


def set_native_enabled(enabled: bool) -> None:
    """Use (True) or bypass (False) the compiled parts from now on, in this process."""
    global _enabled
    if not isinstance(enabled, bool):
        raise TypeError(f"set_native_enabled expects True or False, got {enabled!r}")
    _enabled = enabled


def is_native_enabled() -> bool:
    """Whether the compiled parts would be used (they may still be missing from the build)."""
    return _is_enabled()


def get_core() -> ModuleType | None:
    """The compiled ``sabot._core`` module, or None when native is disabled or not built."""
    if not _is_enabled():
        return None
    _load()
    return _core


def get_apply() -> ModuleType | None:
    """The compiled ``sabot._apply`` module, or None when native is disabled or not built."""
    if not _is_enabled():
        return None
    _load()
    return _apply


def native_available() -> bool:
    """True when the compiled core and Cython loop are loaded and enabled."""
    return get_core() is not None and get_apply() is not None


def native_status() -> str:
    """Why native is (not) in use, in words."""
    if not _is_enabled():
        return "disabled (SABOT_DISABLE_NATIVE=1 or set_native_enabled(False))"
    _load()
    if _import_errors:
        return "not loaded: " + "; ".join(f"sabot.{k}: {v}" for k, v in _import_errors.items())
    return "loaded"


def set_threads(n: int) -> None:
    """Set the native pool's thread count (1..N); without native, the fallback's thread budget."""
    global _fallback_threads
    core = get_core()
    limit = core.max_threads() if core is not None else 4096
    if isinstance(n, bool) or not isinstance(n, int) or not 1 <= n <= limit:
        raise ValueError(f"threads must be an integer from 1 to {limit}, got {n!r}")
    if core is not None:
        core.set_threads(n)
    else:
        _fallback_threads = n


def get_threads() -> int:
    """Threads the native pool (or the fallback's budget) uses."""
    core = get_core()
    if core is not None:
        return int(core.num_threads())
    return _fallback_threads or usable_cores()


def _sysfs_numa_nodes() -> int:
    try:
        nodes = [p for p in Path("/sys/devices/system/node").glob("node[0-9]*")
                 if (p / "cpulist").read_text().strip()]
        return max(1, len(nodes))
    except OSError:
        return 1


def get_stats() -> dict[str, Any]:
    """Native-core state: whether the compiled parts are in use, NUMA binding, threads, Arrow
    version, and the scheduler's counters (morsels executed and stolen, busy time per worker).
    Without native, the same keys with what is true of the pure-Python path."""
    import pyarrow

    core = get_core()
    compiled = native_available()
    if core is not None:
        s = core.get_stats()
        workers = s["workers"]
        return {
            "cython_optimization": compiled,
            "native": True,
            "native_status": native_status(),
            "numa_binding": s["numa_binding"],
            "numa_nodes": s["numa_nodes"],
            "pinned": s["pinned"],
            "topology": s["topology"],
            "hwloc": s["hwloc"],
            "hwloc_version": s["hwloc_version"],
            "threads": s["threads"],
            "usable_cores": s["usable_cores"],
            "arrow_version": s["arrow_version"],
            "pyarrow_version": pyarrow.__version__,
            "morsels_executed": s["morsels_executed"],
            "morsels_stolen": s["morsels_stolen"],
            "tasks_executed": s["tasks_executed"],
            "task_errors": s["task_errors"],
            "parallel_for_calls": s["parallel_for_calls"],
            "busy_seconds": s["busy_seconds"],
            "worker_busy_seconds": [w["busy_seconds"] for w in workers],
            "workers": workers,
        }
    return {
        "cython_optimization": False,
        "native": False,
        "native_status": native_status(),
        "numa_binding": False,
        "numa_nodes": _sysfs_numa_nodes(),
        "pinned": False,
        "topology": "sysfs",
        "hwloc": False,
        "hwloc_version": "",
        "threads": get_threads(),
        "usable_cores": usable_cores(),
        "arrow_version": pyarrow.__version__,
        "pyarrow_version": pyarrow.__version__,
        "morsels_executed": 0,
        "morsels_stolen": 0,
        "tasks_executed": 0,
        "task_errors": 0,
        "parallel_for_calls": 0,
        "busy_seconds": 0.0,
        "worker_busy_seconds": [],
        "workers": [],
    }


def __getattr__(name: str) -> Any:
    if name == "core":
        return get_core()
    raise AttributeError(f"module 'sabot._native' has no attribute {name!r}")


__all__ = [
    "configure", "set_native_enabled", "is_native_enabled", "get_core", "get_apply", "native_available",
    "native_status", "set_threads", "get_threads", "get_stats",
]
