"""Running a coroutine to its end from synchronous code, also from a thread that already runs
an event loop (a notebook, an async framework): then on a thread of its own."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable, Coroutine
from typing import Any


def run_blocking(make: Callable[[], Coroutine[Any, Any, Any]], thread_name: str = "sabot-run") -> Any:
    """``make()``'s coroutine run to its end; its exception is raised here."""
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return asyncio.run(make())
    box: dict[str, Any] = {}

    def target() -> None:
        try:
            box["value"] = asyncio.run(make())
        except BaseException as exc:  # noqa: BLE001 - re-raised in the caller
            box["error"] = exc

    t = threading.Thread(target=target, name=thread_name)
    t.start()
    t.join()
    if "error" in box:
        raise box["error"]
    return box["value"]
