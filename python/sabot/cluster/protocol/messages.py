"""Every message of the cluster protocol, one typed class each.

A message is a slotted dataclass (treated as immutable) registered with :func:`message` under
a numeric type code (the header's ``type``) and a name (``op``). Its fields are its msgpack
body, a map keyed by field name; docs/protocol.md lists them. No other module builds a
message out of a dict.

``Hello`` and ``Refused`` are frozen across protocol versions (fields may be added, never
changed), so peers of different versions can always tell each other why they are refused.
"""

from __future__ import annotations

import dataclasses
import typing
from collections.abc import Callable
from dataclasses import dataclass, field
from types import UnionType
from typing import Any, ClassVar

from ...errors import ProtocolError

#: type code -> message class
REGISTRY: dict[int, type[Message]] = {}

#: a field's accepted types, whether a bool is refused (ints and floats), whether None is
#: accepted
_Check = tuple[tuple[type, ...], bool, bool]


def _checker(tp: Any) -> _Check:
    """The type test of a field annotation (isinstance over a tuple: one C call per field)."""
    origin = typing.get_origin(tp)
    args = typing.get_args(tp)
    if origin in (typing.Union, UnionType):
        inner = [a for a in args if a is not type(None)]
        types, no_bool, _ = _checker(inner[0])
        return types, no_bool, True
    base = origin or tp
    if base is float:
        return (int, float), True, False
    if base is int:
        return (int,), True, False
    if base is bytes:
        return (bytes, bytearray, memoryview), False, False
    if base in (list, tuple):
        return (list, tuple), False, False
    return (base,), False, False


def message(code: int, op: str) -> Callable[[type], type]:
    """Register a message class under ``code`` (u16) and ``op`` (its name in the docs)."""

    def deco(cls: type) -> type:
        if code in REGISTRY:
            raise RuntimeError(f"message code {code} used twice")
        # Not frozen: a frozen dataclass's __init__ sets each field through object.__setattr__,
        # 5x the cost, and messages are built and decoded for every morsel.
        cls = dataclass(slots=True)(cls)
        hints = typing.get_type_hints(cls)
        spec = []
        for f in dataclasses.fields(cls):
            types, no_bool, nullable = _checker(hints[f.name])
            required = f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING
            spec.append((f.name, types, no_bool, nullable, required))
        cls.CODE = code
        cls.OP = op
        cls._SPEC = tuple(spec)
        REGISTRY[code] = cls
        return cls

    return deco


class Message:
    """Base of every message (for typing; the fields live on the subclasses)."""

    CODE: ClassVar[int]
    OP: ClassVar[str]
    _SPEC: ClassVar[tuple[tuple[str, tuple[type, ...], bool, bool, bool], ...]]

    def to_body(self) -> dict[str, Any]:
        return {spec[0]: getattr(self, spec[0]) for spec in self._SPEC}

    @classmethod
    def from_body(cls, body: Any) -> Message:
        if not isinstance(body, dict):
            raise ProtocolError(f"{cls.OP}: body must be a map, got {type(body).__name__}")
        kwargs: dict[str, Any] = {}
        for name, types, no_bool, nullable, required in cls._SPEC:
            if name not in body:
                if required:
                    raise ProtocolError(f"{cls.OP}: required field {name!r} is missing")
                continue
            value = body[name]
            if value is None:
                if not nullable:
                    raise ProtocolError(f"{cls.OP}: field {name!r} must not be null")
            elif not isinstance(value, types) or (no_bool and value.__class__ is bool):
                raise ProtocolError(
                    f"{cls.OP}: field {name!r} has the wrong type ({type(value).__name__})")
            kwargs[name] = value
        # Unknown keys are ignored: a newer peer may add optional fields.
        return cls(**kwargs)


# -- session ---------------------------------------------------------------------------------
@message(1, "hello")
class Hello(Message):
    """First message of every session (worker or client -> coordinator)."""

    protocol_version: int
    cluster_name: str
    role: str  # "worker" or "client"
    node_id: str
    host: str = ""
    http_port: int = 0
    pid: int = 0
    cores: int = 0
    slots: int = 0
    capabilities: list = field(default_factory=list)
    processors: list = field(default_factory=list)
    credits: int = 0  # morsels to send at first (0: as many as slots); Credit changes it later
    #: The token of the spool of the peer's own data dir ("" when it has none): the same as
    #: the coordinator's means they share the directory (sabot.cluster.spool).
    spool_token: str = ""
    #: The peer can use the spool through the data port when it does not share the directory
    #: (sabot.cluster.remote_spool): SABOT_SPOOL is on.
    remote_spool: bool = False


