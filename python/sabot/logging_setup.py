"""Logging for Sabot's daemons: one stderr handler on the ``sabot`` logger, level LOG_LEVEL.

Library users keep control: this is only called by the daemon entry points (``launch_sabot``,
``python -m sabot.composable_launcher``, ``sabot-node``), and it leaves an application's own
root handlers alone.
"""

from __future__ import annotations

import logging
import sys

_FORMAT = "%(asctime)s %(levelname)-7s %(name)s: %(message)s"
_MARK = "_sabot_handler"


def configure_logging(level: str | int = "INFO") -> logging.Logger:
    """Send the ``sabot`` loggers to stderr at ``level`` (idempotent)."""
    logger = logging.getLogger("sabot")
    logger.setLevel(level)
    if not any(getattr(h, _MARK, False) for h in logger.handlers):
        handler = logging.StreamHandler(sys.stderr)
        handler.setFormatter(logging.Formatter(_FORMAT))
        setattr(handler, _MARK, True)
        logger.addHandler(handler)
        # Our handler prints; the root logger (if the application has one) need not print again.
        logger.propagate = False
    return logger


__all__ = ["configure_logging"]
