"""What a file passed through the data port may be called, and what each peer may do with it.

The data port (:mod:`sabot.cluster.coordinator.spool_server`) serves a few kinds of file under
the coordinator's data dir, named by their path relative to it, and nothing else:

- ``spool/j-<job>/<morsel>.<crc32>.in``: a submit's input morsel. A client puts it (and asks
  whether it is there already); a worker gets it.
- ``spool/j-<job>/<morsel>.<attempt>.out``: a morsel's result as its worker wrote it. The
  worker puts it; the coordinator then moves it among its result files.
- ``results/<job>/<morsel>.bin``: a result file. A client gets it.

A name is checked whole against these shapes (a job id is letters, digits and ``. _ : -``, never
``.`` or ``..`` alone), so no request reaches a file outside them.
"""

from __future__ import annotations

import re

from ..job_ids import JOB_ID_MAX

_JOB = r"(?!\.{1,2}/)[A-Za-z0-9._:-]{1,%s}" % JOB_ID_MAX  # noqa: UP031 - a regex's braces
INPUT = re.compile(r"spool/j-" + _JOB + r"/\d{1,9}\.[0-9a-f]{8}\.in")
OUTPUT = re.compile(r"spool/j-" + _JOB + r"/\d{1,9}\.\d{1,9}\.out")
RESULT = re.compile(r"results/" + _JOB + r"/\d{1,9}\.bin")

#: What each operation accepts.
PUTTABLE = (INPUT, OUTPUT)
GETTABLE = (INPUT, RESULT)
STATABLE = (INPUT, OUTPUT)


def name_problem(name: str, accepted: tuple[re.Pattern[str], ...], op: str) -> str | None:
    """Why ``name`` is not one ``op`` may touch (None: it is)."""
    if any(pattern.fullmatch(name) for pattern in accepted):
        return None
    shown = name if len(name) <= 80 else name[:80] + "..."
    return (f"{op} of {shown!r} is not accepted: the data port {op}s only "
            + " or ".join(_SHAPES[p] for p in accepted))


_SHAPES = {
    INPUT: "spool/j-<job>/<morsel>.<crc32 hex>.in",
    OUTPUT: "spool/j-<job>/<morsel>.<attempt>.out",
    RESULT: "results/<job>/<morsel>.bin",
}

__all__ = ["GETTABLE", "INPUT", "OUTPUT", "PUTTABLE", "RESULT", "STATABLE", "name_problem"]
