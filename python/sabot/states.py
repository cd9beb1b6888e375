"""The domain vocabulary of states: jobs and nodes.

Every part of Sabot (the local engine's job table, the coordinator, the HTTP API, the client)
speaks these names. They are ``StrEnum`` members, so they compare equal to, serialise as and
are stored as their plain string values ("pending", "alive", ...); code that parses a state
from the wire or a journal row uses ``JobState(text)`` and gets a clear error on a bad name.

The allowed moves are written once here; the place that changes a state (the coordinator's job
table, the local backend) calls :func:`check_job_transition` so that an impossible move is a bug
that shows, not a silent change.
"""

from __future__ import annotations

from enum import StrEnum


class JobState(StrEnum):
    """Where a job is. pending -> running -> completed | failed | cancelled."""

    PENDING = "pending"
    RUNNING = "running"
    COMPLETED = "completed"
    FAILED = "failed"
    CANCELLED = "cancelled"

    @property
    def finished(self) -> bool:
        """True for the three end states."""
        return self in FINISHED_JOB_STATES

    @property
    def active(self) -> bool:
        """True while the job can still make progress."""
        return not self.finished


#: The end states of a job, and the states in which it is still active.
FINISHED_JOB_STATES = frozenset({JobState.COMPLETED, JobState.FAILED, JobState.CANCELLED})
ACTIVE_JOB_STATES = frozenset({JobState.PENDING, JobState.RUNNING})

#: Every move a job may make (a finished job never moves again).
JOB_TRANSITIONS: dict[JobState, frozenset[JobState]] = {
    JobState.PENDING: frozenset({JobState.RUNNING, JobState.COMPLETED, JobState.FAILED,
                                 JobState.CANCELLED}),
    JobState.RUNNING: frozenset({JobState.COMPLETED, JobState.FAILED, JobState.CANCELLED}),
    JobState.COMPLETED: frozenset(),
    JobState.FAILED: frozenset(),
    JobState.CANCELLED: frozenset(),
}


class InvalidTransition(RuntimeError):
    """A state was asked to make a move its table does not allow (a bug in the caller)."""


def check_job_transition(old: JobState, new: JobState) -> None:
    """Raise :class:`InvalidTransition` unless a job may move from ``old`` to ``new``."""
    if new not in JOB_TRANSITIONS[old]:
        raise InvalidTransition(f"a job cannot move from {old.value} to {new.value}")


class NodeState(StrEnum):
    """A node as the coordinator (or the node itself) sees it.

    ``alive``: registered and answering; ``dead``: silent past SABOT_NODE_TIMEOUT_S or its
    connection dropped (its morsels are requeued; heard from again it is alive); ``left``: said
    goodbye; ``connecting``: a worker not yet registered; ``stopping``: a node shutting down.
    """

    CONNECTING = "connecting"
    ALIVE = "alive"
    DEAD = "dead"
    LEFT = "left"
    STOPPING = "stopping"


#: Every move a node may make, as the coordinator tracks its workers.
NODE_TRANSITIONS: dict[NodeState, frozenset[NodeState]] = {
    NodeState.CONNECTING: frozenset({NodeState.ALIVE, NodeState.STOPPING}),
    NodeState.ALIVE: frozenset({NodeState.DEAD, NodeState.LEFT, NodeState.STOPPING}),
    NodeState.DEAD: frozenset({NodeState.ALIVE, NodeState.LEFT}),
    NodeState.LEFT: frozenset({NodeState.ALIVE}),
    NodeState.STOPPING: frozenset(),
}


def check_node_transition(old: NodeState, new: NodeState) -> None:
    """Raise :class:`InvalidTransition` unless a node may move from ``old`` to ``new``."""
    if new not in NODE_TRANSITIONS[old]:
        raise InvalidTransition(f"a node cannot move from {old.value} to {new.value}")


class JournalState(StrEnum):
    """Whether the coordinator's journal takes writes. ``unwritable``: a write failed (a full
    disk, an I/O error); its changes wait in memory, new submits are refused and /health
    fails, until a retry writes them (``writable`` again)."""

    WRITABLE = "writable"
    UNWRITABLE = "unwritable"


JOURNAL_TRANSITIONS: dict[JournalState, frozenset[JournalState]] = {
    JournalState.WRITABLE: frozenset({JournalState.UNWRITABLE}),
    JournalState.UNWRITABLE: frozenset({JournalState.WRITABLE}),
}


def check_journal_transition(old: JournalState, new: JournalState) -> None:
    """Raise :class:`InvalidTransition` unless the journal may move from ``old`` to ``new``."""
    if new not in JOURNAL_TRANSITIONS[old]:
        raise InvalidTransition(f"the journal cannot move from {old.value} to {new.value}")


__all__ = [
    "ACTIVE_JOB_STATES", "JOURNAL_TRANSITIONS", "JournalState", "check_journal_transition", "FINISHED_JOB_STATES", "InvalidTransition", "JOB_TRANSITIONS",
    "JobState", "NODE_TRANSITIONS", "NodeState", "check_job_transition", "check_node_transition",
]


class PipelineState(StrEnum):
    """A streaming pipeline on the cluster, as the coordinator sees it.

    ``starting``: its tasks are placed and getting ready; ``running``: every task knows the
    others and runs; ``restarting``: a worker running a task was lost, and the pipeline starts
    again from its last committed checkpoint (waiting for a worker when none is alive);
    ``stopped``: stopped by a client with a savepoint, its tasks ended (``resume`` starts it
    again from the savepoint, on as many instances or on another number);
    ``finished``: every task ended (its results are kept); ``failed``: a task failed, or a
    worker was lost without checkpoints (or too often); ``cancelled``: stopped by a client
    without a savepoint.
    """

    STARTING = "starting"
    RUNNING = "running"
    RESTARTING = "restarting"
    STOPPED = "stopped"
    FINISHED = "finished"
    FAILED = "failed"
    CANCELLED = "cancelled"

    @property
    def terminal(self) -> bool:
        return self in (PipelineState.FINISHED, PipelineState.FAILED, PipelineState.CANCELLED)


PIPELINE_TRANSITIONS: dict[PipelineState, frozenset[PipelineState]] = {
    PipelineState.STARTING: frozenset({PipelineState.RUNNING, PipelineState.RESTARTING,
                                       PipelineState.FAILED, PipelineState.CANCELLED}),
    PipelineState.RUNNING: frozenset({PipelineState.FINISHED, PipelineState.RESTARTING,
                                      PipelineState.STOPPED, PipelineState.FAILED,
                                      PipelineState.CANCELLED}),
    PipelineState.STOPPED: frozenset({PipelineState.RESTARTING, PipelineState.CANCELLED}),
    PipelineState.RESTARTING: frozenset({PipelineState.RUNNING, PipelineState.FAILED,
                                         PipelineState.CANCELLED}),
    PipelineState.FINISHED: frozenset(),
    PipelineState.FAILED: frozenset(),
    PipelineState.CANCELLED: frozenset(),
}


def check_pipeline_transition(old: PipelineState, new: PipelineState) -> None:
    """Raise :class:`InvalidTransition` unless a pipeline may move from ``old`` to ``new``."""
    if new not in PIPELINE_TRANSITIONS[old]:
        raise InvalidTransition(f"a pipeline cannot move from {old.value} to {new.value}")
