"""A worker's life cycle: one state, and the moves it may make.

created -> connecting -> registered -> draining -> stopping -> stopped; a registered worker
whose session ends is connecting again; a refused one stops. The worker changes its state in
one method, which checks the move against this table.
"""

from __future__ import annotations

from enum import StrEnum

from ..states import InvalidTransition


class WorkerState(StrEnum):
    CREATED = "created"  #: not started
    CONNECTING = "connecting"  #: looking for the coordinator, or saying hello
    REGISTERED = "registered"  #: welcomed: takes morsels
    DRAINING = "draining"  #: stopping: no new morsels; running ones finish or are handed back
    STOPPING = "stopping"  #: closing its sockets, pool and threads
    STOPPED = "stopped"
    REFUSED = "refused"  #: refused for good by the coordinator (another cluster or version)

    @property
    def welcomed(self) -> bool:
        """The coordinator has welcomed this session (morsels may come)."""
        return self in (WorkerState.REGISTERED, WorkerState.DRAINING)

    @property
    def stopping(self) -> bool:
        """stop() was called."""
        return self in (WorkerState.DRAINING, WorkerState.STOPPING, WorkerState.STOPPED)


WORKER_TRANSITIONS: dict[WorkerState, frozenset[WorkerState]] = {
    WorkerState.CREATED: frozenset({WorkerState.CONNECTING, WorkerState.STOPPING}),
    WorkerState.CONNECTING: frozenset({WorkerState.REGISTERED, WorkerState.STOPPING,
                                       WorkerState.REFUSED}),
    WorkerState.REGISTERED: frozenset({WorkerState.CONNECTING, WorkerState.DRAINING,
                                       WorkerState.STOPPING, WorkerState.REFUSED}),
    # (a draining worker whose session ends has nobody left to hand its morsels to)
    WorkerState.DRAINING: frozenset({WorkerState.STOPPING}),
    WorkerState.STOPPING: frozenset({WorkerState.STOPPED}),
    WorkerState.STOPPED: frozenset(),
    WorkerState.REFUSED: frozenset({WorkerState.STOPPING}),
}


def check_worker_transition(old: WorkerState, new: WorkerState) -> None:
    """Raise :class:`~sabot.states.InvalidTransition` unless a worker may move so."""
    if new not in WORKER_TRANSITIONS[old]:
        raise InvalidTransition(f"a worker cannot move from {old.value} to {new.value}")


__all__ = ["WORKER_TRANSITIONS", "WorkerState", "check_worker_transition"]
