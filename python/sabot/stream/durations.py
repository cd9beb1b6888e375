"""Durations and event times as integer milliseconds, the stream's unit of time."""

from __future__ import annotations

import datetime as _dt
import re
from typing import Any

from ..errors import ConfigError

#: The smallest and largest event time (milliseconds): before any event, after every event.
MIN_TIME = -(1 << 62)
MAX_TIME = 1 << 62

_UNITS_MS = {"ms": 1, "s": 1000, "sec": 1000, "m": 60_000, "min": 60_000, "h": 3_600_000,
             "d": 86_400_000}
_DURATION = re.compile(r"^\s*(?P<num>-?\d+(?:\.\d+)?)\s*(?P<unit>ms|sec|s|min|m|h|d)\s*$")

DurationLike = str | int | float | _dt.timedelta

ACCEPTED = ("a duration: '250ms', '5s', '1.5min', '2h', '1d', a datetime.timedelta, or an integer "
            "number of milliseconds")


def to_ms(value: Any, what: str, *, allow_negative: bool = False, allow_zero: bool = False) -> int:
    """``value`` as whole milliseconds; ``what`` names the argument in the error."""
    ms: float
    if isinstance(value, bool):
        raise ConfigError(what, value, ACCEPTED)
    if isinstance(value, _dt.timedelta):
        ms = value.total_seconds() * 1000
    elif isinstance(value, (int, float)):
        ms = float(value)
    elif isinstance(value, str):
        m = _DURATION.match(value)
        if m is None:
            raise ConfigError(what, value, ACCEPTED)
        ms = float(m.group("num")) * _UNITS_MS[m.group("unit")]
    else:
        raise ConfigError(what, value, ACCEPTED)
    if ms != int(ms):
        raise ConfigError(what, value, "a whole number of milliseconds")
    out = int(ms)
    if out < 0 and not allow_negative:
        raise ConfigError(what, value, "a non-negative duration")
    if out == 0 and not (allow_zero or allow_negative):
        raise ConfigError(what, value, "a positive duration")
    return out
