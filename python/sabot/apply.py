"""Apply a per-item Python function over a morsel of Python objects.

:func:`apply_items` uses the compiled Cython loop (``sabot._apply``) when the native parts are
loaded, and an equivalent pure-Python loop otherwise; both raise
:class:`~sabot.errors.ProcessingError` naming the failing item.
"""

from __future__ import annotations

from typing import Any, Callable, Sequence

from . import _native
from .errors import ProcessingError


def _name(func: Any) -> str:
    return getattr(func, "__qualname__", None) or getattr(func, "__name__", None) or repr(func)


def _failure(func: Any, index: int, morsel: int | None, exc: BaseException) -> ProcessingError:
    where = f"item {index}" + (f" (morsel {morsel})" if morsel is not None else "")
    return ProcessingError(
        f"{_name(func)} failed on {where}: {type(exc).__name__}: {exc}",
        index=index,
        morsel=morsel,
        original=exc,
    )


def _python_loop(func: Callable[[Any], Any], items: Sequence[Any], offset: int,
                 morsel: int | None) -> list[Any]:
    out: list[Any] = []
    append = out.append
    for item in items:
        try:
            append(func(item))
        except Exception as exc:
            raise _failure(func, offset + len(out), morsel, exc) from exc
    return out


def apply_items(func: Callable[[Any], Any], items: Sequence[Any], offset: int = 0, *,
                morsel: int | None = None) -> list[Any]:
    """Return ``[func(x) for x in items]``, in order.

    ``offset`` is the position of ``items[0]`` in the whole input, so that a failure raises
    :class:`~sabot.errors.ProcessingError` with ``index = offset + i`` (and ``morsel`` when
    given) and the function's exception as ``original``. ``items`` may be any sized iterable; a
    list is used as is, anything else is copied into one first.
    """
    if not callable(func):
        raise TypeError(f"apply_items needs a callable, got {type(func).__name__}")
    if not isinstance(offset, int) or offset < 0:
        raise ValueError(f"offset must be an integer >= 0, got {offset!r}")
    compiled = _native.get_apply()
    if compiled is None:
        return _python_loop(func, items, offset, morsel)
    seq = items if type(items) is list else list(items)
    try:
        return compiled.apply_list(func, seq, 0, len(seq))
    except compiled.ItemFailed as failed:
        exc = failed.original
        raise _failure(func, offset + failed.position, morsel, exc) from exc


def native_loop_available() -> bool:
    """True when the compiled Cython loop is loaded and enabled."""
    return _native.get_apply() is not None


def __getattr__(name: str) -> Any:
    # NATIVE follows the current native switch (SABOT_DISABLE_NATIVE, set_native_enabled).
    if name == "NATIVE":
        return native_loop_available()
    raise AttributeError(f"module 'sabot.apply' has no attribute {name!r}")


__all__ = ["apply_items", "native_loop_available"]
