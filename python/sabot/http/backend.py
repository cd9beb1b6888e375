"""The contract between the HTTP API and the node it serves.

The HTTP layer knows nothing of engines or clusters: it calls a :class:`NodeBackend`. The
single-node launcher, the coordinator and the worker each provide one.
"""

from __future__ import annotations

from typing import Any, Protocol, runtime_checkable

from ..states import JobState

#: Job states (the domain vocabulary of :mod:`sabot.states`), in the order a job moves
#: through them, and the end states among them.
JOB_STATES: tuple[JobState, ...] = tuple(JobState)
FINISHED_STATES: tuple[JobState, ...] = tuple(state for state in JobState if state.finished)


@runtime_checkable
class NodeBackend(Protocol):
    """What a node offers its HTTP API.

    Job dicts have the keys ``job_id, status, progress, result, error, created_at,
    finished_at`` (plus ``priority``, ``processor``, ``items``, and for paged results
    ``result_offset``, ``result_total``, ``next_offset``). ``progress`` is
    ``{"done": int, "total": int, "fraction": float}``; times are UNIX seconds (float) or None.
    """

    role: str  #: "single-node", "coordinator" or "worker"
    node_id: str

    def is_ready(self) -> bool:
        """True once the node can take work (GET /ready answers 200)."""

    def health(self) -> dict[str, Any]:
        """Liveness details for GET /health. A ``problem`` (a sentence) means the node cannot
        do its job: /health then answers 503, so a liveness probe restarts it."""

    def cluster_info(self) -> dict[str, Any] | None:
        """What a worker needs to join (GET /cluster); None where this node is no coordinator."""

    def nodes(self) -> list[dict[str, Any]]:
        """Known nodes (GET /nodes). Each dict has at least ``node_id`` and ``status`` (alive,
        suspect, dead, stopping; ``state`` is accepted as its name too), and where known
        ``role``, ``address``, ``utilization_percent``, ``queue_depth``."""

    def stats(self) -> dict[str, Any]:
        """GET /stats: at least ``nodes``, ``jobs`` and ``system_resources``."""

    async def submit_job(
        self, data: Any, processor: str, *, priority: int = 0, job_id: str | None = None
    ) -> dict[str, Any]:
        """Accept a job running the named processor; returns ``{"job_id", "status"}``, plus
        ``"existing": True`` when ``job_id`` (the client's, checked by sabot.job_ids) names a
        job the node has with the same processor, data and priority: that job, no new one.
        The same id with other content raises JobIdConflictError; a node that cannot store
        the job raises JournalUnwritableError.

        ``data`` is a list of JSON values, or a ``pyarrow.Array`` when the client named an
        input file on the node (``{"input": {"path", "format", "column"}}``, read by the HTTP
        layer from SABOT_DATA_DIR).

        Raises UnknownProcessorError for an unknown name; the job is durable (where the node
        journals) before this returns."""

    async def get_job(
        self, job_id: str, *, offset: int = 0, limit: int | None = None
    ) -> dict[str, Any]:
        """The job dict, with ``result[offset:offset+limit]``; raises JobNotFoundError."""

    async def cancel_job(self, job_id: str) -> dict[str, Any]:
        """Cancel a pending or running job; returns the job dict. Raises JobNotFoundError."""

    def list_jobs(self, limit: int = 100) -> list[dict[str, Any]]:
        """Recent jobs, newest first, without their results."""


class LoadReporter(Protocol):
    """Optional: a backend with ``load()`` feeds the live gauges (``sabot_queue_depth``,
    ``sabot_worker_utilization_percent``, ``sabot_jobs_by_state``, ``sabot_nodes``); register it
    with ``Metrics.set_load_source(backend.load)``. Keys (all optional): ``queue_depth`` (int),
    ``utilization_percent`` (float), ``jobs`` and ``nodes`` (dicts state -> count)."""

    def load(self) -> dict[str, Any]: ...


class PipelineLister(Protocol):
    """Optional: a coordinator's backend lists the streaming pipelines on the cluster
    (GET /pipelines, GET /pipeline/{id}): dicts with ``pipeline_id, name, state, instances,
    key_groups, error, attempt, restarts, checkpoints, tasks``."""

    def pipelines(self) -> list[dict[str, Any]]: ...

    def pipeline_action(self, pipeline_id: str, action: str, **kw: Any) -> dict[str, Any]:
        """``stop`` (``savepoint=True``: once a checkpoint taken now is committed; False: at
        once), ``resume`` (``instances``: another number re-cuts the state) or ``cancel``.
        KeyError: no such pipeline; ValueError: its state refuses the request."""


class HttpStartedListener(Protocol):
    """Optional: ``HttpApi.start`` calls ``backend.on_http_started(host, port)`` with the
    bound address (useful with port 0), when the backend has that method."""

    def on_http_started(self, host: str, port: int) -> None: ...
