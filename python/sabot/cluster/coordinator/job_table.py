"""The coordinator's job table: every job it holds in memory, and the one place a job's state
changes.

A job is submitted (journaled, pending), runs, and ends completed, failed or cancelled; the
latest :data:`FINISHED_IN_MEMORY` finished jobs stay in memory, then live in the journal alone
until the retention lets them go (:mod:`.result_retention`: by age and bytes, leaving a
tombstone that answers "expired"). A result is held in memory within SABOT_RESULT_MEMORY_MB
(:mod:`.result_memory`) and stored once: a big one in a file of its own, written off the core
thread (:mod:`sabot.cluster.result_files`), a small one in its journal row; a job whose last
result is still being written completes once it is. :meth:`JobTable.move` is the
only code that changes a job's state: it checks the move against :data:`sabot.states.
JOB_TRANSITIONS` and does what every move needs (journal row, metric, waking the readers that
wait on the job, cancelling its running morsels). :func:`job_summary` is the one job dict, the
same for a job in memory, a journal row, the ZeroMQ API and the HTTP API.
"""

from __future__ import annotations

import logging
import time
from collections import deque
from collections.abc import Callable, Container
from dataclasses import dataclass
from functools import partial
from operator import itemgetter
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ...config import Config
from ...crc import crc32
from ...errors import JobExpiredError, JobNotFoundError, ProtocolError, UnknownProcessorError
from ...job_ids import job_id_problem
from ...metrics import Metrics
from ...states import ACTIVE_JOB_STATES, JobState, JournalState, check_job_transition
from ..journal import JobRow, Journal, MorselRow
from ..protocol import ErrorCode, payload
from ..protocol import messages as m
from ..result_files import FILE_MIN_BYTES, ResultFiles, Written
from ..spool import SPOOL, Spool, parse_ref
from .node_registry import NodeRegistry
from .outbox import Target
from .result_memory import ResultMemory
from .result_retention import ResultRetention

if TYPE_CHECKING:
    from .morsel_pieces import Cost

log = logging.getLogger(__name__)

#: Finished jobs kept in memory (older ones are read from the journal); their results are
#: let go sooner when SABOT_RESULT_MEMORY_MB is reached.
FINISHED_IN_MEMORY = 64

# Bound once: a class attribute of an enum costs a lookup through its metaclass.
#: What a submit's morsels may be: data, or a reference to a spool file holding it.
_SUBMIT_ENCODINGS = (*payload.ENCODINGS, SPOOL)

_PENDING = JobState.PENDING
_RUNNING = JobState.RUNNING
_COMPLETED = JobState.COMPLETED
_FAILED = JobState.FAILED

#: A result waiting for its journal write: (result_encoding, result (None: in its file),
#: result_items, attempts, size, crc, in_file, job_id, morsel index), the parameters of
#: :meth:`Journal.store_results`.
ResultRow = tuple[str, bytes | None, int, int, int, int, int, str, int]
_ITEMS = itemgetter(2)  # (a C call per row, not a generator step: this runs per morsel)
_KEY = itemgetter(7, 8)


@dataclass(slots=True)
class Morsel:
    """One morsel of a job: its input until it is done, then its result."""

    idx: int
    offset: int
    items: int
    encoding: str
    data: bytes | None
    attempts: int = 0
    done: bool = False
    node: str | None = None  # worker running it now
    deadline: float = 0.0
    result: tuple[str, int, bytes] | None = None
    last_error: str | None = None
    node_losses: int = 0  # times it was requeued because its worker was lost
    #: Times it was handed out by this coordinator (never goes down, unlike ``attempts``,
    #: which only the user's code uses up): the ``attempt`` of its current assignment, so a
    #: result of an earlier one is told apart and refused.
    assignment: int = 0
    #: (encoding, items) of a result that came in chunks while its file is being finished
    #: (it is never held in memory; readers wait for its file).
    filing: tuple[str, int] | None = None
    #: When it runs in pieces (morsel_pieces.py): items done so far, their results (in
    #: order), and the items of the current assignment's piece (0: the whole morsel).
    carved: int = 0
    parts: list[tuple[str, int, bytes]] | None = None
    piece: int = 0
    whole: bool = False  # runs whole from now on (a piece's result came in chunks)


