"""How long finished jobs keep their results: by age (SABOT_RESULT_TTL_S) and by the bytes all
finished jobs' results take on disk (SABOT_RESULT_RETENTION_MB), never by a count.

The retention knows every finished job the journal holds, in the order they finished, with the
bytes of its results. :meth:`ResultRetention.due` names the jobs to let go now: the oldest,
while one finished longer ago than the TTL or while the total is over the byte limit. The job
that finished last is never let go for bytes alone (a single result bigger than the limit is
still kept until the TTL, or until a newer job finishes), so a result is never gone before
anyone could fetch it. A job let go leaves a tombstone in the journal: asking for it answers
that it expired and by which setting (HTTP 410, ``job_expired``).
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Iterable


class ResultRetention:
    """Finished jobs in the order they finished: (finished_at, result bytes) each."""

    def __init__(self, ttl_s: float, max_bytes: int) -> None:
        self.ttl_s = ttl_s
        self.max_bytes = max_bytes  # 0: no limit by bytes
        self._jobs: OrderedDict[str, tuple[float, int]] = OrderedDict()
        self.total_bytes = 0

    def load(self, rows: Iterable[tuple[str, float, int]]) -> None:
        """The journal's finished jobs, earliest finished first (at start)."""
        for job_id, finished_at, nbytes in rows:
            self.add(job_id, finished_at, nbytes)

    def add(self, job_id: str, finished_at: float, nbytes: int) -> None:
        old = self._jobs.pop(job_id, None)
        if old is not None:
            self.total_bytes -= old[1]
        self._jobs[job_id] = (finished_at, nbytes)
        self.total_bytes += nbytes

    def drop(self, job_id: str) -> None:
        old = self._jobs.pop(job_id, None)
        if old is not None:
            self.total_bytes -= old[1]

    def __len__(self) -> int:
        return len(self._jobs)

    def next_expiry(self) -> float | None:
        """When the oldest finished job reaches the TTL (UNIX time); None when none is held."""
        for finished_at, _ in self._jobs.values():
            return finished_at + self.ttl_s
        return None

    def due(self, wall: float) -> list[tuple[str, str]]:
        """(job id, why) of the jobs to let go now, oldest first (they are dropped here)."""
        out: list[tuple[str, str]] = []
        jobs = self._jobs
        while jobs:
            job_id, (finished_at, nbytes) = next(iter(jobs.items()))
            age = wall - finished_at
            if age >= self.ttl_s:
                why = (f"it finished {age:.0f} s ago, past SABOT_RESULT_TTL_S="
                       f"{self.ttl_s:g}")
            elif self.max_bytes and self.total_bytes > self.max_bytes and len(jobs) > 1:
                why = (f"the results of finished jobs took {_mb(self.total_bytes)}, over "
                       f"SABOT_RESULT_RETENTION_MB={self.max_bytes / (1 << 20):g}: the "
                       f"oldest go first (this one held {_mb(nbytes)})")
            else:
                break
            self.drop(job_id)
            out.append((job_id, why))
        return out


def _mb(n: int) -> str:
    return f"{n / (1 << 20):.1f} MB"


__all__ = ["ResultRetention"]
