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
from typing import Any

import psutil

from .controller import AdaptiveController, Reading

log = logging.getLogger("sabot.engine.sampler")


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
    ) -> None:
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
        self._thread = threading.Thread(target=self._loop, name="sabot-sampler", daemon=True)
        self._busy_prev: float | None = None

    def start(self) -> None:
        self._machine_busy()  # prime the deltas
        self._sabot_cpu()
        self._thread.start()

    def _machine_busy(self) -> float:
        """Busy CPU seconds of the whole machine since the previous call.

        From cumulative ``cpu_times`` with our own previous value: ``psutil.cpu_percent``
        keeps one shared "previous" per process, so any other caller (stats, /metrics) would
        shorten our window."""
        t = psutil.cpu_times()
        # idle and iowait are not busy; steal is time the VM did not run; guest time is
        # already counted in user time on Linux
        busy = sum(t) - t.idle - sum(getattr(t, f, 0.0) for f in (
            "iowait", "steal", "guest", "guest_nice"))
        prev, self._busy_prev = self._busy_prev, busy
        return max(0.0, busy - prev) if prev is not None else 0.0

    def stop(self) -> None:
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
            if prev is not None:
                delta += max(0.0, total - prev)
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