@message(2, "welcome")
class Welcome(Message):
    """The coordinator accepted a Hello."""

    coordinator_id: str
    cluster_name: str
    protocol_version: int
    heartbeat_s: float
    node_timeout_s: float
    #: The coordinator takes results bigger than this as ``result-chunk`` messages of this
    #: many bytes (0 or absent, an older coordinator: every result travels whole).
    chunk_bytes: int = 0
    #: The peer shares the coordinator's spool (its hello's token matched): 0 no, 1 yes, 2 yes
    #: and spool files are fsynced (SABOT_JOURNAL_SYNC=full); 3: not shared, but reached
    #: through the data port (``data_port``, on the host the peer reached this coordinator at).
    spool: int = 0
    #: The coordinator's data port (0: none; sabot.cluster.coordinator.spool_server).
    data_port: int = 0


@message(3, "refused")
class Refused(Message):
    """The coordinator refuses the peer. ``code``: version_mismatch, cluster_mismatch,
    bad_hello, unknown_session."""

    code: str
    message: str
    protocol_version: int
    cluster_name: str


@message(4, "heartbeat")
class Heartbeat(Message):
    """Worker -> coordinator every SABOT_HEARTBEAT_S."""

    running: int
    items_done: int
    utilization: float = 0.0
    draining: bool = False


@message(5, "heartbeat-ack")
class HeartbeatAck(Message):
    """Coordinator -> worker: lets the worker notice a lost coordinator."""

    time: float


@message(6, "credit")
class Credit(Message):
    """Worker -> coordinator: the number of morsels it may hold from now on (0 while draining)."""

    credits: int


@message(7, "assign")
class Assign(Message):
    """Coordinator -> worker: run one morsel. ``func_pickle`` is sent with the first morsel of a
    job to a session; later morsels of that job carry None. ``count`` other than 0 (sent only
    to a worker whose hello has the capability RANGES): run only the morsel's items ``start``
    to ``start + count`` (``count`` < 0: to its end), a piece of a costly morsel; its result
    holds those items alone and a failure's ``index`` counts from ``start``."""

    job_id: str
    morsel: int
    attempt: int
    offset: int
    func_name: str
    func_pickle: bytes | None
    encoding: str
    data: bytes
    start: int = 0
    count: int = 0


@message(8, "morsel-result")
class MorselResult(Message):
    """Worker -> coordinator: a morsel finished; one credit returns to the worker."""

    job_id: str
    morsel: int
    attempt: int
    items: int
    encoding: str
    data: bytes
    elapsed_s: float = 0.0


@message(9, "morsel-failed")
class MorselFailed(Message):
    """Worker -> coordinator: a morsel raised; one credit returns to the worker."""

    job_id: str
    morsel: int
    attempt: int
    error_type: str
    message: str
    traceback: str = ""
    index: int | None = None


@message(10, "cancel-morsel")
class CancelMorsel(Message):
    """Coordinator -> worker: stop a morsel (job cancelled, morsel timed out)."""

    job_id: str
    morsel: int
    reason: str


@message(11, "goodbye")
class Goodbye(Message):
    """Worker -> coordinator on shutdown; ``returned``: [job_id, morsel] pairs handed back."""

    reason: str
    returned: list = field(default_factory=list)


class _Entries(Message):
    """A message whose field ``_LIST`` is a list of fixed-shape entries (``_ENTRY``: name and
    accepted types of each value), checked when it is decoded."""

    _LIST: ClassVar[str]
    _ENTRY: ClassVar[tuple[tuple[str, tuple[type, ...]], ...]]

    @classmethod
    def from_body(cls, body: Any) -> Message:
        msg = super().from_body(body)
        _check_entries(cls.OP, getattr(msg, cls._LIST), cls._ENTRY)
        return msg


