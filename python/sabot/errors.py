"""Sabot's exception hierarchy.

Every class derives from :class:`SabotError` and also from the builtin a caller would
naturally catch (``ConfigError`` is a ``ValueError``, ``JobTimeoutError`` a ``TimeoutError``),
so code that does not know Sabot still handles its errors correctly. Messages say what was
wrong and what is accepted.
"""

from __future__ import annotations

import traceback as _traceback
from typing import Any


class SabotError(Exception):
    """Base class of every error Sabot raises."""


class ConfigError(ValueError, SabotError):
    """A configuration value (environment variable, argument or flag) is invalid."""

    def __init__(self, variable: str, value: Any, accepted: str) -> None:
        self.variable = variable
        self.value = value
        self.accepted = accepted
        super().__init__(f"{variable}={value!r} is invalid: expected {accepted}")


class NativeError(RuntimeError, SabotError):
    """The native core failed (a C++ exception or an Arrow status that is not an input error)."""


class ArrowInputError(ValueError, SabotError):
    """Arrow rejected the input: wrong types, unknown column, invalid expression."""


class SchedulerError(RuntimeError, SabotError):
    """A task run by the native scheduler raised; carries the task's message."""


class CancelledError(SabotError):
    """A running job was cancelled before it finished.

    Deliberately not an ``asyncio.CancelledError``: cancelling a Sabot job must not cancel the
    asyncio task that awaited it.
    """


class PipelineFailedError(RuntimeError, SabotError):
    """A streaming pipeline on the cluster failed: one of its tasks raised, or a worker that
    ran one was lost (the message says which)."""


class ProcessingError(RuntimeError, SabotError):
    """A user function failed while processing data.

    ``index`` is the position of the failing item in the input (or None when only the morsel
    is known), ``morsel`` the morsel number, ``original`` the exception the function raised and
    ``remote_traceback`` its formatted traceback (also for failures in other processes/nodes).
    """

    def __init__(
        self,
        message: str,
        *,
        index: int | None = None,
        morsel: int | None = None,
        original: BaseException | None = None,
        remote_traceback: str | None = None,
    ) -> None:
        self.index = index
        self.morsel = morsel
        self.original = original
        if remote_traceback is None and original is not None and original.__traceback__:
            remote_traceback = "".join(
                _traceback.format_exception(type(original), original, original.__traceback__)
            )
        self.remote_traceback = remote_traceback
        super().__init__(message)

    def __str__(self) -> str:
        base = super().__str__()
        if self.remote_traceback:
            return f"{base}\n\nOriginal traceback:\n{self.remote_traceback}"
        return base


class WorkerLostError(ProcessingError):
    """A worker process or node died while running a morsel (os._exit, signal, crash)."""


class UnknownProcessorError(KeyError, SabotError):
    """A named processor is not registered."""

    def __init__(self, name: str, known: list[str]) -> None:
        self.name = name
        self.known = sorted(known)
        super().__init__(name)

    def __str__(self) -> str:
        return f"unknown processor {self.name!r}; registered processors: {', '.join(self.known)}"


class ProtocolError(ValueError, SabotError):
    """A message on the wire is malformed, truncated, unknown or replayed."""


class VersionMismatchError(ProtocolError):
    """The peer speaks another protocol version."""


class ClusterMismatchError(ProtocolError):
    """The peer belongs to another cluster (CLUSTER_NAME differs)."""


class AuthenticationError(PermissionError, SabotError):
    """A peer or HTTP client failed authentication (cluster key or bearer token)."""


class CoordinatorUnavailableError(ConnectionError, SabotError):
    """The coordinator cannot be reached at the configured address."""


class RequestRefusedError(ValueError, SabotError):
    """A node's HTTP API refused a request (4xx/5xx); the message is the node's, ``status``
    the HTTP status and ``body`` the JSON error object."""

    def __init__(self, status: int, message: str, body: dict[str, Any] | None = None) -> None:
        self.status = status
        self.body = body or {}
        super().__init__(message)


