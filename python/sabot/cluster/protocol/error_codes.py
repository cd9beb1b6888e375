"""The error codes of ``Refused`` and ``ErrorReply`` and the exceptions they stand for.

One table: the coordinator names a code, every peer (worker, client, in-process handle) turns a
code back into the same exception with :func:`exception_for` (:func:`reply_or_raise` for an
answer, :func:`refusal_error` for a refused hello). A code this table does not know (a newer
peer) becomes a :class:`~sabot.errors.CoordinatorUnavailableError` carrying the text.
"""

from __future__ import annotations

from enum import StrEnum
from typing import Any

from ...errors import (
    ClusterMismatchError,
    CoordinatorUnavailableError,
    JobExpiredError,
    JobIdConflictError,
    JobNotFoundError,
    JournalUnwritableError,
    ProtocolError,
    UnknownProcessorError,
    VersionMismatchError,
)
from .messages import ErrorReply, Message


class ErrorCode(StrEnum):
    """Why a peer was refused (``Refused``) or a request failed (``ErrorReply``)."""

    # Refused: the session cannot go on as it is.
    UNKNOWN_SESSION = "unknown_session"  #: say hello again (the coordinator restarted)
    VERSION_MISMATCH = "version_mismatch"
    CLUSTER_MISMATCH = "cluster_mismatch"
    BAD_HELLO = "bad_hello"
    NAME_TAKEN = "name_taken"  #: another live worker has this node name (SABOT_NODE_NAME)
    # ErrorReply: one request failed.
    JOB_NOT_FOUND = "job_not_found"
    #: The job finished and its results were deleted by the retention (HTTP 410).
    JOB_EXPIRED = "job_expired"
    BAD_REQUEST = "bad_request"
    UNKNOWN_PROCESSOR = "unknown_processor"
    NOT_REGISTERED = "not_registered"
    INTERNAL = "internal"
    #: The journal cannot be written (a full disk): the submit was not accepted (HTTP 507).
    JOURNAL_UNWRITABLE = "journal_unwritable"
    #: The submit's job id is taken by a job with other content (HTTP 409).
    JOB_ID_CONFLICT = "job_id_conflict"
    PIPELINE_NOT_FOUND = "pipeline_not_found"
    #: A pipeline was submitted while no worker is alive to run its tasks.
    NO_WORKERS = "no_workers"


#: Refusals after which a peer must stop instead of saying hello again.
FATAL_REFUSALS = frozenset({ErrorCode.VERSION_MISMATCH, ErrorCode.CLUSTER_MISMATCH,
                            ErrorCode.BAD_HELLO, ErrorCode.NAME_TAKEN})


def exception_for(code: str, message: str, details: dict[str, Any] | None = None
                  ) -> Exception:
    """The exception a caller sees for an error ``code`` with the peer's ``message``."""
    details = details or {}
    if code == ErrorCode.VERSION_MISMATCH:
        return VersionMismatchError(message)
    if code in (ErrorCode.CLUSTER_MISMATCH, ErrorCode.NAME_TAKEN):
        return ClusterMismatchError(message)
    if code == ErrorCode.BAD_HELLO:
        return ProtocolError(message)
    if code == ErrorCode.JOB_EXPIRED:
        when = details.get("expired_at")
        return JobExpiredError(message, job_id=details.get("job_id"),
                               expired_at=float(when) if isinstance(when, (int, float)) else None)
    if code in (ErrorCode.JOB_NOT_FOUND, ErrorCode.PIPELINE_NOT_FOUND):
        return JobNotFoundError(message)
    if code == ErrorCode.UNKNOWN_PROCESSOR:
        return UnknownProcessorError(str(details.get("name", "?")),
                                     [str(k) for k in details.get("known", [])])
    if code == ErrorCode.BAD_REQUEST:
        return ValueError(message)
    if code == ErrorCode.JOURNAL_UNWRITABLE:
        free = details.get("free_bytes")
        return JournalUnwritableError(message, data_dir=details.get("data_dir"),
                                      free_bytes=free if isinstance(free, int) else None)
    if code == ErrorCode.JOB_ID_CONFLICT:
        return JobIdConflictError(str(details.get("job_id", "?")), message)
    if code == ErrorCode.UNKNOWN_SESSION:
        return CoordinatorUnavailableError(f"the coordinator does not know this session: "
                                           f"{message}")
    return CoordinatorUnavailableError(f"the coordinator failed the request: {message}")


def refusal_error(code: str, message: str) -> Exception:
    """The exception for a ``Refused`` answer to a hello: a fatal refusal's own exception;
    otherwise the coordinator is not available to this session (yet)."""
    if code in FATAL_REFUSALS:
        return exception_for(code, message)
    return CoordinatorUnavailableError(f"the coordinator refused: {message}")


def reply_or_raise(reply: Message) -> Message:
    """``reply``, unless it is an ``ErrorReply``: then the exception its code stands for."""
    if isinstance(reply, ErrorReply):
        raise exception_for(reply.code, reply.message, reply.details)
    return reply


__all__ = ["ErrorCode", "FATAL_REFUSALS", "exception_for", "refusal_error", "reply_or_raise"]