@dataclass(slots=True)
class Job:
    job_id: str
    seq: int
    state: JobState
    priority: int
    func_name: str
    func_pickle: bytes | None
    result_kind: str
    morsels: list[Morsel]
    total_items: int
    created_at: float
    started_at: float | None = None
    finished_at: float | None = None
    error: str | None = None
    done_morsels: int = 0
    done_items: int = 0
    #: Morsels requeued because their worker was lost, and the most times one morsel was.
    node_losses: int = 0
    most_node_losses: int = 0
    most_lost_morsel: int | None = None
    digest: str | None = None  # what its submit held (payload.submit_digest)
    #: Results handed to the result files' thread and not written yet.
    writing: int = 0
    #: Every morsel is done, the job completes once ``writing`` is 0.
    complete_when_written: bool = False
    result_bytes: int = 0  # of the results it holds
    #: Its measured cost (morsel_pieces.py), its function's key there, the items of the
    #: last piece cut for it, and the pieces its morsels ran in.
    cost: Cost | None = None
    function_key: tuple[str, int] | None = None
    piece_items: int = 0
    pieces_run: int = 0
    #: It has files in the spool (inputs, results): they go when it is over.
    spooled: bool = False

    def summary(self) -> dict[str, Any]:
        return job_summary(self.job_id, self.state, self.priority, self.func_name,
                           self.total_items, self.done_items, self.done_morsels,
                           len(self.morsels), self.error, self.created_at, self.started_at,
                           self.finished_at, self.result_kind)


#: What an unfinished job's status says while no worker is connected (``waiting_for``).
NO_WORKER = "no worker is connected to the coordinator; the job runs when one registers"


def job_summary(job_id: str, state: JobState, priority: int, processor: str, items: int,
                done_items: int, done_morsels: int, total_morsels: int, error: str | None,
                created_at: float, started_at: float | None, finished_at: float | None,
                result_kind: str) -> dict[str, Any]:
    """The job dict without its result (docs/cluster.md, docs/http.md)."""
    fraction = 1.0 if state is _COMPLETED else done_items / items if items else 0.0
    return {
        "job_id": job_id, "status": state.value, "priority": priority, "processor": processor,
        "items": items,
        "progress": {"done": done_items, "total": items, "fraction": round(fraction, 6),
                     "morsels_done": done_morsels, "morsels_total": total_morsels},
        "error": error, "created_at": created_at, "started_at": started_at,
        "finished_at": finished_at, "result_kind": result_kind,
    }


