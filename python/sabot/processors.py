"""Named processors: functions the HTTP API, the CLI and the cluster can run by name.

Naming a processor instead of shipping code is how untrusted clients (the HTTP API) run work:
only functions registered here, in this process, can run. Add one with ``@sabot.processor("name")``
or list modules in ``SABOT_PROCESSORS`` to import at start.
"""

from __future__ import annotations

import importlib
import threading
from typing import Any, Callable, Iterable, TypeVar

from .errors import ConfigError, UnknownProcessorError

F = TypeVar("F", bound=Callable[..., Any])

_lock = threading.Lock()
_registry: dict[str, Callable[[Any], Any]] = {}


def register_processor(name: str, func: Callable[[Any], Any], *, replace: bool = False) -> None:
    """Register ``func`` (a per-item function) under ``name``."""
    if not isinstance(name, str) or not name or not all(c.isalnum() or c in "-_." for c in name):
        raise ValueError(
            f"processor name {name!r} is invalid: use letters, digits, '-', '_' or '.'"
        )
    if not callable(func):
        raise TypeError(f"processor {name!r} must be callable, got {type(func).__name__}")
    with _lock:
        if name in _registry and not replace and _registry[name] is not func:
            raise ValueError(f"processor {name!r} is already registered; pass replace=True")
        _registry[name] = func


def processor(name: str, *, replace: bool = False) -> Callable[[F], F]:
    """Decorator: ``@sabot.processor("name")`` registers the decorated per-item function."""

    def deco(func: F) -> F:
        register_processor(name, func, replace=replace)
        return func

    return deco


def get_processor(name: str) -> Callable[[Any], Any]:
    """The function registered under ``name``; UnknownProcessorError lists the known ones."""
    with _lock:
        func = _registry.get(name)
        if func is None:
            raise UnknownProcessorError(name, list(_registry))
        return func


def list_processors() -> list[str]:
    with _lock:
        return sorted(_registry)


def load_processor_modules(modules: Iterable[str]) -> list[str]:
    """Import each module (SABOT_PROCESSORS) so its ``@processor`` decorators run."""
    loaded = []
    for mod in modules:
        try:
            importlib.import_module(mod)
        except ImportError as exc:
            raise ConfigError(
                "SABOT_PROCESSORS", mod, f"importable module names ({exc.__class__.__name__}: {exc})"
            ) from exc
        loaded.append(mod)
    return loaded


# Built-ins. Plain module-level functions so they pickle by reference.
def identity(x: Any) -> Any:
    return x


def square(x: Any) -> Any:
    return x * x


def double(x: Any) -> Any:
    return x * 2


def negate(x: Any) -> Any:
    return -x


def length(x: Any) -> int:
    return len(x)


def increment(x: Any) -> Any:
    return x + 1


for _name, _fn in (
    ("identity", identity),
    ("square", square),
    ("double", double),
    ("negate", negate),
    ("len", length),
    ("increment", increment),
):
    register_processor(_name, _fn)

__all__ = [
    "register_processor", "processor", "get_processor", "list_processors", "load_processor_modules",
]
