"""Crash points for the fault tests: ``SABOT_STREAM_CRASH=<point>:<n>`` makes the process kill
itself with SIGKILL when the ``n``-th checkpoint it takes (counted in this process, from 1)
reaches ``point``:

- ``files``: its files are written, its manifest is not (the checkpoint does not count);
- ``manifest``: it is committed, no sink has committed it;
- ``sinks``: the first sink committed it, the others have not.

Unset (always, outside the tests) it costs one dictionary lookup per checkpoint phase.
"""

from __future__ import annotations

import os
import signal
from collections import Counter

POINTS = ("files", "manifest", "sinks")
_seen: Counter[str] = Counter()


def reached(point: str) -> None:
    spec = os.environ.get("SABOT_STREAM_CRASH")
    if not spec:
        return
    where, _, at = spec.partition(":")
    if where != point:
        return
    _seen[point] += 1
    if at.isdigit() and _seen[point] == int(at):
        os.kill(os.getpid(), signal.SIGKILL)