class JobTable:
    """The jobs in memory, their submit, state changes, summaries, recovery and purge.

    ``awaited`` holds the ids of jobs a reader waits on (the result pager's waiters): such a
    finished job is kept in memory. ``touched`` collects the jobs whose state or results
    changed in this turn, for the pager to answer their waiters; ``unstored`` the results
    that wait for their journal write (:meth:`flush_results`); ``files`` the result files,
    ``memory`` the results held in memory and ``retention`` the finished jobs' results kept
    on disk."""

    def __init__(self, config: Config, journal: Journal, metrics: Metrics,
                 registry: NodeRegistry, send: Callable[[Target, m.Message], None],
                 awaited: Container[str], files: ResultFiles) -> None:
        self._config = config
        self._journal = journal
        self._metrics = metrics
        self._registry = registry
        self._nodes = registry.nodes
        self._send = send
        self._awaited = awaited
        self.jobs: dict[str, Job] = {}
        self.touched: set[str] = set()
        self.unstored: list[ResultRow] = []
        self._finished: deque[str] = deque()  # finished job ids still in memory, oldest first
        self._next_seq = journal.max_seq() + 1
        self.files = files
        self.spool = Spool(config.data_dir)
        self.memory = ResultMemory(config.result_memory_bytes)
        self.retention = ResultRetention(config.result_ttl_s, config.result_retention_bytes)
        self.retention.load(journal.finished_result_bytes())
        swept = files.sweep(journal.job_ids())
        if swept:
            log.info("removed the result files of %d job(s) the journal no longer holds", swept)
        #: Results flushed to the journal whose commit has not succeeded yet.
        self._uncommitted: list[tuple[str, int]] = []
        #: Jobs the journal drops in the pending commit: their files go once it succeeds.
        self._expiring: list[str] = []
        self.expired_count = 0
        self._lost: list[tuple[Job, Morsel]] = []

    # -- the one state change -----------------------------------------------------------------
    def move(self, job: Job, new: JobState, error: str | None = None) -> None:
        """Move ``job`` to ``new``: journal, metric, waiters and cancels of that move."""
        check_job_transition(job.state, new)
        job.state = new
        if new is _RUNNING:
            # Journaled with the job's end: after a restart a job is pending until a morsel
            # runs again, which is what it is.
            job.started_at = time.time()
            self._metrics.record_job(new)
            return
        job.error = error
        job.finished_at = time.time()
        nodes = self._nodes
        for mo in job.morsels:
            mo.data = None
            if mo.node is not None:
                node = nodes.get(mo.node)
                if node is not None and node.inflight.pop((job.job_id, mo.idx), None) is not None:
                    self._send(node.peer, m.CancelMorsel(job.job_id, mo.idx, f"job {new.value}"))
                mo.node = None
        self._journal.set_job_state(job.job_id, new, error=error, started_at=job.started_at,
                                    finished_at=job.finished_at)
        self._metrics.record_job(new)
        self.touched.add(job.job_id)
        self._finished.append(job.job_id)
        if not job.writing:
            self.retention.add(job.job_id, job.finished_at, job.result_bytes)
        if job.spooled:
            # (on the result files' thread: after the results it is moving into place)
            self.files.then(partial(self.spool.remove_job, job.job_id))
        if new is _FAILED:
            log.warning("job %s failed: %s", job.job_id, (error or "").splitlines()[0])
        else:
            log.debug("job %s %s (%d items, %d morsels)", job.job_id, new.value,
                      job.total_items, len(job.morsels))
        self.evict()

    def evict(self) -> None:
        """Let the oldest finished jobs go from memory, beyond the latest FINISHED_IN_MEMORY;
        one whose changes are not written yet stays (its reads would miss them)."""
        finished = self._finished
        jobs = self.jobs
        while len(finished) > FINISHED_IN_MEMORY and not self._journal.unwritten(finished[0]):
            job = jobs.get(finished[0])
            if job is not None and job.writing:
                break
            old = finished.popleft()
            if old not in self._awaited:
                self._drop(old)

    def _drop(self, job_id: str) -> None:
        """Take a job out of memory (with the results it holds)."""
        job = self.jobs.pop(job_id, None)
        if job is not None:
            forget = self.memory.forget
            for mo in job.morsels:
                if mo.result is not None:
                    forget((job_id, mo.idx))

    # -- results ------------------------------------------------------------------------------
    def store_result(self, job: Job, mo: Morsel, encoding: str, items: int, data: bytes,
                     attempts: int) -> None:
        """Keep morsel ``mo``'s result: held in memory (within the budget once it is on disk)
        and stored once, a big one in its file (written off this thread: see
        :meth:`take_written`), a small one in its journal row."""
        mo.result = (encoding, items, data)
        size = len(data)
        job.result_bytes += size
        self.memory.hold((job.job_id, mo.idx), mo, size)
        if size >= FILE_MIN_BYTES:
            job.writing += 1
            self.files.write(job.job_id, mo.idx, data)
        else:
            self.unstored.append((encoding, data, items, attempts, size, 0, 0, job.job_id,
                                  mo.idx))

    def store_chunked(self, job: Job, mo: Morsel, encoding: str, items: int, size: int) -> None:
        """Morsel ``mo``'s result came in chunks, appended to its file (being finished now):
        it is stored once that file is in place (:meth:`take_written`), never held here."""
        mo.filing = (encoding, items)
        job.result_bytes += size
        job.writing += 1

    def store_spooled(self, job: Job, mo: Morsel, encoding: str, items: int, size: int,
                      crc: int, path: Path) -> None:
        """Morsel ``mo``'s result is the file a worker wrote to the spool (``size`` bytes,
        CRC-32 ``crc``): it is stored once that file is moved into place among the result
        files (:meth:`take_written`), never read or held here."""
        mo.filing = (encoding, items)
        job.result_bytes += size
        job.writing += 1
        self.files.adopt(job.job_id, mo.idx, path, size, crc,
                         sync=self._config.journal_sync == "full")

    def take_lost(self) -> list[tuple[Job, Morsel]]:
        """Morsels whose result came in chunks but could not be written (a full disk): they
        are not done any more, and run again (the caller queues them)."""
        lost, self._lost = self._lost, []
        return lost

    def complete(self, job: Job) -> None:
        """Every morsel of ``job`` is done: it completes, once its results are stored."""
        if job.writing:
            job.complete_when_written = True
        else:
            self.move(job, _COMPLETED)

    def take_written(self) -> None:
        """Journal where the result files the thread finished are (or, for one it could not
        write, the result itself in its row: the journal keeps it pending until it can
        write); complete the jobs that waited for them."""
        for done in self.files.take_done():
            self._written(done)

    def _written(self, done: Written) -> None:
        job = self.jobs.get(done.job_id)
        mo = job.morsels[done.idx] if job is not None and done.idx < len(job.morsels) else None
        if mo is not None and mo.filing is not None:
            self._filed(job, mo, done)  # type: ignore[arg-type]
            return
        if job is None or mo is None or mo.result is None:
            # The job was taken back (a refused submit): its file goes too.
            self.files.remove_job(done.job_id)
            return
        job.writing -= 1
        enc, items, data = mo.result
        if done.error is None:
            self.unstored.append((enc, None, items, mo.attempts, done.size, done.crc, 1,
                                  job.job_id, mo.idx))
        else:
            log.warning("job %s: the result of morsel %d (%.1f MB) could not be written to its "
                        "file (%s): it stays in memory and goes into the journal instead",
                        job.job_id, mo.idx, done.size / (1 << 20), done.error)
            self.unstored.append((enc, data, items, mo.attempts, done.size, crc32(data), 0,
                                  job.job_id, mo.idx))
        self._after_write(job)

    def _after_write(self, job: Job) -> None:
        """A result file of ``job`` is written: with none left to write, the job completes
        (if it was waiting for them) or its bytes count towards retention."""
        if job.writing:
            return
        if job.complete_when_written and job.state is _RUNNING:
            job.complete_when_written = False
            self.move(job, _COMPLETED)
        elif job.state.finished:
            self.retention.add(job.job_id, job.finished_at or time.time(), job.result_bytes)

    def _filed(self, job: Job, mo: Morsel, done: Written) -> None:
        """The file of a result that came in chunks is in place (or could not be written)."""
        enc, items = mo.filing  # type: ignore[misc]
        mo.filing = None
        job.writing -= 1
        if done.error is None:
            self.unstored.append((enc, None, items, mo.attempts, done.size, done.crc, 1,
                                  job.job_id, mo.idx))
        else:
            job.result_bytes -= done.size
            if job.state is _RUNNING:
                log.warning("job %s: the result of morsel %d (%.1f MB) could not be written to "
                            "its file (%s): the morsel runs again", job.job_id, mo.idx,
                            done.size / (1 << 20), done.error)
                mo.done = False
                job.done_morsels -= 1
                job.done_items -= mo.items
                job.complete_when_written = False
                self._lost.append((job, mo))
                return
        self._after_write(job)

    # -- submit, status, cancel ---------------------------------------------------------------
    def submit(self, msg: m.SubmitJob) -> tuple[Job | None, m.Message]:
        """The new job of ``msg`` (journaled, pending; completed at once when it has no morsel)
        and the answer. A resubmit of a known job id (a retry whose ack was lost, or the
        client's own key) gets that job's state and no new job when it holds the same job, a
        ``job_id_conflict`` when it holds another; a bad submit an ErrorReply; any new submit
        while the journal cannot be written a ``journal_unwritable``."""
        rid = msg.request_id
        job_id = msg.job_id
        problem_text = job_id_problem(job_id)
        if problem_text is not None:
            return None, m.ErrorReply(rid, ErrorCode.BAD_REQUEST, problem_text,
                                      {"field": "job_id"})
        digest = msg.digest or payload.submit_digest(msg.func_name, msg.func_pickle,
                                                     msg.result_kind, msg.morsels, msg.priority)
        known = self.jobs.get(job_id)
        row = None if known is not None else self._journal.job(job_id)
        if known is not None or row is not None:
            state, had = (known.state, known.digest) if known is not None else \
                (row.status, row.digest)  # type: ignore[union-attr]
            if had is not None and had != digest:
                return None, m.ErrorReply(
                    rid, ErrorCode.JOB_ID_CONFLICT,
                    f"job id {job_id!r} is taken by a job with other content (function, data "
                    f"or options; it is {state.value}): resubmitting it must send the same "
                    "job; give a new job a new id", {"job_id": job_id})
            return None, m.SubmitAck(rid, job_id, state.value, True)
        if self._journal.state is JournalState.UNWRITABLE:
            return None, self.unwritable_reply(rid)
        problem = self._check_submit(msg)
        if problem is not None:
            code, text, details = problem
            return None, m.ErrorReply(rid, code, text, details)
        now = time.time()
        morsels: list[Morsel] = []
        offset = 0
        spooled = False
        for i, (enc, items, data) in enumerate(msg.morsels):
            morsels.append(Morsel(i, offset, int(items), enc, bytes(data)))
            offset += int(items)
            spooled = spooled or enc == SPOOL
        seq = self._next_seq
        self._next_seq += 1
        job = Job(job_id, seq, _PENDING, int(msg.priority), msg.func_name,
                  bytes(msg.func_pickle) if msg.func_pickle is not None else None,
                  msg.result_kind, morsels, offset, now, digest=digest, spooled=spooled)
        self._journal.insert_job(
            JobRow(job_id, seq, _PENDING, job.priority, job.func_name, job.func_pickle,
                   job.result_kind, len(morsels), offset, None, now, None, None, digest),
            [MorselRow(mo.idx, mo.offset, mo.items, mo.encoding, mo.data, 0, False)
             for mo in morsels])
        self.jobs[job_id] = job
        self._metrics.record_job(_PENDING)
        if not morsels:
            self.move(job, _COMPLETED)
        elif self._registry.alive_count() == 0:
            log.warning("job %s queued, but no worker is connected: it waits until one "
                        "registers", job_id)
        return job, m.SubmitAck(rid, job_id, job.state.value)

    def unwritable_reply(self, request_id: int) -> m.ErrorReply:
        """The answer to a submit while the journal cannot be written (HTTP 507)."""
        journal = self._journal
        free, _ = journal.disk_space()
        return m.ErrorReply(
            request_id, ErrorCode.JOURNAL_UNWRITABLE,
            f"the job was not accepted: the coordinator cannot write its journal "
            f"({journal.problem}). Free space under SABOT_DATA_DIR={self._config.data_dir} "
            "and submit again: the coordinator accepts submits again on its own once it can "
            "write (jobs it accepted before are kept)",
            {"data_dir": str(self._config.data_dir), "free_bytes": free,
             "journal": str(journal.path)})

    def discard(self, job_id: str) -> None:
        """Take back a submit whose insert could not be written: it was never acknowledged,
        so the job never existed for anyone (not a state change); morsels already handed out
        are cancelled."""
        self._journal.drop_insert(job_id)
        job = self.jobs.get(job_id)
        if job is None:
            return
        self._drop(job_id)
        nodes = self._nodes
        for mo in job.morsels:
            node = nodes.get(mo.node) if mo.node is not None else None
            if node is not None and node.inflight.pop((job_id, mo.idx), None) is not None:
                self._send(node.peer, m.CancelMorsel(job_id, mo.idx, "the submit was refused"))
            mo.node = None
        if job_id in self._finished:
            self._finished.remove(job_id)
        self.touched.discard(job_id)

    def _check_submit(self, msg: m.SubmitJob) -> tuple[ErrorCode, str, dict[str, Any]] | None:
        bad = ErrorCode.BAD_REQUEST
        if msg.result_kind not in payload.RESULT_KINDS:
            return bad, (f"result_kind {msg.result_kind!r} is unknown; accepted: "
                         f"{', '.join(payload.RESULT_KINDS)}"), {}
        for i, part in enumerate(msg.morsels):
            if (not isinstance(part, (list, tuple)) or len(part) != 3
                    or part[0] not in _SUBMIT_ENCODINGS or not isinstance(part[1], int)
                    or part[1] < 0 or not isinstance(part[2], (bytes, bytearray))):
                return bad, (f"morsel {i} must be [encoding, items, data] with encoding "
                             f"one of {', '.join(_SUBMIT_ENCODINGS)}"), {}
            if part[0] == SPOOL:
                # Its bytes are in a file of the spool (a client on this host wrote it): it
                # must be there, that big; the worker that decodes it counts its items.
                try:
                    _, size, crc = parse_ref(part[2])
                except ProtocolError as exc:
                    return bad, f"morsel {i}: {exc}", {}
                problem = self.spool.check(self.spool.input_path(msg.job_id, i, crc), size)
                if problem is not None:
                    return bad, (f"morsel {i} is a spool reference, but {problem}: a client "
                                 "shares the spool only with a coordinator on its data dir "
                                 "(SABOT_SPOOL=0 sends every byte inline)"), {"morsel": i}
                continue
            # The count a submit claims sizes the job's progress and its result: it must be the
            # count the data holds (read from the payload's header; a pickle is counted by the
            # worker that unpickles it, see Dispatcher.on_result).
            try:
                held = payload.count_items(part[0], bytes(part[2]))
            except ProtocolError as exc:
                return bad, f"morsel {i} is not a valid {part[0]} payload: {exc}", {}
            if held is not None and held != part[1]:
                return bad, (f"morsel {i} claims {part[1]} item(s) but its {part[0]} "
                             f"data holds {held}; the items field must be the number "
                             f"of items in the data"), {"morsel": i, "claimed": part[1],
                                                        "held": held}
        if msg.func_pickle is None:
            known = self._registry.known_processors()
            if msg.func_name not in known:
                return (ErrorCode.UNKNOWN_PROCESSOR,
                        str(UnknownProcessorError(msg.func_name, list(known))),
                        {"name": msg.func_name, "known": sorted(known)})
        return None

    def on_status(self, peer: Target, msg: m.GetStatus, version: int) -> None:
        summary = self.summary(msg.job_id)
        if summary is None:
            self._send(peer, self.missing_reply(msg.request_id, msg.job_id))
        else:
            self._send(peer, m.JobStatus(msg.request_id, summary))

    def on_cancel(self, peer: Target, msg: m.CancelJob, version: int) -> None:
        job = self.jobs.get(msg.job_id)
        if job is not None and job.state in ACTIVE_JOB_STATES:
            self.move(job, JobState.CANCELLED, error="cancelled by request")
            log.info("job %s cancelled", job.job_id)
        self.on_status(peer, m.GetStatus(msg.request_id, msg.job_id), version)

    # -- the journal ----------------------------------------------------------------------------
    def flush_results(self) -> None:
        """Write the results that came in since the last call, in one statement."""
        rows = self.unstored
        if rows:
            self._journal.store_results(rows)
            # The cluster's throughput (the workers record their own items and morsels).
            self._metrics.record_items(sum(map(_ITEMS, rows)))
            self._uncommitted.extend(map(_KEY, rows))
            rows.clear()

    def commit(self) -> bool:
        """Flush the results and commit the journal; True once written (see written)."""
        self.flush_results()
        if self._journal.commit():
            self.written()
            return True
        return False

    def written(self) -> None:
        """The journal holds everything flushed so far: those results may leave memory, and
        the files of the jobs it dropped go."""
        durable = self.memory.durable
        for key in self._uncommitted:
            durable(key)
        self._uncommitted.clear()
        self.memory.trim()
        for job_id in self._expiring:
            self.files.remove_job(job_id)
        self._expiring.clear()

    def recover(self) -> list[Job]:
        """Load the journal's unfinished jobs; returns them (the caller queues the morsels not
        done yet). A job whose morsels are all done completes now."""
        jobs = []
        for row, morsels in self._journal.unfinished_jobs():
            job = Job(row.job_id, row.seq, row.status, row.priority, row.func_name,
                      row.func_pickle, row.result_kind,
                      [Morsel(r.idx, r.offset, r.items, r.encoding, r.data, r.attempts, r.done)
                       for r in morsels],
                      row.total_items, row.created_at, row.started_at, digest=row.digest,
                      spooled=True)  # (it may have files in the spool: they go at its end)
            for mo in job.morsels:
                if mo.done:
                    job.done_morsels += 1
                    job.done_items += mo.items
            if job.done_morsels:
                job.result_bytes = self._journal.result_bytes(job.job_id)
            self.jobs[job.job_id] = job
            jobs.append(job)
            if job.done_morsels == len(job.morsels):
                self.move(job, _COMPLETED)
        return jobs

    def purge(self, wall: float) -> None:
        """Let the finished jobs the retention names go (journal rows, then, once that is
        written, their files), each leaving a tombstone saying why."""
        if self._journal.state is JournalState.UNWRITABLE:
            return
        due = self.retention.due(wall)
        if not due:
            return
        self._journal.expire(due, wall)
        for job_id, why in due:
            self._drop(job_id)
            self._expiring.append(job_id)
            log.info("job %s expired: %s", job_id, why)
        self.expired_count += len(due)

    def missing(self, job_id: str) -> tuple[ErrorCode, str, dict[str, Any]]:
        """Why there is no job ``job_id``: it expired (its tombstone says when and why), or it
        is unknown."""
        expired = self._journal.expired(job_id)
        if expired is not None:
            when, why = expired
            return (ErrorCode.JOB_EXPIRED,
                    f"job {job_id!r} expired at {time.strftime('%Y-%m-%d %H:%M:%S UTC', time.gmtime(when))}"
                    f" and its results were deleted: {why}",
                    {"job_id": job_id, "expired_at": when, "reason": why})
        return (ErrorCode.JOB_NOT_FOUND,
                f"no job {job_id!r} (unknown, or expired after SABOT_RESULT_TTL_S="
                f"{self._config.result_ttl_s:g} longer ago than the coordinator remembers)",
                {"job_id": job_id})

    def missing_reply(self, request_id: int, job_id: str) -> m.ErrorReply:
        code, text, details = self.missing(job_id)
        return m.ErrorReply(request_id, code, text, details)

    def missing_error(self, job_id: str) -> JobNotFoundError:
        code, text, details = self.missing(job_id)
        if code is ErrorCode.JOB_EXPIRED:
            return JobExpiredError(text, job_id=job_id, expired_at=details["expired_at"])
        return JobNotFoundError(text)

    # -- views ----------------------------------------------------------------------------------
    def summary(self, job_id: str) -> dict[str, Any] | None:
        """The job dict of a job in memory or in the journal; None when it is unknown."""
        job = self.jobs.get(job_id)
        if job is not None:
            summary = job.summary()
            if not job.state.finished:
                if self._registry.alive_count() == 0:
                    summary["waiting_for"] = NO_WORKER
                # (while it runs only: the journal does not keep them)
                summary["node_losses"] = {"requeued": job.node_losses,
                                          "most_for_one_morsel": job.most_node_losses,
                                          "morsel": job.most_lost_morsel}
                if job.cost is not None:
                    summary["cost"] = {"per_item_s": job.cost.per_item_s,
                                       "result_bytes_per_item": job.cost.result_bytes_per_item,
                                       "piece_items": job.piece_items,
                                       "pieces_run": job.pieces_run}
            return summary
        self.flush_results()
        row = self._journal.job(job_id)
        if row is None:
            return None
        done_morsels, done_items = self._journal.done_counts(job_id)
        return job_summary(row.job_id, row.status, row.priority, row.func_name, row.total_items,
                           done_items, done_morsels, row.total_morsels, row.error,
                           row.created_at, row.started_at, row.finished_at, row.result_kind)

    def recent(self, limit: int) -> list[dict[str, Any]]:
        """The latest ``limit`` jobs in memory, newest first."""
        return [j.summary() for j in sorted(self.jobs.values(), key=lambda j: -j.seq)[:limit]]

    def listed(self, limit: int) -> list[dict[str, Any]]:
        """The latest ``limit`` jobs of the journal, newest first."""
        out = []
        for row in self._journal.recent_jobs(limit):
            summary = self.summary(row.job_id)
            if summary is not None:
                out.append(summary)
        return out

    def active_ids(self) -> set[str]:
        """The ids of the jobs not finished (what the spool's sweep keeps)."""
        return {j for j, job in self.jobs.items() if not job.state.finished}

    def count_by_state(self) -> dict[str, int]:
        """Jobs in memory per state (safe to call from another thread)."""
        counts: dict[str, int] = {}
        for job in list(self.jobs.values()):
            counts[job.state.value] = counts.get(job.state.value, 0) + 1
        return counts

    @staticmethod
    def active(counts: dict[str, int]) -> int:
        """Active jobs in a :meth:`count_by_state` answer."""
        return sum(counts.get(state.value, 0) for state in ACTIVE_JOB_STATES)


__all__ = ["FINISHED_IN_MEMORY", "Job", "JobTable", "Morsel", "ResultRow",
           "job_summary"]
