"""Log lines limited per kind, so that a flood of bad frames cannot flood the log."""

from __future__ import annotations

import logging
import time
from typing import Any

#: Log lines per second per kind.
LOG_BURST = 10


class RateLimitedLog:
    """At most :data:`LOG_BURST` lines per second per kind; the number left out is reported
    with the next line of that kind."""

    def __init__(self, logger: logging.Logger) -> None:
        self._log = logger
        self._budget: dict[str, tuple[float, int, int]] = {}  # kind -> (window, lines, dropped)

    def log(self, kind: str, level: int, fmt: str, *args: Any) -> None:
        now = time.monotonic()
        window, count, dropped = self._budget.get(kind, (0.0, 0, 0))
        if now - window >= 1.0:
            window, count = now, 0
        if count >= LOG_BURST:
            self._budget[kind] = (window, count, dropped + 1)
            return
        if dropped:
            fmt += f" ({dropped} similar line(s) left out)"
        self._budget[kind] = (window, count + 1, 0)
        self._log.log(level, fmt, *args)


__all__ = ["LOG_BURST", "RateLimitedLog"]
