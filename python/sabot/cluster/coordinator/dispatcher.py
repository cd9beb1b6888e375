"""The coordinator's dispatcher: the morsel queue, hand-out under the workers' credits, results
and failures, requeues, retries and morsel timeouts.

Morsels wait in one priority queue (higher job priority first, then submission order) and go to
alive workers with free credits, the starting worker rotating so equal workers share the head
of the queue. A morsel is tried up to SABOT_MAX_ATTEMPTS times, and only failures of the user's
code use an attempt: an exception, a pool process that died in it, a morsel timeout. A morsel
whose worker was lost (its connection closed, it went silent, it left without handing it back)
is requeued without using one, however often that happens, and counted apart (the job's
``node_losses``); one handed back or lost with a session is requeued too. So losing workers
never fails a job while a worker remains. Every result is kept once: a late or duplicate one
is counted and ignored. A result (or failure) is taken only from the worker the morsel's
current assignment went to, for that assignment (each hand-out has its own number, sent as the
``attempt`` of ``assign``); any other is refused and counted (``results_refused``). A result
bigger than CHUNK_BYTES comes in chunks (:mod:`.result_chunks`), each checked so, and counts
once its last chunk came and matched; a worker lost meanwhile leaves no partial file behind.
A costly morsel runs in pieces of about SABOT_MORSEL_TARGET_S of work each, one after the other
(:mod:`.morsel_pieces`): each piece is an assignment of its own, and the morsel is done, and
its result (the pieces' results as one ``parts`` result) stored, with its last piece.
A morsel whose input is in the spool (:mod:`sabot.cluster.spool`) goes to a worker sharing the
spool as its reference, to any other with its bytes (read from its file here); a result a
worker wrote to the spool is moved into place among the result files, never read here (a
piece's is read: it is kept with the other pieces).
"""

from __future__ import annotations

import contextlib
import heapq
import logging
import os
from collections.abc import Callable, Container
from functools import partial
from pathlib import Path

from ...config import Config
from ...errors import ProtocolError
from ...job_ids import job_id_problem
from ...metrics import Metrics
from ...states import ACTIVE_JOB_STATES, JobState
from ..journal import Journal
from ..protocol import messages as m
from ..protocol import payload
from ..result_files import ResultFileError
from ..spool import SPOOL, parse_ref
from .job_table import Job, JobTable, Morsel
from .morsel_pieces import PieceSizer
from .node_registry import Node, NodeRegistry
from .outbox import Target
from .rate_limited_log import RateLimitedLog
from .result_chunks import ChunkedResults

log = logging.getLogger(__name__)

#: A morsel lost with its worker this many times (and each further such multiple) is logged:
#: a function that kills the node running it would otherwise go round unnoticed.
NODE_LOSS_LOG_EVERY = 5

# Bound once: a class attribute of an enum costs a lookup through its metaclass.
_PENDING = JobState.PENDING
_RUNNING = JobState.RUNNING
_FAILED = JobState.FAILED


def _unlink(path: Path) -> None:
    with contextlib.suppress(OSError):
        os.unlink(path)


