"""apply_items: the Cython per-item loop and its pure-Python fallback behave the same."""

from __future__ import annotations

import pytest

from sabot import apply
from sabot.apply import apply_items
from sabot.errors import ProcessingError


def test_results_in_order(native_mode: str) -> None:
    items = list(range(1000))
    assert apply_items(lambda x: x * x, items) == [x * x for x in items]
    assert apply_items(str.upper, ["a", "b"]) == ["A", "B"]
    assert apply_items(lambda x: None, [1, 2, 3]) == [None, None, None]
    assert apply_items(lambda x: x, []) == []


def test_uses_the_compiled_loop_only_when_native(native_mode: str) -> None:
    assert apply.NATIVE is (native_mode == "native")
    assert apply.native_loop_available() is (native_mode == "native")


@pytest.mark.parametrize("make", [lambda: (1, 2, 3), lambda: range(1, 4), lambda: iter([1, 2, 3])],
                         ids=["tuple", "range", "iterator"])
def test_accepts_any_iterable(native_mode: str, make: object) -> None:
    assert apply_items(lambda x: x + 1, make()) == [2, 3, 4]  # type: ignore[operator]


def failing(x: int) -> float:
    return 10 / (x - 7)


def test_failure_names_the_item_and_keeps_the_original(native_mode: str) -> None:
    with pytest.raises(ProcessingError) as info:
        apply_items(failing, list(range(20)), offset=1000, morsel=3)
    err = info.value
    assert err.index == 1007
    assert err.morsel == 3
    assert isinstance(err.original, ZeroDivisionError)
    assert err.__cause__ is err.original
    assert "failing failed on item 1007 (morsel 3): ZeroDivisionError" in str(err)
    # The original traceback reaches the function's own frame.
    assert "in failing" in err.remote_traceback


def test_first_failure_stops_the_loop(native_mode: str) -> None:
    seen: list[int] = []

    def f(x: int) -> int:
        seen.append(x)
        if x == 2:
            raise ValueError("bad item")
        return x

    with pytest.raises(ProcessingError, match="ValueError: bad item"):
        apply_items(f, [0, 1, 2, 3, 4])
    assert seen == [0, 1, 2]


def test_base_exceptions_are_not_wrapped(native_mode: str) -> None:
    def interrupt(x: int) -> int:
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        apply_items(interrupt, [1])


def test_results_survive_a_later_failure_without_leaks(native_mode: str) -> None:
    import gc
    import sys

    marker = object()
    before = sys.getrefcount(marker)
    for _ in range(100):
        with pytest.raises(ProcessingError):
            apply_items(lambda x: marker if x < 5 else 1 / 0, list(range(10)))
    gc.collect()
    # The partial result lists were freed together with their references to marker.
    assert sys.getrefcount(marker) == before


def test_bad_arguments(native_mode: str) -> None:
    with pytest.raises(TypeError, match="needs a callable"):
        apply_items(42, [1])  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="offset must be an integer >= 0"):
        apply_items(str, [1], offset=-1)
