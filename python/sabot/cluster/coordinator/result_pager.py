"""The coordinator's result pager: a job's results, in morsel order and in pages, to the readers
that ask for them (``fetch-results`` over ZeroMQ, result pages for the HTTP API).

A fetch that finds nothing new waits (up to its ``wait_ms``, at most :data:`MAX_WAIT_MS`) and
is answered in the turn its job gets a result or changes state, or when its wait runs out.
Results come from memory while it holds them (:mod:`.result_memory`), else from disk: their
journal row, or their result file (:mod:`sabot.cluster.result_files`). A fetch over ZeroMQ
reads a page of files here (a page is at most its ``max_bytes``, plus one result), or, for a
client sharing the spool (``files``), names them for the client to read; a page for the HTTP
API names the files, which the HTTP side reads on its own thread.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from typing import Any

from ...config import Config
from ...errors import CoordinatorUnavailableError
from ...states import FINISHED_JOB_STATES, JobState
from ..journal import Journal, StoredResult
from ..protocol import ErrorCode
from ..protocol import messages as m
from ..result_files import ResultFileError, ResultRef
from ..spool import SPOOL, ref_bytes
from .job_table import JobTable
from .outbox import Local, Target

#: Longest wait a FetchResults may ask for.
MAX_WAIT_MS = 60_000

#: A reader waiting for results: who asked, what, and until when (monotonic seconds).
Waiter = tuple[Target, m.FetchResults, float]
#: A result in a page for the HTTP API: (encoding, items, its bytes or where they are).
PagePart = tuple[str, int, bytes | ResultRef]


class ResultPager:
    """Answers result fetches from the job table and the journal.

    ``waiters`` (job id -> waiting fetches) is also the job table's ``awaited``: a finished
    job someone waits on stays in memory."""

    def __init__(self, config: Config, jobs: JobTable, journal: Journal,
                 send: Callable[[Target, m.Message], None],
                 waiters: dict[str, list[Waiter]]) -> None:
        self._config = config
        self._table = jobs
        self._jobs = jobs.jobs
        self._touched = jobs.touched
        self._journal = journal
        self._send = send
        self._waiters = waiters

    def on_fetch(self, peer: Target, msg: m.FetchResults, version: int) -> None:
        wait = min(max(0, int(msg.wait_ms)), MAX_WAIT_MS) / 1000
        if not self._try_fetch(peer, msg, final=wait == 0):
            deadline = time.monotonic() + wait
            self._waiters.setdefault(msg.job_id, []).append((peer, msg, deadline))

    def _try_fetch(self, peer: Target, msg: m.FetchResults, final: bool) -> bool:
        """Answer ``msg`` when there is something to say (or ``final``); False to wait on."""
        try:
            return self._fetch(peer, msg, final)
        except ResultFileError as exc:
            self._send(peer, m.ErrorReply(msg.request_id, ErrorCode.INTERNAL, str(exc),
                                          {"job_id": msg.job_id}))
            return True

    def _fetch(self, peer: Target, msg: m.FetchResults, final: bool) -> bool:
        job = self._jobs.get(msg.job_id)
        start = max(0, int(msg.start))
        limit = max(1, int(msg.max_bytes))
        if job is None:
            self._table.flush_results()  # the journal must hold what memory let go of
            row = self._journal.job(msg.job_id)
            if row is None:
                self._send(peer, self._table.missing_reply(msg.request_id, msg.job_id))
                return True
            parts = [self._loaded(msg.job_id, r, msg.files) for r in self._journal.results(
                msg.job_id, start, limit, count_files=not msg.files)]
            self._send(peer, m.ResultBatch(msg.request_id, msg.job_id, row.status.value, start,
                                           parts, row.total_morsels, row.result_kind, row.error))
            return True
        finished = job.state in FINISHED_JOB_STATES
        if msg.until_done and not finished and not final:
            return False
        parts = []
        size = 0
        i = start
        morsels = job.morsels
        while i < len(morsels):
            mo = morsels[i]
            if not mo.done:
                break
            if mo.filing is not None:  # came in chunks, its file is being finished
                break
            if mo.result is None:  # let go from memory: read the rest from disk
                self._table.flush_results()
                self._table.commit()
                parts.extend(self._loaded(job.job_id, r, msg.files)
                             for r in self._journal.results(job.job_id, i, limit - size,
                                                            count_files=not msg.files))
                break
            if parts and size + len(mo.result[2]) > limit:
                break
            parts.append(list(mo.result))
            size += len(mo.result[2])
            i += 1
        if parts or finished or final or start >= len(morsels):
            self._send(peer, m.ResultBatch(msg.request_id, job.job_id, job.state.value, start,
                                           parts, len(morsels), job.result_kind, job.error))
            return True
        return False

    def _loaded(self, job_id: str, stored: StoredResult, files: bool = False) -> list[Any]:
        """[encoding, items, bytes] of a result the journal holds (its file read here; with
        ``files``, for a reader sharing the spool, a reference to the file instead)."""
        data = stored.data
        if data is None:
            if files:
                return [SPOOL, stored.items, ref_bytes(stored.encoding, stored.size,
                                                       stored.crc)]
            data = self._ref(job_id, stored).read()
        return [stored.encoding, stored.items, data]

    def _ref(self, job_id: str, stored: StoredResult) -> ResultRef:
        return self._table.files.ref(job_id, stored.idx, stored.size, stored.crc)

    def serve(self, now: float) -> None:
        """Answer the waiters of the jobs touched in this turn and those whose wait is over."""
        touched_jobs = self._touched
        if not self._waiters:
            touched_jobs.clear()
            return
        for job_id in list(self._waiters):
            waiters = self._waiters[job_id]
            touched = job_id in touched_jobs
            keep = []
            for target, msg, deadline in waiters:
                if touched or deadline <= now:
                    if self._try_fetch(target, msg, final=deadline <= now):
                        continue
                keep.append((target, msg, deadline))
            if keep:
                self._waiters[job_id] = keep
            else:
                del self._waiters[job_id]
        touched_jobs.clear()

    def abandon(self) -> None:
        """The coordinator stops: local callers still waiting get an answer rather than a
        hang."""
        for waiters in self._waiters.values():
            for target, _, _ in waiters:
                if isinstance(target, Local) and not target.future.done():
                    target.future.set_exception(
                        CoordinatorUnavailableError("the coordinator stopped"))

    def page(self, job_id: str, offset: int, limit: int | None
             ) -> tuple[dict[str, Any], list[PagePart], int]:
        """(job dict, result morsels covering items [offset, offset+limit), item offset of the
        first morsel) for the HTTP API; a result in a file is named by its :class:`ResultRef`
        (read it off this thread). JobNotFoundError (JobExpiredError) for a job it does not
        hold."""
        summary = self._table.summary(job_id)
        if summary is None:
            raise self._table.missing_error(job_id)
        if summary["status"] != JobState.COMPLETED:
            return summary, [], 0
        end = None if limit is None else offset + limit
        parts: list[PagePart] = []
        first, pos = 0, 0
        for part in self._results(job_id):
            lo = pos
            pos += part[1]
            if pos <= offset:
                continue
            if end is not None and lo >= end:
                break
            if not parts:
                first = lo
            parts.append(part)
        return summary, parts, first

    def _results(self, job_id: str) -> Iterator[PagePart]:
        """Every result morsel of a completed job, in order: from memory where it holds them
        (a result the journal could not take yet is only there), else from the journal (a
        job resumed after a restart holds only the results that came in since)."""
        job = self._jobs.get(job_id)
        morsels = job.morsels if job is not None else None
        idx = 0
        while True:
            if morsels is not None:
                if idx >= len(morsels):
                    return
                held = morsels[idx].result
                if held is not None:
                    yield held
                    idx += 1
                    continue
            chunk = self._journal.results(job_id, idx, 64 << 20)
            if not chunk:
                return
            if morsels is not None:
                # Up to the next morsel held in memory (the journal may lack it yet).
                end = next((i for i in range(idx, min(len(morsels), idx + len(chunk)))
                            if morsels[i].result is not None), idx + len(chunk))
                chunk = chunk[:end - idx]
            idx += len(chunk)
            for r in chunk:
                yield (r.encoding, r.items, r.data if r.data is not None else
                       self._ref(job_id, r))


__all__ = ["MAX_WAIT_MS", "PagePart", "ResultPager", "Waiter"]
