"""Progress bars for the calls that take ``progress=True`` (tqdm, on stderr; off by default).

``process_data`` and ``sabot.process`` count items as the engine finishes them (per inline slice
and per pool task); ``get_distributed_job_result`` polls the job's status.
"""

from __future__ import annotations

import sys
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

from .engine.progress import reporting

T = TypeVar("T")


def item_bar(total: int | None, desc: str) -> Any:
    """A tqdm bar counting items (imported only when a bar is asked for)."""
    from tqdm import tqdm

    return tqdm(total=total, unit="item", unit_scale=bool(total and total >= 100_000),
                desc=desc, dynamic_ncols=True, file=sys.stderr)


def sized(data: Any) -> int | None:
    """How many items ``data`` holds, when it says (None for iterators)."""
    try:
        return len(data)
    except TypeError:
        return None


async def with_item_bar(run: Callable[[], Awaitable[T]], total: int | None, desc: str) -> T:
    """``await run()`` with a bar that the engine's item counts move; completed at the end for
    the kinds of call that report only then (batch, async and expression functions)."""
    bar = item_bar(total, desc)
    try:
        with reporting(bar.update):
            out = await run()
        if total is not None and bar.n < total:
            bar.update(total - bar.n)
        return out
    finally:
        bar.close()


__all__ = ["item_bar", "sized", "with_item_bar"]