@message(12, "assign-many")
class AssignMany(_Entries):
    """Coordinator -> worker: several morsels of one job, each exactly as one ``assign``
    (protocol 3). ``morsels``: [[morsel, attempt, offset, encoding, data], ...]."""

    job_id: str
    func_name: str
    func_pickle: bytes | None
    morsels: list

    _LIST: ClassVar[str] = "morsels"
    _ENTRY: ClassVar[tuple[tuple[str, tuple[type, ...]], ...]] = (
        ("morsel", (int,)), ("attempt", (int,)), ("offset", (int,)), ("encoding", (str,)),
        ("data", (bytes, bytearray, memoryview)))

    def expand(self) -> list[Assign]:
        """One ``Assign`` per morsel; the function travels with the first."""
        out = []
        func = self.func_pickle
        for morsel, attempt, offset, encoding, data in self.morsels:
            out.append(Assign(self.job_id, morsel, attempt, offset, self.func_name, func,
                              encoding, data))
            func = None
        return out


@message(13, "morsel-results")
class MorselResults(_Entries):
    """Worker -> coordinator: several finished morsels of one job, each exactly as one
    ``morsel-result`` (protocol 3). ``results``: [[morsel, attempt, items, encoding, data,
    elapsed_s], ...]."""

    job_id: str
    results: list

    _LIST: ClassVar[str] = "results"
    _ENTRY: ClassVar[tuple[tuple[str, tuple[type, ...]], ...]] = (
        ("morsel", (int,)), ("attempt", (int,)), ("items", (int,)), ("encoding", (str,)),
        ("data", (bytes, bytearray, memoryview)), ("elapsed_s", (int, float)))

    def expand(self) -> list[MorselResult]:
        return [MorselResult(self.job_id, morsel, attempt, items, encoding, data, elapsed)
                for morsel, attempt, items, encoding, data, elapsed in self.results]


#: The capability (in ``hello``) of a worker that runs pieces of morsels (``assign``'s
#: ``start`` and ``count``).
RANGES = "morsel-ranges"

#: The ``chunk_bytes`` a coordinator offers in its welcome: a result of more bytes than this
#: travels as ``result-chunk`` messages of this many bytes, so a worker's heartbeats never
#: wait behind a whole big result, and the coordinator appends each chunk to the result's file
#: as it comes instead of holding it whole.
CHUNK_BYTES = 4 << 20

#: Chunks of one result a worker sends ahead of their acknowledgement.
CHUNK_WINDOW = 4


@message(14, "result-chunk")
class ResultChunk(Message):
    """Worker -> coordinator, once welcomed with ``chunk_bytes``: bytes ``index *
    chunk_bytes`` on of a morsel's result bigger than ``chunk_bytes``, chunks in order from
    0. The last one (``final``) carries
    what ``morsel-result`` would (items, encoding, elapsed_s) and the whole result's ``size``
    and ``crc`` (CRC-32); the result counts, and its credit returns, only once it came whole
    and they match. At most CHUNK_WINDOW chunks are sent ahead of their ``result-chunk-ack``."""

    job_id: str
    morsel: int
    attempt: int
    index: int
    data: bytes
    final: bool = False
    items: int = 0
    encoding: str = ""
    elapsed_s: float = 0.0
    size: int = 0
    crc: int = 0


@message(15, "result-chunk-ack")
class ResultChunkAck(Message):
    """Coordinator -> worker: chunk ``index`` of a result is on its way to disk (the worker may
    send one more). ``accepted`` False: the coordinator does not take this result (the morsel
    is no longer this worker's, or a chunk was bad): the worker sends no more of it."""

    job_id: str
    morsel: int
    attempt: int
    index: int
    accepted: bool = True


def _check_entries(op: str, entries: list[Any],
                   spec: tuple[tuple[str, tuple[type, ...]], ...]) -> None:
    if not entries:
        raise ProtocolError(f"{op}: carries no entry")
    for i, entry in enumerate(entries):
        if not isinstance(entry, (list, tuple)) or len(entry) != len(spec):
            raise ProtocolError(f"{op}: entry {i} must be an array of {len(spec)} values "
                                f"({', '.join(name for name, _ in spec)})")
        for value, (name, types) in zip(entry, spec):
            if not isinstance(value, types) or value.__class__ is bool:
                raise ProtocolError(f"{op}: entry {i}: {name} has the wrong type "
                                    f"({type(value).__name__})")


