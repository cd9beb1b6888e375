"""The coordinator's job table, dispatcher and result pager on a real SQLite journal, driven the
way the core thread drives them (without sockets): a job's dict and its result pages are the
same from memory and from the journal, and a finished job never changes again."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from sabot.cluster.coordinator.dispatcher import Dispatcher
from sabot.cluster.coordinator.job_table import FINISHED_IN_MEMORY, JobTable
from sabot.cluster.coordinator.node_registry import NodeRegistry
from sabot.cluster.coordinator.result_pager import ResultPager, Waiter
from sabot.cluster.journal import Journal
from sabot.cluster.protocol import PROTOCOL_VERSION, ReplayGuard, payload
from sabot.cluster.protocol import messages as m
from sabot.cluster.result_files import ResultFiles
from sabot.config import load_config
from sabot.metrics import Metrics
from sabot.states import InvalidTransition, JobState

WORKER = b"worker-peer"
CLIENT = b"client-peer"


class Parts:
    """The coordinator's objects, wired as its core thread wires them."""

    def __init__(self, tmp: Path, **env: str) -> None:
        self.config = load_config(env={"SABOT_DATA_DIR": str(tmp), **env})
        self.journal = Journal(tmp)
        self.files = ResultFiles(tmp, lambda: None)
        self.sent: list[tuple[Any, m.Message]] = []
        metrics = Metrics("sabot-cluster", "test")
        self.registry = NodeRegistry(self.config, metrics, ReplayGuard(), self.send)
        waiters: dict[str, list[Waiter]] = {}
        self.jobs = JobTable(self.config, self.journal, metrics, self.registry, self.send,
                             waiters, self.files)
        self.dispatcher = Dispatcher(self.config, self.jobs, self.registry, self.journal,
                                     metrics, self.send)
        self.pager = ResultPager(self.config, self.jobs, self.journal, self.send, waiters)
        self.registry.register(WORKER, m.Hello(PROTOCOL_VERSION, "sabot-cluster", "worker",
                                               "w-1", slots=64))

    def send(self, target: Any, msg: m.Message) -> None:
        self.sent.append((target, msg))

    def replies(self, kind: type) -> list[Any]:
        return [msg for target, msg in self.sent if target == CLIENT and isinstance(msg, kind)]

    def submit(self, job_id: str, data: list[int], morsel_items: int) -> None:
        kind, morsels = payload.split(data, 1 << 16, morsel_items)
        job, reply = self.jobs.submit(m.SubmitJob(1, job_id, "square", None, kind, morsels))
        assert isinstance(reply, m.SubmitAck), reply
        if job is not None:
            self.dispatcher.enqueue(job)

    def run_assigned(self) -> None:
        """Hand out the queued morsels and answer each as the worker would (squares)."""
        self.dispatcher.dispatch(time.monotonic())
        assigned = [msg for target, msg in self.sent if isinstance(msg, m.Assign)]
        self.sent.clear()
        for a in assigned:
            items = payload.decode_value(a.encoding, a.data)
            enc, blob = payload.encode_items([x * x for x in items])
            self.dispatcher.on_result(WORKER, m.MorselResult(a.job_id, a.morsel, a.attempt,
                                                             len(items), enc, blob), 3)
        self.commit()

    def commit(self) -> None:
        """What the core's turn does: results whose files are written are journaled, then
        the commit."""
        deadline = time.monotonic() + 30
        while any(j.writing for j in self.jobs.jobs.values()):
            assert time.monotonic() < deadline, "result files not written after 30 s"
            time.sleep(0.01)
            self.jobs.take_written()
        self.jobs.commit()

    def close(self) -> None:
        self.files.close()
        self.journal.close()

    def status(self, job_id: str) -> dict[str, Any]:
        self.jobs.on_status(CLIENT, m.GetStatus(1, job_id), 3)
        return self.replies(m.JobStatus)[-1].job

    def page(self, job_id: str, offset: int, limit: int | None) -> list[int]:
        _, parts, first = self.pager.page(job_id, offset, limit)
        items = [x for enc, _, blob in parts for x in payload.decode_value(
            enc, blob if isinstance(blob, bytes) else blob.read())]
        return items[offset - first:][:limit]


