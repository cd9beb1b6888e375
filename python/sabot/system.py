"""What this machine offers the process: usable cores (affinity and cgroup quota), memory, load."""

from __future__ import annotations

import math
import os
from pathlib import Path


def cgroup_cpu_limit() -> float | None:
    """CPU quota in cores from cgroup v2 (cpu.max) or v1 (cfs_quota_us/cfs_period_us), if set."""
    try:
        text = Path("/sys/fs/cgroup/cpu.max").read_text().split()
        if text and text[0] != "max":
            return int(text[0]) / int(text[1])
    except (OSError, ValueError, IndexError):
        pass
    try:
        quota = int(Path("/sys/fs/cgroup/cpu/cpu.cfs_quota_us").read_text())
        period = int(Path("/sys/fs/cgroup/cpu/cpu.cfs_period_us").read_text())
        if quota > 0 and period > 0:
            return quota / period
    except (OSError, ValueError):
        pass
    return None


def usable_cores() -> int:
    """Cores this process may really use: its CPU affinity, capped by the cgroup CPU quota."""
    try:
        n = len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        n = os.cpu_count() or 1
    quota = cgroup_cpu_limit()
    if quota is not None:
        n = min(n, max(1, math.ceil(quota)))
    return max(1, n)


def system_resources() -> dict:
    """A snapshot of the machine: cpu counts, memory, load. Never blocks (no CPU sampling)."""
    import psutil

    vm = psutil.virtual_memory()
    try:
        load = list(os.getloadavg())
    except OSError:
        load = [0.0, 0.0, 0.0]
    return {
        "cpu_count": os.cpu_count() or 1,
        "usable_cores": usable_cores(),
        "cpu_percent": psutil.cpu_percent(interval=None),
        "memory_total_bytes": vm.total,
        "memory_available_bytes": vm.available,
        "memory_percent": vm.percent,
        "load_average": load,
    }
