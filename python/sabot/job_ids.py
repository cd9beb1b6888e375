"""Job ids, which a client may choose (an idempotency key): what one may look like.

A submit that names a job id already taken by the same job (function, data and options) is
answered with that job instead of starting another; the same id with other content is refused.
Every surface that takes an id (HTTP ``Idempotency-Key`` or ``job_id``, the ZeroMQ submit, the
Python API's ``job_id=``) checks it with :func:`job_id_problem`.
"""

from __future__ import annotations

import re
from typing import Any

#: Longest job id.
JOB_ID_MAX = 128
#: What a job id may hold (URL-safe, so that ``/job/<id>`` needs no escaping).
JOB_ID_CHARS = "letters, digits and . _ : -"
_PATTERN = re.compile(r"[A-Za-z0-9._:-]+")


def job_id_problem(value: Any) -> str | None:
    """What is wrong with ``value`` as a job id, as a sentence naming what is accepted; None
    when it is a good one."""
    if not isinstance(value, str):
        return f"a job id must be a string, got {type(value).__name__}"
    if not 1 <= len(value) <= JOB_ID_MAX or not _PATTERN.fullmatch(value):
        shown = value if len(value) <= 40 else value[:40] + "..."
        return (f"job id {shown!r} ({len(value)} characters) is not accepted: use 1 to "
                f"{JOB_ID_MAX} characters of {JOB_ID_CHARS}")
    return None


__all__ = ["JOB_ID_CHARS", "JOB_ID_MAX", "job_id_problem"]