@pytest.fixture
def parts(tmp_path: Path) -> Iterator[Parts]:
    p = Parts(tmp_path)
    try:
        yield p
    finally:
        p.close()


def _push_out_of_memory(parts: Parts) -> None:
    # Jobs without input finish at once; enough of them push the first one out of memory.
    for i in range(FINISHED_IN_MEMORY + 1):
        parts.submit(f"filler-{i}", [], 1)
    parts.commit()


def test_a_jobs_dict_and_pages_are_the_same_from_memory_and_from_the_journal(parts):
    data = list(range(25))
    parts.submit("job-a", data, morsel_items=4)
    assert parts.status("job-a")["status"] == "pending"
    parts.run_assigned()
    in_memory = parts.status("job-a")
    pages = [parts.page("job-a", offset, limit)
             for offset, limit in ((0, None), (0, 5), (3, 9), (24, 10), (25, 3))]
    assert in_memory["status"] == "completed" and in_memory["progress"] == {
        "done": 25, "total": 25, "fraction": 1.0, "morsels_done": 7, "morsels_total": 7}
    assert pages == [[x * x for x in data], [0, 1, 4, 9, 16], [x * x for x in range(3, 12)],
                     [576], []]

    _push_out_of_memory(parts)
    assert "job-a" not in parts.jobs.jobs
    assert parts.status("job-a") == in_memory
    assert [parts.page("job-a", offset, limit)
            for offset, limit in ((0, None), (0, 5), (3, 9), (24, 10), (25, 3))] == pages


def test_a_finished_job_never_changes_again(parts):
    parts.submit("job-b", list(range(10)), morsel_items=5)
    parts.run_assigned()
    done = parts.status("job-b")
    assert done["status"] == "completed"

    # A cancel of a finished job answers its state, unchanged; a direct move is refused.
    parts.jobs.on_cancel(CLIENT, m.CancelJob(2, "job-b"), 3)
    assert parts.replies(m.JobStatus)[-1].job == done
    with pytest.raises(InvalidTransition, match="from completed to failed"):
        parts.jobs.move(parts.jobs.jobs["job-b"], JobState.FAILED, "late")
    parts.commit()
    assert parts.status("job-b") == done
    assert parts.journal.job("job-b").status is JobState.COMPLETED


def test_a_cancelled_job_cancels_its_running_morsels_and_ignores_their_results(parts):
    parts.submit("job-c", list(range(12)), morsel_items=3)
    parts.dispatcher.dispatch(time.monotonic())
    assigned = [msg for _, msg in parts.sent if isinstance(msg, m.Assign)]
    assert len(assigned) == 4
    parts.sent.clear()

    parts.jobs.on_cancel(CLIENT, m.CancelJob(3, "job-c"), 3)
    assert parts.replies(m.JobStatus)[-1].job["status"] == "cancelled"
    cancels = sorted(msg.morsel for target, msg in parts.sent
                     if target == WORKER and isinstance(msg, m.CancelMorsel))
    assert cancels == [0, 1, 2, 3]
    enc, blob = payload.encode_items([0, 1, 4])
    parts.dispatcher.on_result(WORKER, m.MorselResult("job-c", 0, 1, 3, enc, blob), 3)
    parts.commit()
    after = parts.status("job-c")
    assert after["status"] == "cancelled" and after["progress"]["done"] == 0
    assert parts.dispatcher.counters["duplicates_ignored"] == 1
    assert parts.journal.job("job-c").status is JobState.CANCELLED


