"""A function that cannot be pickled runs inline on one core: the engine says so, once per
function, with the reason and how to fix it (sabot.errors.InlineFallbackWarning)."""

from __future__ import annotations

import asyncio
import sys
import threading
import warnings
from typing import Any

import cloudpickle
import pytest

from sabot.config import load_config
from sabot.engine.local_engine import LocalEngine
from sabot.errors import InlineFallbackWarning

# The pool's processes cannot import this test module (pytest's importlib mode): by value.
cloudpickle.register_pickle_by_value(sys.modules[__name__])

ITEMS = list(range(20_000))


def _locked_function() -> Any:
    lock = threading.Lock()  # captured: a lock cannot be pickled

    def locked(x: int) -> int:
        with lock:
            total = 0
            for i in range(200):
                total += i
            return x + total

    return locked


def _plain(x: int) -> int:
    total = 0
    for i in range(200):
        total += i
    return x + total


def _calls(*funcs: Any) -> tuple[list[warnings.WarningMessage], list[list[int]], str]:
    async def main() -> tuple[list[list[int]], str]:
        engine = LocalEngine(load_config(env={}, max_workers=2))
        try:
            if engine.controller.workers_for_call() < 2:
                pytest.skip("one usable core: the engine never plans worker processes here")
            outs = [await engine.process(ITEMS, f) for f in funcs]
            return outs, engine.get_stats()["controller"]["reason"]
        finally:
            await engine.close()

    with warnings.catch_warnings(record=True) as seen:
        warnings.simplefilter("always")
        outs, reason = asyncio.run(main())
    return [w for w in seen if issubclass(w.category, InlineFallbackWarning)], outs, reason


def test_an_unpicklable_function_warns_once_with_the_reason_and_the_fix() -> None:
    first, second = _locked_function(), _locked_function()
    seen, outs, reason = _calls(first, first, first, second)
    expected = [_plain(x) for x in ITEMS]
    assert all(out == expected for out in outs)  # it still runs, inline
    assert "cannot be pickled" in reason
    # Once per function: three calls of the first, one of the second.
    assert len(seen) == 2, [str(w.message) for w in seen]
    text = str(seen[0].message)
    assert "locked runs inline on one core" in text, text
    assert "_thread.lock" in text and "Make it picklable" in text, text
    assert seen[0].filename == __file__, seen[0].filename  # points at the caller's code


def test_a_picklable_function_does_not_warn() -> None:
    seen, outs, _ = _calls(_plain)
    assert outs[0] == [_plain(x) for x in ITEMS]
    assert seen == []
