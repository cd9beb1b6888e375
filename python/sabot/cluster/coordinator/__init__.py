"""The coordinator: job queue, morsel scheduling, failure handling and the journal, behind a
ZeroMQ endpoint (its HTTP API is wired on in :mod:`sabot.node.coordinator_node`).

- :mod:`.coordinator`: :class:`Coordinator`, a running coordinator (start, request, stop);
- :mod:`.core`: the core thread and its poll loop, which drives
- :mod:`.node_registry` (workers and their states), :mod:`.job_table` (jobs, their states and
  summaries), :mod:`.dispatcher` (the morsel queue, credits, retries, timeouts),
  :mod:`.result_pager` (results to readers) and :mod:`.outbox` (what a turn sends).
"""

from __future__ import annotations

from .coordinator import Coordinator
from .core import CoordinatorCore
from .node_registry import FORGET_AFTER_TIMEOUTS

__all__ = ["FORGET_AFTER_TIMEOUTS", "Coordinator", "CoordinatorCore"]
