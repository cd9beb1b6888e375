"""Background utilization sampling for the controller (psutil, never on the event loop).

A daemon thread reads, every ``interval`` seconds, the machine's CPU use (``cpu_percent`` with
``interval=None``: the delta since the previous read, so it never sleeps), the CPU time of this
process and of the pool's children, and the pool's busy share; it feeds the reading to the
controller and applies the pool size the controller returns.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import psutil

from ..system import cgroup_cpu_limit
from .controller import AdaptiveController, Reading

log = logging.getLogger("sabot.engine.sampler")


def _cgroup_usage_s() -> float | None:
    """CPU seconds used by this container (cgroup v2 cpu.stat, or v1 cpuacct.usage)."""
    try:
        for line in Path("/sys/fs/cgroup/cpu.stat").read_text().splitlines():
            if line.startswith("usage_usec "):
                return int(line.split()[1]) / 1e6
    except (OSError, ValueError):
        pass
    for path in ("/sys/fs/cgroup/cpuacct/cpuacct.usage", "/sys/fs/cgroup/cpu,cpuacct/cpuacct.usage"):
        try:
            return int(Path(path).read_text()) / 1e9
        except (OSError, ValueError):
            continue
    return None


def _busy(t: Any) -> float:
    # idle and iowait are not busy; steal is time the VM did not run; guest time is already
    # counted in user time on Linux
    return sum(t) - t.idle - sum(getattr(t, f, 0.0) for f in (
        "iowait", "steal", "guest", "guest_nice"))


def _cpus_busy_s(cpus: list[int] | None) -> float:
    if cpus is None:
        return _busy(psutil.cpu_times())
    per_cpu = psutil.cpu_times(percpu=True)
    return sum(_busy(per_cpu[i]) for i in cpus if i < len(per_cpu))


def runnable_threads() -> int | None:
    """Threads runnable on this machine right now (``procs_running`` of ``/proc/stat``), the
    caller's own included; None where the system does not say."""
    try:
        with open("/proc/stat", "rb") as f:
            for line in f:
                if line.startswith(b"procs_running "):
                    return int(line.split()[1])
    except (OSError, ValueError):
        pass
    return None


class UtilizationSampler:
    def __init__(
        self,
        controller: AdaptiveController,
        *,
        pids: Callable[[], list[int]],
        pool_busy: Callable[[], float | None],
        on_resize: Callable[[int], None],
        on_reading: Callable[[Reading], None] | None = None,
        interval: float = 0.5,
        busy_workers: Callable[[], int] | None = None,
    ) -> None:
        self._pool_busy_now = busy_workers
        self.controller = controller
        self._pids = pids
        self._pool_busy = pool_busy
        self._on_resize = on_resize
        self._on_reading = on_reading
        self.interval = interval
        self._stop = threading.Event()
        self._procs: dict[int, Any] = {}
        self._cpu_prev: dict[int, float] = {}
        self._t_prev = time.monotonic()
        self._primed = False
        self._thread = threading.Thread(target=self._loop, name="sabot-sampler", daemon=True)
        self._busy_prev: float | None = None
        self._use_cgroup = cgroup_cpu_limit() is not None and _cgroup_usage_s() is not None
        try:
            cpus = sorted(os.sched_getaffinity(0))
        except (AttributeError, OSError):
            cpus = []
        self._cpus = cpus if 0 < len(cpus) < (psutil.cpu_count() or 1) else None

    def instant_others(self) -> float | None:
        """Cores other processes want now: runnable threads, less this caller and the pool's
        busy workers; the least of three reads (a read is ~20 us; one may catch a spike).
        Not meaningful inside a CPU-quota container (the host's threads count there), where it
        says nothing."""
        if self._use_cgroup:
            return None
        busy = self._pool_busy_now() if self._pool_busy_now is not None else 0
        least: int | None = None
        for _ in range(3):  # stop at the first read that shows nobody else
            now = runnable_threads()
            if now is None:
                break
            least = now if least is None else min(least, now)
            if least - 1 - busy <= 0:
                break
        return None if least is None else float(max(0, least - 1 - busy))

    def start(self) -> None:
        self.controller.instant_others = self.instant_others
        self._machine_busy()  # prime the deltas
        self._sabot_cpu()
        self._thread.start()

    def _machine_busy(self) -> float:
        """Busy CPU seconds, since the previous call, of the CPUs this process may use.

        In a container with a CPU quota that is the container's own usage (cgroup
        ``cpu.stat``): the host's other tenants are not ours to make room for. With a CPU
        affinity mask, the busy time of those CPUs only. Otherwise the whole machine. Always
        from cumulative counters with our own previous value (``psutil.cpu_percent`` keeps one
        shared "previous" per process, so any other caller would shorten our window)."""
        busy = _cgroup_usage_s() if self._use_cgroup else None
        if busy is None:
            busy = _cpus_busy_s(self._cpus)
        prev, self._busy_prev = self._busy_prev, busy
        return max(0.0, busy - prev) if prev is not None else 0.0

    def stop(self) -> None:
        if self.controller.instant_others == self.instant_others:
            self.controller.instant_others = None
        self._stop.set()
        if self._thread.is_alive() and self._thread is not threading.current_thread():
            self._thread.join(timeout=5)

    def _sabot_cpu(self) -> float:
        """CPU seconds used by this process and the pool's children since the previous call."""
        wanted = {os.getpid(), *self._pids()}
        for pid in list(self._procs):
            if pid not in wanted:
                self._procs.pop(pid, None)
                self._cpu_prev.pop(pid, None)
        delta = 0.0
        for pid in wanted:
            proc = self._procs.get(pid)
            try:
                if proc is None:
                    proc = self._procs[pid] = psutil.Process(pid)
                t = proc.cpu_times()
                total = t.user + t.system
            except (psutil.NoSuchProcess, psutil.AccessDenied, psutil.ZombieProcess):
                self._procs.pop(pid, None)
                self._cpu_prev.pop(pid, None)
                continue
            prev = self._cpu_prev.get(pid)
            self._cpu_prev[pid] = total
            if prev is None and self._primed:
                # The pool lists only children it started itself, so a pid first listed after
                # the priming read was started within this window: all its CPU time is in the
                # window. Counting it as 0 would book it to "other processes" and shrink the
                # pool right after it grew.
                prev = 0.0
            if prev is not None:
                delta += max(0.0, total - prev)
        self._primed = True
        return delta

    def sample(self) -> Reading:
        now = time.monotonic()
        dt = max(1e-3, now - self._t_prev)
        self._t_prev = now
        machine = self._machine_busy() / dt
        sabot = self._sabot_cpu() / dt
        return Reading(machine_busy_cores=machine, sabot_busy_cores=min(sabot, machine + 1e-9)
                       if machine > 0 else sabot, pool_busy=self._pool_busy())

    def _loop(self) -> None:
        while not self._stop.wait(self.interval):
            try:
                reading = self.sample()
                if self._on_reading is not None:
                    self._on_reading(reading)
                new = self.controller.observe(reading)
                if new is not None:
                    self._on_resize(new)
            except Exception:  # the sampler must never take the engine down
                log.debug("utilization sample failed", exc_info=True)