class Dispatcher:
    """Hands out the queued morsels of the job table's jobs to the registry's workers."""

    def __init__(self, config: Config, jobs: JobTable, registry: NodeRegistry,
                 journal: Journal, metrics: Metrics,
                 send: Callable[[Target, m.Message], None]) -> None:
        self._config = config
        #: Results coming in chunks.
        self.chunks = ChunkedResults(jobs.files, send)
        self._table = jobs
        self._jobs = jobs.jobs
        self._touched = jobs.touched
        self._nodes = registry.nodes
        self._node_of = registry.node_of
        self._journal = journal
        self._metrics = metrics
        self._send = send
        self._queue: list[tuple[int, int, int, str]] = []  # (-priority, job seq, idx, job id)
        self._pending = 0  # morsels queued, not assigned
        self._rr = 0
        self._next_timeout_scan = 0.0
        self.counters = {"morsels_assigned": 0, "morsels_completed": 0, "morsels_failed": 0,
                         "morsels_requeued": 0, "morsels_requeued_node_lost": 0,
                         "morsels_timed_out": 0, "duplicates_ignored": 0,
                         "results_refused": 0, "results_chunked": 0,
                         "results_damaged": 0, "results_cut_short": 0,
                         "morsel_pieces_assigned": 0, "morsels_run_whole_again": 0,
                         "spool_morsels_assigned": 0, "spool_morsels_sent_inline": 0,
                         "spool_results": 0}
        self._refusals = RateLimitedLog(log)
        self.pieces = PieceSizer(config.morsel_target_s)

    @property
    def queued(self) -> int:
        """Morsels waiting for a worker."""
        return max(0, self._pending)

    # -- the queue ------------------------------------------------------------------------------
    def push(self, job: Job, mo: Morsel) -> None:
        heapq.heappush(self._queue, (-job.priority, job.seq, mo.idx, job.job_id))
        self._pending += 1

    def enqueue(self, job: Job) -> None:
        """Queue every morsel of ``job`` not done yet."""
        for mo in job.morsels:
            if not mo.done:
                self.push(job, mo)

    def _pop(self) -> tuple[Job, Morsel] | None:
        jobs = self._jobs
        while self._queue:
            _, _, idx, job_id = heapq.heappop(self._queue)
            self._pending -= 1
            job = jobs.get(job_id)
            if job is None or job.state not in ACTIVE_JOB_STATES:
                continue
            mo = job.morsels[idx]
            if mo.done or mo.node is not None:
                continue
            return job, mo
        return None

    def dispatch(self, now: float) -> None:
        """Hand out queued morsels while alive workers have free credits."""
        if not self._queue:
            return
        nodes = [n for n in self._nodes.values() if n.free > 0]
        if not nodes:
            return
        # Rotate the starting node so equal workers share the head of the queue.
        self._rr = (self._rr + 1) % len(nodes)
        nodes = nodes[self._rr:] + nodes[:self._rr]
        timeout = self._config.morsel_timeout_s
        counters = self.counters
        while nodes and self._queue:
            still: list[Node] = []
            for node in nodes:
                picked = self._pop()
                if picked is None:
                    return
                job, mo = picked
                start, count = self.pieces.piece(job, mo, node.capabilities)
                mo.piece = count
                if count:
                    counters["morsel_pieces_assigned"] += 1
                    job.pieces_run += 1
                mo.attempts += 1
                mo.assignment += 1
                mo.node = node.node_id
                mo.deadline = now + timeout if timeout else 0.0
                node.inflight[(job.job_id, mo.idx)] = mo.assignment
                if job.state is _PENDING:
                    self._table.move(job, _RUNNING)
                func = None
                if job.func_pickle is not None and job.job_id not in node.funcs_sent:
                    func = job.func_pickle
                    node.funcs_sent.add(job.job_id)
                counters["morsels_assigned"] += 1
                encoding, data = mo.encoding, mo.data or b""
                if encoding == SPOOL:
                    if node.spool:
                        counters["spool_morsels_assigned"] += 1
                    else:
                        # A worker on another host: the bytes travel, read from the file.
                        try:
                            encoding, data = self._spooled_input(job, mo)
                        except ProtocolError as exc:
                            self._input_lost(node, job, mo, str(exc))
                            if node.free > 0:
                                still.append(node)
                            continue
                        counters["spool_morsels_sent_inline"] += 1
                self._send(node.peer, m.Assign(job.job_id, mo.idx, mo.assignment, mo.offset,
                                               job.func_name, func, encoding, data, start,
                                               count))
                if node.free > 0:
                    still.append(node)
            nodes = still

    def _spooled_input(self, job: Job, mo: Morsel) -> tuple[str, bytes]:
        """(encoding, bytes) of a morsel whose input is a spool file (ProtocolError naming
        the file when it is missing or damaged)."""
        spool = self._table.spool
        enc, size, crc = parse_ref(mo.data or b"")
        try:
            return enc, spool.read(spool.input_path(job.job_id, mo.idx, crc), size, crc)
        except ResultFileError as exc:
            raise ProtocolError(str(exc)) from None

    def _input_lost(self, node: Node, job: Job, mo: Morsel, why: str) -> None:
        """The input file of a morsel cannot be read: no run can help, its job fails."""
        node.inflight.pop((job.job_id, mo.idx), None)
        mo.node = None
        self.counters["morsels_failed"] += 1
        self._table.move(job, _FAILED, error=(
            f"morsel {mo.idx} (items {mo.offset}-{mo.offset + mo.items - 1}): its input in "
            f"the spool cannot be read: {why}"))

    # -- what workers report --------------------------------------------------------------------
    def _refuse(self, node: Node | None, what: str, msg: m.MorselResult | m.MorselFailed,
                why: str) -> None:
        """Count and log (rate-limited) a result or failure the morsel's current assignment
        did not send."""
        self.counters["results_refused"] += 1
        self._metrics.record_result_refused()
        self._refusals.log("refused", logging.INFO,
                           "refused a %s for job %s morsel %s (attempt %s) from worker %s: %s",
                           what, msg.job_id, msg.morsel, msg.attempt,
                           node.node_id if node else "?", why)

    def _current(self, node: Node | None, msg: m.MorselResult | m.MorselFailed | m.ResultChunk,
                 what: str, *, count: bool = True) -> tuple[Job, Morsel] | None:
        """The job and morsel of a worker's result or failure when it is the answer to the
        morsel's current assignment, which went to that worker; None otherwise (a late one
        is ignored, one that was never asked of that worker is refused)."""
        key = (msg.job_id, msg.morsel)
        job = self._jobs.get(msg.job_id)
        if job is None or job.state not in ACTIVE_JOB_STATES or \
                not 0 <= key[1] < len(job.morsels):
            # The job is over (cancelled, failed, done) or gone: a late answer.
            if node is not None:
                node.inflight.pop(key, None)
            if count:
                self.counters["duplicates_ignored"] += 1
            return None
        mo = job.morsels[key[1]]
        held = node.inflight.get(key) if node is not None else None
        if held is None or held != msg.attempt or mo.node != node.node_id:  # type: ignore
            if mo.done and held is None:
                # Done by another worker after this one lost it (or ran it twice): late.
                if count:
                    self.counters["duplicates_ignored"] += 1
                log.debug("ignored a late result for %s morsel %d", msg.job_id, key[1])
                return None
            if not count:
                return None
            self._refuse(node, what, msg,
                         "that worker does not hold this morsel" if held is None else
                         f"its current assignment is attempt {held}, on worker {mo.node}")
            return None
        return job, mo

    # -- what workers report --------------------------------------------------------------------
    def on_result(self, peer: Target, msg: m.MorselResult, version: int) -> None:
        node = self._node_of(peer)
        picked = self._current(node, msg, "result")
        if picked is None:
            if msg.encoding == SPOOL and job_id_problem(msg.job_id) is None:
                self._drop_output(msg)
            return
        assert node is not None
        job, mo = picked
        items = int(msg.items)
        encoding, data = msg.encoding, msg.data
        spooled: tuple[str, int, int] | None = None
        if encoding == SPOOL:
            try:
                spooled = parse_ref(data)
                if mo.piece:
                    # (a piece's result is kept with the others, in memory: read it here)
                    encoding, data = spooled[0], self._table.spool.read(
                        self._table.spool.output_path(job.job_id, mo.idx, msg.attempt),
                        spooled[1], spooled[2])
                    self._drop_output(msg)
                    spooled = None
            except (ProtocolError, ResultFileError) as exc:
                self._drop_output(msg)
                self.counters["results_damaged"] += 1
                log.warning("worker %s: job %s morsel %d: its result in the spool cannot be "
                            "taken (%s); the morsel runs again", node.node_id, job.job_id,
                            mo.idx, exc)
                self._requeue(node, (job.job_id, mo.idx), lost=False, reason=str(exc))
                return
        self.pieces.learn(job, items, float(msg.elapsed_s),
                          spooled[1] if spooled is not None else len(data))
        if not self._took(job, mo, node, items, encoding, data):
            if spooled is not None:
                self._drop_output(msg)
            return
        if spooled is not None:
            self.counters["spool_results"] += 1
            job.spooled = True
            self._table.store_spooled(job, mo, spooled[0], mo.items, spooled[1], spooled[2],
                                      self._table.spool.output_path(job.job_id, mo.idx,
                                                                    msg.attempt))
            self._finished_one(job)
            return
        if mo.parts is not None:
            encoding, data = payload.PARTS, payload.join_parts(job.result_kind, mo.parts)
            mo.parts, mo.carved = None, 0
        else:
            data = bytes(data)
        self._table.store_result(job, mo, encoding, mo.items, data, mo.attempts)
        self._finished_one(job)

    def _drop_output(self, msg: m.MorselResult) -> None:
        """A result a worker wrote to the spool that is not taken: its file goes."""
        path = self._table.spool.output_path(msg.job_id, msg.morsel, msg.attempt)
        self._table.files.then(partial(_unlink, path))

    def on_chunk(self, peer: Target, msg: m.ResultChunk, version: int) -> None:
        """A chunk of a big result: appended to its file; the result counts at its last."""
        node = self._node_of(peer)
        key = (msg.job_id, msg.morsel)
        # (a refusal is counted once per result, at its first chunk)
        picked = self._current(node, msg, "result", count=msg.index == 0)
        if picked is None or not isinstance(peer, bytes):
            self.chunks.discard(key)
            self._send(peer, m.ResultChunkAck(msg.job_id, msg.morsel, msg.attempt, msg.index,
                                              False))
            return
        assert node is not None
        job, mo = picked
        if mo.piece:
            # A piece's result too big to keep with the others: the morsel runs whole again
            # (its result then streams to its file), which costs the pieces done so far.
            self.chunks.discard(key)
            self._send(peer, m.ResultChunkAck(msg.job_id, msg.morsel, msg.attempt, msg.index,
                                              False))
            mo.whole, mo.parts, mo.carved = True, None, 0
            self.counters["morsels_run_whole_again"] += 1
            self._requeue(node, key, lost=False, reason="a piece's result came in chunks")
            return
        try:
            done = self.chunks.add(node.node_id, peer, msg)
        except ProtocolError as exc:
            # Cut short or damaged on the way: the morsel runs again (no attempt used).
            self.counters["results_damaged"] += 1
            log.warning("worker %s: %s; the morsel runs again", node.node_id, exc)
            self._send(peer, m.ResultChunkAck(msg.job_id, msg.morsel, msg.attempt, msg.index,
                                              False))
            self._requeue(node, key, lost=False, reason=str(exc))
            return
        if done is None:
            return
        self.counters["results_chunked"] += 1
        self.pieces.learn(job, done.items, done.elapsed_s, done.size)
        if self._took(job, mo, node, done.items):
            self._table.store_chunked(job, mo, done.encoding, done.items, done.size)
            self._finished_one(job)
        else:
            self.chunks.discard(key)

    def requeue_lost(self, lost: list[tuple[Job, Morsel]]) -> None:
        """Queue again morsels whose chunked result could not be written to its file."""
        for job, mo in lost:
            self.counters["morsels_requeued"] += 1
            self.push(job, mo)

    def _took(self, job: Job, mo: Morsel, node: Node, items: int, encoding: str = "",
              data: bytes | None = None) -> bool:
        """Morsel ``mo``'s result from ``node`` counts (True: the caller stores it, and its
        pieces' results in ``mo.parts`` with it); False when its item count is wrong, which
        fails the job, or when it was a piece (``encoding``, ``data``: its result, kept) and
        more of the morsel is to run (it is queued again)."""
        key = (job.job_id, mo.idx)
        node.inflight.pop(key, None)
        node.morsels_done += 1
        node.items_done += items
        piece = mo.piece
        expected = piece if piece > 0 else mo.items - mo.carved
        if items != expected:
            # The worker decoded another number of items than the submit claimed (a pickle
            # morsel, which the coordinator cannot count): running it again cannot help.
            mo.node = None
            self.counters["morsels_failed"] += 1
            self._table.move(job, _FAILED, error=(
                f"morsel {mo.idx} (items {mo.offset}-{mo.offset + mo.items - 1}) was submitted "
                f"as {mo.items} item(s) but worker {node.node_id} decoded "
                f"{mo.carved + items}: the submit's item count is wrong"))
            return False
        if piece:
            mo.piece = 0
            if mo.parts is None:
                mo.parts = []
            mo.parts.append((encoding, items, bytes(data or b"")))
            mo.carved += items
            if mo.carved < mo.items:
                # A piece done uses no attempt: the next one has the morsel's attempts left.
                mo.node = None
                mo.attempts = max(0, mo.attempts - 1)
                self.push(job, mo)
                return False
        mo.done = True
        mo.node = None
        mo.data = None
        job.done_morsels += 1
        job.done_items += mo.items
        self.counters["morsels_completed"] += 1
        return True

    def _finished_one(self, job: Job) -> None:
        self._touched.add(job.job_id)
        if job.done_morsels == len(job.morsels):
            self._table.complete(job)

    def on_results(self, peer: Target, msg: m.MorselResults, version: int) -> None:
        for one in msg.expand():
            # One result that cannot be handled must not take the others of the batch with it
            # (they would stay in flight on a live worker).
            try:
                self.on_result(peer, one, version)
            except Exception:
                log.exception("handling the result of morsel %s of job %s failed", one.morsel,
                              one.job_id)
                self._metrics.record_error("coordinator_internal")

    def on_failed(self, peer: Target, msg: m.MorselFailed, version: int) -> None:
        node = self._node_of(peer)
        picked = self._current(node, msg, "failure")
        if picked is None:
            return
        assert node is not None
        job, mo = picked
        key = (msg.job_id, mo.idx)
        node.inflight.pop(key, None)
        node.morsels_failed += 1
        first = mo.carved if mo.piece else 0  # (a piece's index counts from its start)
        where = f"item {mo.offset + first + msg.index}" if msg.index is not None else \
            f"items {mo.offset}-{mo.offset + mo.items - 1}"
        text = f"{msg.error_type}: {msg.message}"
        mo.last_error = f"morsel {key[1]} ({where}) failed on worker {node.node_id}: {text}"
        if msg.traceback:
            mo.last_error += "\n" + msg.traceback.rstrip()
        self.counters["morsels_failed"] += 1
        self._metrics.record_morsel(0.0, "failed")
        log.info("job %s morsel %d attempt %d failed: %s", job.job_id, key[1], mo.attempts, text)
        mo.node = None
        self._retry_or_fail(job, mo)

    # -- requeues and retries -------------------------------------------------------------------
    def _retry_or_fail(self, job: Job, mo: Morsel) -> None:
        self._journal.set_attempts(job.job_id, mo.idx, mo.attempts)
        if mo.attempts >= self._config.max_attempts:
            self._table.move(job, _FAILED, error=(
                f"{mo.last_error}\n(gave up after {mo.attempts} attempt(s); "
                f"SABOT_MAX_ATTEMPTS={self._config.max_attempts})"))
        else:
            self.counters["morsels_requeued"] += 1
            self.push(job, mo)

    def _requeue(self, node: Node, key: tuple[str, int], *, lost: bool, reason: str) -> None:
        """Queue a morsel of ``node`` again without using an attempt; ``lost``: its worker
        was lost (counted in the job's node losses)."""
        node.inflight.pop(key, None)
        job = self._jobs.get(key[0])
        if job is None or job.state not in ACTIVE_JOB_STATES:
            return
        mo = job.morsels[key[1]]
        if mo.done or mo.node != node.node_id:
            return
        mo.node = None
        mo.attempts = max(0, mo.attempts - 1)
        self.counters["morsels_requeued"] += 1
        if lost:
            mo.node_losses += 1
            job.node_losses += 1
            self.counters["morsels_requeued_node_lost"] += 1
            if mo.node_losses > job.most_node_losses:
                job.most_node_losses, job.most_lost_morsel = mo.node_losses, mo.idx
            if mo.node_losses % NODE_LOSS_LOG_EVERY == 0:
                log.warning("job %s morsel %d (items %d-%d) has been on %d workers that were "
                            "lost (last: %s); it is requeued again. If its function brings "
                            "down the node running it, cancel the job", job.job_id, mo.idx,
                            mo.offset, mo.offset + mo.items - 1, mo.node_losses, reason)
        self.push(job, mo)

    def release(self, node: Node, reason: str, *, refund_all: bool = False,
                handed_back: Container[tuple[str, int]] = ()) -> None:
        """Hand out again every morsel ``node`` holds (it died, left, or started a new
        session). None of them uses up an attempt (only the user's code does); those not
        handed back and not of a session that ended (``refund_all``) count as node losses.
        Their results still coming in chunks are discarded."""
        if len(self.chunks):
            self.counters["results_cut_short"] += self.chunks.discard_node(
                node.node_id, list(node.inflight))
        for key in list(node.inflight):
            self._requeue(node, key, lost=not (refund_all or key in handed_back),
                          reason=reason)

    def expire_morsels(self, now: float) -> None:
        """Cancel and retry the morsels running past SABOT_MORSEL_TIMEOUT_S (scanned ten times
        per timeout)."""
        timeout_s = self._config.morsel_timeout_s
        if not timeout_s or now < self._next_timeout_scan:
            return
        self._next_timeout_scan = now + timeout_s / 10
        for node in self._nodes.values():
            for key in list(node.inflight):
                job = self._jobs.get(key[0])
                if job is None:
                    node.inflight.pop(key, None)
                    continue
                mo = job.morsels[key[1]]
                if mo.deadline and mo.deadline <= now and mo.node == node.node_id:
                    self.counters["morsels_timed_out"] += 1
                    self.chunks.discard(key)
                    node.inflight.pop(key, None)
                    self._send(node.peer, m.CancelMorsel(job.job_id, mo.idx, "timed out"))
                    mo.node = None
                    mo.last_error = (f"morsel {mo.idx} (items {mo.offset}-"
                                     f"{mo.offset + mo.items - 1}) timed out after "
                                     f"{timeout_s:g} s on worker {node.node_id} "
                                     f"(SABOT_MORSEL_TIMEOUT_S)")
                    log.warning("%s", mo.last_error)
                    self._retry_or_fail(job, mo)


    def sweep_chunks(self) -> None:
        """Discard the chunked results whose morsel is no longer in flight on their worker
        (its job ended meanwhile): no more chunks come for them."""
        if not len(self.chunks):
            return
        jobs = self._jobs
        for key in self.chunks.in_progress():
            job = jobs.get(key[0])
            if job is None or job.state not in ACTIVE_JOB_STATES or job.morsels[key[1]].node \
                    is None:
                self.chunks.discard(key)


__all__ = ["Dispatcher"]