class JobNotFoundError(LookupError, SabotError):
    """No job with this id exists (or it expired after SABOT_RESULT_TTL_S)."""


class JobExpiredError(JobNotFoundError):
    """The job existed, but it finished and its results were deleted by the retention
    (SABOT_RESULT_TTL_S or SABOT_RESULT_RETENTION_MB; the message says which). HTTP 410."""

    def __init__(self, message: str, *, job_id: str | None = None,
                 expired_at: float | None = None) -> None:
        self.job_id = job_id
        self.expired_at = expired_at
        super().__init__(message)


class JobFailedError(RuntimeError, SabotError):
    """A distributed job failed; ``error`` holds the job's error text."""

    def __init__(self, job_id: str, error: str) -> None:
        self.job_id = job_id
        self.error = error
        super().__init__(f"job {job_id} failed: {error}")


class JobTimeoutError(TimeoutError, SabotError):
    """Waiting for a job's result took longer than the given timeout."""


class JobIdConflictError(ValueError, SabotError):
    """A submit named a job id (an idempotency key) that a job with other content (function,
    data or options) already has: a resubmit must send the same job; a new job needs a new id."""

    def __init__(self, job_id: str, message: str | None = None) -> None:
        self.job_id = job_id
        super().__init__(message or (
            f"job id {job_id!r} is taken by a job with other content (function, data or "
            "options): resubmitting it must send the same job; give a new job a new id"))


class JournalUnwritableError(OSError, SabotError):
    """The coordinator cannot write its journal (a full disk): the submit was not accepted.
    ``data_dir`` and ``free_bytes`` say where and how much room is left; it accepts submits
    again on its own once it can write."""

    def __init__(self, message: str, *, data_dir: str | None = None,
                 free_bytes: int | None = None) -> None:
        self.data_dir = data_dir
        self.free_bytes = free_bytes
        super().__init__(message)

    def __str__(self) -> str:
        return str(self.args[0]) if self.args else ""


class JournalError(RuntimeError, SabotError):
    """The coordinator's journal is damaged or missing where one existed; the message names the
    file and what to do."""


class PerformanceWarning(UserWarning):
    """Sabot runs something slower than it could, and says why and how to fix it (for
    example a per-item function that cannot be pickled runs on one core)."""


class CheckpointError(RuntimeError, SabotError):
    """A streaming checkpoint or savepoint cannot be used: damaged or missing files, or written
    by a pipeline of another shape; the message names the path and what to do."""


class NotYetSupportedError(NotImplementedError, SabotError):
    """A documented part of the API that a later release provides (the message says which)."""


class BadRecordError(ValueError, SabotError):
    """A streaming source read a record it cannot use (does not parse, wrong type, missing
    timestamp); ``record`` is the record as read and ``reason`` what was wrong with it."""

    def __init__(self, source: str, record: Any, reason: str) -> None:
        self.source = source
        self.record = record
        self.reason = reason
        super().__init__(f"bad record from {source}: {reason}: {record!r} (pass "
                         "bad_records='dead_letter' to route such records to .dead_letters())")


__all__ = [
    "CheckpointError",
    "JobIdConflictError",
    "JournalError",
    "JournalUnwritableError",
    "PerformanceWarning",
    "SabotError",
    "NotYetSupportedError",
    "BadRecordError",
    "ConfigError",
    "NativeError",
    "ArrowInputError",
    "SchedulerError",
    "CancelledError",
    "ProcessingError",
    "PipelineFailedError",
    "WorkerLostError",
    "UnknownProcessorError",
    "ProtocolError",
    "VersionMismatchError",
    "ClusterMismatchError",
    "AuthenticationError",
    "CoordinatorUnavailableError",
    "JobExpiredError",
    "JobNotFoundError",
    "RequestRefusedError",
    "JobFailedError",
    "JobTimeoutError",
]