def batch_morsels(msgs: list[Message]) -> list[Message]:
    """``msgs`` with each run of two or more ``assign`` (or ``morsel-result``) messages of one
    job replaced by one ``assign-many`` (``morsel-results``): the same content, one header, one
    msgpack body and one decode for the run. Order is kept."""
    out: list[Message] = []
    i, n = 0, len(msgs)
    while i < n:
        msg = msgs[i]
        kind = type(msg)
        if (kind is not Assign and kind is not MorselResult) or \
                (kind is Assign and msg.count):  # type: ignore[attr-defined]
            out.append(msg)
            i += 1
            continue
        job_id = msg.job_id  # type: ignore[attr-defined]
        j = i + 1
        while j < n and type(msgs[j]) is kind and msgs[j].job_id == job_id and \
                not (kind is Assign and msgs[j].count):  # type: ignore
            j += 1
        if j - i == 1:
            out.append(msg)
        elif kind is Assign:
            run: list[Assign] = msgs[i:j]  # type: ignore[assignment]
            func = next((a.func_pickle for a in run if a.func_pickle is not None), None)
            out.append(AssignMany(job_id, msg.func_name, func,  # type: ignore[attr-defined]
                                  [[a.morsel, a.attempt, a.offset, a.encoding, a.data]
                                   for a in run]))
        else:
            results: list[MorselResult] = msgs[i:j]  # type: ignore[assignment]
            out.append(MorselResults(job_id, [[r.morsel, r.attempt, r.items, r.encoding, r.data,
                                               r.elapsed_s] for r in results]))
        i = j
    return out


# -- clients ---------------------------------------------------------------------------------
@message(20, "submit-job")
class SubmitJob(Message):
    """Client -> coordinator. ``morsels``: [[encoding, items, data], ...] in input order;
    ``func_name``: a registered processor, or a label when ``func_pickle`` is given.
    ``job_id`` is the client's (an idempotency key: sabot.job_ids says what it may hold);
    resubmitting a known one with the same content is answered with that job's state, never a
    second job; with other content it is refused (``job_id_conflict``). ``digest``: the
    content's :func:`~sabot.cluster.protocol.payload.submit_digest` (optional: the coordinator
    computes it when it is empty)."""

    request_id: int
    job_id: str
    func_name: str
    func_pickle: bytes | None
    result_kind: str
    morsels: list
    priority: int = 0
    digest: str = ""


@message(21, "submit-ack")
class SubmitAck(Message):
    """The job is journaled (durable) and queued. ``existing``: the submit named a job that
    was there already (a resubmit), which is what this answers for."""

    request_id: int
    job_id: str
    status: str
    existing: bool = False


@message(22, "get-status")
class GetStatus(Message):
    request_id: int
    job_id: str


@message(23, "job-status")
class JobStatus(Message):
    """A job's state: ``job`` has job_id, status, progress, error, created_at, ... (no result)."""

    request_id: int
    job: dict


@message(24, "fetch-results")
class FetchResults(Message):
    """Client -> coordinator: result morsels from ``start`` on, in order; waits up to
    ``wait_ms`` for the next one when none is ready, or with ``until_done`` until the job is
    finished (one answer for a whole job instead of one per morsel)."""

    request_id: int
    job_id: str
    start: int
    max_bytes: int = 16 << 20
    wait_ms: int = 0
    until_done: bool = False
    #: A client that shares the spool: results in files come as ``spool`` references to them
    #: (read by the client), not as their bytes.
    files: bool = False


@message(25, "result-batch")
class ResultBatch(Message):
    """Consecutive result morsels ``start, start+1, ...`` as [[encoding, items, data], ...]."""

    request_id: int
    job_id: str
    status: str
    start: int
    morsels: list
    total_morsels: int
    result_kind: str
    error: str | None = None


@message(26, "cancel-job")
class CancelJob(Message):
    request_id: int
    job_id: str


@message(27, "get-stats")
class GetStats(Message):
    request_id: int


@message(28, "stats")
class Stats(Message):
    request_id: int
    stats: dict


@message(29, "error")
class ErrorReply(Message):
    """A request failed. ``code``: job_not_found, bad_request, unknown_processor,
    not_registered, internal, journal_unwritable, job_id_conflict."""

    request_id: int
    code: str
    message: str
    details: dict = field(default_factory=dict)