def test_a_journal_that_cannot_be_written_loses_nothing_and_recovers(parts):
    """SQLite's own "database or disk is full" (a page limit, so no mount is needed; the real
    full disk is tests/reliability/test_full_disk.py): the failed commit keeps its changes, the
    refused submit is taken back, new submits are refused, results are served from memory, and
    a retry once there is room writes everything."""
    from sabot.cluster.protocol import ErrorCode
    from sabot.states import JournalState

    journal = parts.journal
    parts.submit("kept", list(range(40)), morsel_items=10)
    parts.commit()
    pages = journal._db.execute("PRAGMA page_count").fetchone()[0]
    journal._db.execute(f"PRAGMA max_page_count={pages}")  # the disk is full
    parts.submit("too-big", list(range(20_000)), morsel_items=5000)
    parts.run_assigned()  # "kept" completes; its results cannot be written either
    assert journal.state is JournalState.UNWRITABLE
    assert "full" in journal.problem and "SABOT_DATA_DIR" in journal.problem
    assert journal.insert_pending("too-big") and journal.unwritten("kept")
    parts.jobs.discard("too-big")  # (what the core does with a submit it cannot journal)
    assert parts.status("kept")["status"] == "completed"
    assert parts.page("kept", 0, None) == [x * x for x in range(40)]
    _, refused = parts.jobs.submit(m.SubmitJob(9, "later", "square", None,
                                               *payload.split([1, 2], 1 << 16)))
    assert isinstance(refused, m.ErrorReply) and refused.code == ErrorCode.JOURNAL_UNWRITABLE
    assert refused.details["data_dir"] == str(parts.config.data_dir)
    assert journal.job("kept").status is JobState.PENDING  # (what the journal holds so far)

    # Without the refused submit, what waits fits again: a retry writes it all.
    assert journal.retry() and journal.state is JournalState.WRITABLE
    assert journal.job("too-big") is None
    assert journal.job("kept").status is JobState.COMPLETED
    assert [x for r in journal.results("kept", 0, 1 << 20)
            for x in payload.decode_value(r.encoding, r.data)] == [x * x for x in range(40)]
    assert parts.jobs.submit(m.SubmitJob(10, "later", "square", None,
                                         *payload.split([1, 2], 1 << 16)))[0] is not None


def test_a_resumed_job_completed_while_the_journal_is_full_pages_every_result(tmp_path):
    """Results of a job resumed after a restart come from the journal (those done before) and
    from memory (those the full journal could not take yet): a page holds them all."""
    first = Parts(tmp_path)
    first.submit("resumed", list(range(30)), morsel_items=10)
    first.dispatcher.dispatch(time.monotonic())
    one = next(msg for _, msg in first.sent if isinstance(msg, m.Assign) and msg.morsel == 0)
    enc, blob = payload.encode_items([x * x for x in range(10)])
    first.dispatcher.on_result(WORKER, m.MorselResult("resumed", 0, one.attempt, 10, enc, blob),
                               3)
    first.commit()
    first.close()  # (the coordinator stops; morsels 1 and 2 were not done)

    parts = Parts(tmp_path)
    try:
        for job in parts.jobs.recover():
            parts.dispatcher.enqueue(job)
        pages = parts.journal._db.execute("PRAGMA page_count").fetchone()[0]
        parts.journal._db.execute(f"PRAGMA max_page_count={pages}")
        parts.submit("fills-it", list(range(20_000)), morsel_items=5000)
        parts.jobs.flush_results()
        assert not parts.journal.commit()
        parts.jobs.discard("fills-it")
        parts.run_assigned()  # morsels 1 and 2: kept in memory only
        assert parts.status("resumed")["status"] == "completed"
        assert parts.page("resumed", 0, None) == [x * x for x in range(30)]
        assert parts.page("resumed", 5, 10) == [x * x for x in range(5, 15)]
    finally:
        parts.close()


