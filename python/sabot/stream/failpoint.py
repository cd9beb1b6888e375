"""Crash points for the fault tests: ``SABOT_STREAM_CRASH=<point>:<epoch>`` makes the process
kill itself with SIGKILL when checkpoint ``epoch`` reaches ``point``:

- ``files``: its files are written, its manifest is not (the checkpoint does not count);
- ``manifest``: it is committed, no sink has committed it;
- ``sinks``: the first sink committed it, the others have not.

Unset (always, outside the tests) it costs one dictionary lookup per checkpoint.
"""

from __future__ import annotations

import os
import signal

POINTS = ("files", "manifest", "sinks")


def reached(point: str, epoch: int) -> None:
    spec = os.environ.get("SABOT_STREAM_CRASH")
    if not spec:
        return
    where, _, at = spec.partition(":")
    if where == point and at.isdigit() and int(at) == epoch:
        os.kill(os.getpid(), signal.SIGKILL)
