"""Type stubs for sabot._core, the compiled core (private: use sabot.* instead).

Every call that runs the scheduler releases the GIL. Errors arrive as sabot.errors classes:
CancelledError, SchedulerError (a task's exception, with its message), ArrowInputError,
NativeError; argument errors as ValueError.
"""

from __future__ import annotations

from typing import Any

# --- scheduler (bindings/scheduler_bindings.cpp) ---------------------------------------------

class CancellationToken:
    """Cancels a running native job: call cancel() from any thread."""

    def __init__(self) -> None: ...
    def cancel(self) -> None: ...
    def reset(self) -> None: ...
    @property
    def cancelled(self) -> bool: ...

def get_stats() -> dict[str, Any]:
    """threads, numa_nodes, numa_binding, pinned, topology, hwloc, hwloc_version, usable_cores,
    morsels_executed, morsels_stolen, tasks_executed, task_errors, parallel_for_calls,
    busy_seconds, arrow_version, workers (list of per-worker dicts: worker_id, tid, cpu,
    numa_node, morsels_executed, morsels_stolen, steals_local, steals_remote, tasks_executed,
    busy_seconds)."""

def num_threads() -> int: ...
def max_threads() -> int: ...
def usable_cores() -> int: ...
def set_threads(threads: int) -> None: ...
def worker_thread_ids() -> list[int]: ...
def victim_order(worker: int) -> list[int]: ...
def rows_per_morsel(num_rows: int, total_bytes: int, morsel_bytes: int = 65536) -> int: ...
def plan_morsels(num_rows: int, total_bytes: int, morsel_bytes: int = 65536) -> list[tuple[int, int]]: ...
def run_empty(num_morsels: int) -> float: ...
def run_spin(num_morsels: int, spin_ns: int, token: CancellationToken | None = None) -> float: ...
def run_failing(num_morsels: int, fail_at: int) -> None: ...
def run_count(num_morsels: int) -> list[tuple[int, int]]: ...
def scan_sum(data: Any, morsel_bytes: int = 65536) -> tuple[int, int]: ...

# --- columnar compute (bindings/compute_bindings.cpp) ----------------------------------------
# Arrow data crosses as "arrow_array_stream" PyCapsules (`data` is any object with
# __arrow_c_stream__; results come back as such a capsule). Expressions are Arrow's own
# serialization: the buffer of pyarrow.compute.Expression.__reduce__(). threads=0 uses the global
# pool; morsel_bytes is MORSEL_SIZE_KB * 1024. The public API is sabot.columnar.

def columnar_project(
    data: Any,
    names: list[str],
    exprs: list[bytes],
    where: bytes | None,
    threads: int,
    morsel_bytes: int,
) -> Any:
    """Evaluate `exprs` (optionally over the rows where `where` is true), in input order."""

def columnar_filter(data: Any, predicate: bytes, threads: int, morsel_bytes: int) -> Any:
    """The rows where `predicate` is true, in input order."""

def columnar_aggregate(
    data: Any,
    aggregates: list[tuple[str, str, bytes | None]],
    key_names: list[str],
    keys: list[bytes],
    where: bytes | None,
    threads: int,
    morsel_bytes: int,
) -> tuple[Any | None, str]:
    """(name, function, value) aggregates, grouped by `keys` when given. Returns (capsule, "")
    or (None, reason) when the native engine does not cover the request (then use pyarrow)."""

def columnar_is_fused(schema: Any, expr: bytes) -> bool:
    """Whether the expression, bound to `schema` (anything with __arrow_c_schema__), runs on the
    fused evaluator."""

def columnar_kernel_isa() -> str:
    """Which compiled copy of the fused kernels this CPU runs: "avx2" or "generic"."""