def test_a_resubmit_without_a_digest_is_compared_by_the_digest_the_coordinator_makes(parts):
    """A ZeroMQ client that sends no digest (it is optional): the coordinator computes it, so the
    same content under the same job id is the same job, other content a conflict, and a digest
    a client sends is the same as the one computed."""
    from sabot.cluster.protocol import ErrorCode

    kind, morsels = payload.split(list(range(20)), 1 << 16, 5)
    job, ack = parts.jobs.submit(m.SubmitJob(1, "no-digest", "square", None, kind, morsels))
    assert job is not None and isinstance(ack, m.SubmitAck) and not ack.existing
    parts.commit()
    _, again = parts.jobs.submit(m.SubmitJob(2, "no-digest", "square", None, kind, morsels))
    assert isinstance(again, m.SubmitAck) and again.existing and again.job_id == "no-digest"
    digest = payload.submit_digest("square", None, kind, morsels, 0)
    _, sent = parts.jobs.submit(m.SubmitJob(3, "no-digest", "square", None, kind, morsels, 0,
                                            digest))
    assert isinstance(sent, m.SubmitAck) and sent.existing
    for other in (m.SubmitJob(4, "no-digest", "double", None, kind, morsels),
                  m.SubmitJob(5, "no-digest", "square", None, kind, morsels[:-1]),
                  m.SubmitJob(6, "no-digest", "square", None, kind, morsels, 1)):
        _, refused = parts.jobs.submit(other)
        assert isinstance(refused, m.ErrorReply) and refused.code == ErrorCode.JOB_ID_CONFLICT
    _, bad = parts.jobs.submit(m.SubmitJob(7, "white space", "square", None, kind, morsels))
    assert isinstance(bad, m.ErrorReply) and bad.code == ErrorCode.BAD_REQUEST
    assert "letters, digits" in bad.message