# -- streaming pipelines ------------------------------------------------------------------------
@message(40, "submit-pipeline")
class SubmitPipeline(Message):
    """Client -> coordinator: run a streaming pipeline on ``instances`` workers' tasks (0: one
    per alive worker). ``graph``: the pipeline (its sinks' graph, cloudpickled by the client;
    only task processes on the workers unpickle it). ``pipeline_id`` is the client's (an
    idempotency key: a resubmit is answered with the same pipeline)."""

    request_id: int
    pipeline_id: str
    name: str
    graph: bytes
    instances: int = 0
    key_groups: int = 128
    #: {state_dir, interval_ms, keep}: checkpoints (and restarts from them), or None.
    checkpoint: dict | None = None
    #: Restarts from the last checkpoint after a lost worker, at most this many times.
    max_restarts: int = 3


@message(41, "pipeline-ack")
class PipelineAck(Message):
    request_id: int
    pipeline_id: str
    instances: int


@message(42, "get-pipeline")
class GetPipeline(Message):
    """Client -> coordinator: a pipeline's state; once it finished, with its results."""

    request_id: int
    pipeline_id: str


@message(43, "pipeline-status")
class PipelineStatus(Message):
    """``pipeline``: id, name, state, instances, tasks ([{instance, worker, state}]), error.
    ``results``: [[sink, instance, Arrow IPC bytes], ...] once finished."""

    request_id: int
    pipeline: dict
    results: list = field(default_factory=list)


@message(44, "run-task")
class RunTask(Message):
    """Coordinator -> worker: start instance ``instance`` of ``instances`` of a pipeline."""

    pipeline_id: str
    name: str
    instance: int
    instances: int
    key_groups: int
    graph: bytes
    #: The pipeline's run: 0 first, one more at each restart (older runs' words are ignored).
    attempt: int = 0
    checkpoint: dict | None = None
    #: The committed checkpoint to restore (0: none).
    restore_epoch: int = 0
    #: How many instances wrote it (0: ``instances``; another number: its state is re-cut).
    restore_instances: int = 0


@message(45, "task-ready")
class TaskReady(Message):
    """Worker -> coordinator: the task listens for its exchange on ``endpoint``."""

    pipeline_id: str
    instance: int
    endpoint: str
    attempt: int = 0


@message(46, "task-peers")
class TaskPeers(Message):
    """Coordinator -> workers: every task of the pipeline is ready; ``endpoints[i]`` is
    instance i's exchange."""

    pipeline_id: str
    instance: int
    endpoints: list
    attempt: int = 0


@message(47, "task-done")
class TaskDone(Message):
    """Worker -> coordinator: the task ended: ``error`` None and its sinks' ``results``
    ({sink: Arrow IPC bytes}) and ``stats``, or why it failed."""

    pipeline_id: str
    instance: int
    error: str | None = None
    results: dict = field(default_factory=dict)
    stats: dict = field(default_factory=dict)
    attempt: int = 0
    #: The task's process ended without saying why (killed, out of memory): not its code's
    #: failure, so the pipeline restarts (with checkpoints) instead of failing.
    lost: bool = False


@message(48, "cancel-task")
class CancelTask(Message):
    """Coordinator -> worker: stop the pipeline's tasks on this worker."""

    pipeline_id: str
    reason: str
    #: Stop only the tasks of runs before this one (None: all of the pipeline's).
    before_attempt: int | None = None


@message(49, "task-control")
class TaskControl(Message):
    """Coordinator -> worker -> task: ``control`` is {"checkpoint": n} (take checkpoint n) or
    {"commit": n} (checkpoint n is committed)."""

    pipeline_id: str
    instance: int
    attempt: int
    control: dict


@message(50, "task-event")
class TaskEvent(Message):
    """Task -> worker -> coordinator: ``event`` is {"checkpointed": n, "bytes": ...,
    "duration_s": ...} or {"checkpoint_failed": n, "error": ...}."""

    pipeline_id: str
    instance: int
    attempt: int
    event: dict


__all__ = [name for name, obj in dict(globals()).items()
           if isinstance(obj, type) and issubclass(obj, Message)] + [
               "CHUNK_BYTES", "CHUNK_WINDOW", "RANGES", "REGISTRY", "message"]