def test_big_results_go_to_files_leave_memory_and_expire_by_bytes(tmp_path: Path) -> None:
    """A result of FILE_MIN_BYTES or more is written to its file (its journal row holds no
    bytes); with a budget of 0 MB it leaves memory once on disk and pages read it back from the
    file; past SABOT_RESULT_RETENTION_MB the oldest job goes, its tombstone saying why."""
    from sabot.cluster.result_files import FILE_MIN_BYTES

    parts = Parts(tmp_path, SABOT_RESULT_MEMORY_MB="0", SABOT_RESULT_RETENTION_MB="0.5")
    try:
        big = list(range(FILE_MIN_BYTES // 4))  # squares as msgpack ints: > FILE_MIN_BYTES
        for job_id in ("first", "second"):
            parts.submit(job_id, big, morsel_items=len(big))
            parts.run_assigned()
            assert parts.status(job_id)["status"] == "completed"
        (stored,) = parts.journal.results("second", 0, 1 << 30)
        assert stored.data is None and stored.size >= FILE_MIN_BYTES
        assert (tmp_path / "results" / "second" / "0.bin").stat().st_size == stored.size
        assert parts.jobs.memory.held_bytes == 0  # on disk, so let go (budget 0)
        assert parts.jobs.jobs["second"].morsels[0].result is None
        assert parts.page("second", 0, None) == [x * x for x in big]
        # Two results of ~0.5 MB each over a 0.5 MB retention: the first job goes.
        parts.jobs.purge(time.time())
        parts.commit()
        parts.jobs.on_status(CLIENT, m.GetStatus(7, "first"), 3)
        (refusal,) = [r for r in parts.replies(m.ErrorReply) if r.request_id == 7]
        assert refusal.code == "job_expired" and "SABOT_RESULT_RETENTION_MB=0.5" in refusal.message
        deadline = time.monotonic() + 30
        while (tmp_path / "results" / "first").exists():
            assert time.monotonic() < deadline
            time.sleep(0.01)
        assert parts.page("second", 0, 3) == [0, 1, 4]
    finally:
        parts.close()


def _chunks_of(a: m.Assign, blob: bytes, items: int, enc: str, *, crc: int | None = None,
               attempt: int | None = None) -> list[m.ResultChunk]:
    """``blob`` as the worker sends a result over CHUNK_BYTES: result-chunk messages."""
    import zlib

    step = m.CHUNK_BYTES
    count = -(-len(blob) // step)
    out = []
    for i in range(count):
        final = i == count - 1
        out.append(m.ResultChunk(a.job_id, a.morsel, a.attempt if attempt is None else attempt,
                                 i, blob[i * step:(i + 1) * step], final,
                                 items if final else 0, enc if final else "", 0.0,
                                 len(blob) if final else 0,
                                 (zlib.crc32(blob) if crc is None else crc) if final else 0))
    return out


def _acks(parts: Parts, count: int) -> list[m.ResultChunkAck]:
    """The chunk acknowledgements sent so far, once there are ``count`` (the file thread
    appends the chunks, the core acknowledges them in its turn)."""
    deadline = time.monotonic() + 30
    while True:
        parts.dispatcher.chunks.acks()
        acks = [msg for target, msg in parts.sent if isinstance(msg, m.ResultChunkAck)]
        if len(acks) >= count:
            return acks
        assert time.monotonic() < deadline, f"{len(acks)} of {count} chunks acknowledged"
        time.sleep(0.01)


def test_a_result_in_chunks_is_appended_to_its_file_and_counts_at_its_last_chunk(
        tmp_path: Path) -> None:
    """Chunks of the current assignment are appended to the result's file and acknowledged;
    the result is never held in memory, counts once its last chunk matches, and pages read it
    from its file. A chunk of another attempt is refused (counted once, answered not
    accepted); a result whose CRC does not match is discarded with its partial file and the
    morsel runs again."""
    parts = Parts(tmp_path)
    try:
        data = list(range(1_100_000))
        parts.submit("chunked", data, morsel_items=len(data))
        parts.dispatcher.dispatch(time.monotonic())
        (a,) = [msg for _, msg in parts.sent if isinstance(msg, m.Assign)]
        parts.sent.clear()
        enc, blob = payload.encode_items([x * x for x in data])
        chunks = _chunks_of(a, blob, len(data), enc)
        assert len(chunks) >= 2  # (over CHUNK_BYTES)
        # Chunks of an earlier hand-out are refused, each answered, counted once.
        for c in _chunks_of(a, blob, len(data), enc, attempt=a.attempt + 1)[:2]:
            parts.dispatcher.on_chunk(WORKER, c, PROTOCOL_VERSION)
        stray = [msg for _, msg in parts.sent if isinstance(msg, m.ResultChunkAck)]
        assert [x.accepted for x in stray] == [False, False]
        assert parts.dispatcher.counters["results_refused"] == 1
        parts.sent.clear()
        for c in chunks:
            parts.dispatcher.on_chunk(WORKER, c, PROTOCOL_VERSION)
        acks = _acks(parts, len(chunks))
        assert [(x.index, x.accepted) for x in acks] == [(i, True) for i in range(len(chunks))]
        parts.commit()
        assert parts.status("chunked")["status"] == "completed"
        job = parts.jobs.jobs["chunked"]
        assert job.morsels[0].result is None and parts.jobs.memory.held_bytes == 0
        assert (tmp_path / "results" / "chunked" / "0.bin").read_bytes() == blob
        assert parts.page("chunked", 0, None) == [x * x for x in data]
        assert parts.dispatcher.counters["results_chunked"] == 1

        # Damaged on the way: discarded, no partial file left, the morsel runs again.
        parts.submit("damaged", data, morsel_items=len(data))
        parts.sent.clear()
        parts.dispatcher.dispatch(time.monotonic())
        (a,) = [msg for _, msg in parts.sent if isinstance(msg, m.Assign)]
        parts.sent.clear()
        for c in _chunks_of(a, blob, len(data), enc, crc=12345):
            parts.dispatcher.on_chunk(WORKER, c, PROTOCOL_VERSION)
        assert parts.dispatcher.counters["results_damaged"] == 1
        last = [msg for _, msg in parts.sent if isinstance(msg, m.ResultChunkAck)][-1]
        assert not last.accepted
        assert parts.dispatcher.queued == 1
        parts.commit()
        assert parts.status("damaged")["status"] == "running"
        deadline = time.monotonic() + 30
        while list((tmp_path / "results").rglob("*.tmp")):
            assert time.monotonic() < deadline, "the partial file is still there"
            time.sleep(0.01)
        parts.dispatcher.dispatch(time.monotonic())
        (again,) = [msg for _, msg in parts.sent if isinstance(msg, m.Assign)]
        assert again.morsel == a.morsel and again.attempt == a.attempt + 1
    finally:
        parts.close()
