"""The adaptive ("DBOS") controller: which executor runs a call, and how many workers.

Two decisions:

* **plan** (once per call, from a timed sample of the first items): run inline when
  parallelism cannot pay off, else on the process pool. The cost model compares the inline time
  ``n * cost`` with the pool's ``startup + n * max(cost / workers, ship)`` where ``ship`` is the
  parent's own per-item work (pickling items out and results back, measured on the sample) —
  the parent is the pool's serial part, which is why cheap functions never win in processes.
* **observe** (every sampling tick while work runs): resize the pool so that Sabot plus
  everything else on the machine stays near ``TARGET_UTILIZATION`` of the usable cores. The
  wanted size is ``cores * target - cpu used by other processes``; the pool moves one worker at
  a time, only after the wanted size has stayed beyond a dead band for ``patience`` consecutive
  readings, and not again until ``cooldown`` readings later (hysteresis: no flapping).

Every decision is logged at DEBUG and kept for ``get_stats()["controller"]``.
"""

from __future__ import annotations

import collections
import logging
import math
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

log = logging.getLogger("sabot.engine.controller")

INLINE = "inline"
PROCESSES = "processes"
THREADS = "threads"
NATIVE = "native"
ASYNC = "async"

# Parent-side overheads of the process pool that the pickling sample does not see (pipe
# writes, dispatcher thread switches, result assembly), as a multiple of the measured pickling
# cost, plus a fixed cost per task. Calibrated on a 2-core machine with bench/ quick runs.
SHIP_OVERHEAD_FACTOR = 2.5
TASK_OVERHEAD_S = 150e-6
#: Parallel must beat inline by this factor to be chosen (estimates are rough; inline is safe).
MARGIN = 1.25
#: Below this estimated inline time a call always runs inline.
MIN_PARALLEL_S = 0.03
#: Estimated cost of starting a cold pool (until its first child answers); replaced by the
#: measured value once a pool has started.
DEFAULT_STARTUP_S = 0.15
#: Learning the pool's real speed: weight of a new measurement, bounds of one measurement's
#: ratio, and how much of the excess over 1 is kept each time inline is chosen because of it.
SLOWDOWN_WEIGHT = 0.5
SLOWDOWN_MIN = 0.5
SLOWDOWN_MAX = 4.0
SLOWDOWN_DECAY = 0.7
#: CPU that other processes always use on a live machine (kernel threads, agents, an idle Ray
#: or Dask cluster's heartbeats, this process's own sampler) is not load to make room for:
#: the first quarter core (or 5% of the cores, whichever is more) of "other" use is ignored.
#: Without it, 0.15 cores of background noise on a 2-core machine turns 1.6 cores of room
#: into one worker, and every call after the first runs serially.
NOISE_FLOOR_CORES = 0.25
NOISE_FLOOR_SHARE = 0.05


@dataclass
class Plan:
    """The controller's decision for one call."""

    executor: str
    workers: int
    reason: str
    per_item_cost_s: float = 0.0
    ship_cost_s: float = 0.0
    items: int = 0
    items_per_task: int = 0
    #: True when a warm pool would have won: start it now, for the calls that follow.
    warm_pool: bool = False
    #: The cost model's time for the pool's work (without start-up or the learned slowdown);
    #: 0 when the plan is not a warm-pool run whose time teaches the controller anything.
    model_s: float = 0.0


@dataclass
class Reading:
    """One utilization sample: the machine's busy cores, Sabot's own, the pool's busy share."""

    machine_busy_cores: float
    sabot_busy_cores: float
    pool_busy: float | None = None
    at: float = field(default_factory=time.time)


class AdaptiveController:
    """Plans calls and sizes the worker pool. Thread-safe; fed by a sampler or by tests."""

    def __init__(
        self,
        *,
        usable_cores: int,
        max_workers: int,
        target_utilization: float,
        patience: int = 2,
        cooldown: int = 2,
        band: float = 0.75,
        force: str | None = None,
    ) -> None:
        if usable_cores < 1 or max_workers < 1:
            raise ValueError("usable_cores and max_workers must be >= 1")
        if not 0 < target_utilization <= 1:
            raise ValueError("target_utilization must be in (0, 1]")
        self.cores = usable_cores
        self.max_workers = max_workers
        self.target = target_utilization
        self.patience = patience
        self.cooldown = cooldown
        self.band = band
        self.force = force
        self.noise_floor = max(NOISE_FLOOR_CORES, NOISE_FLOOR_SHARE * usable_cores)
        self._lock = threading.Lock()
        self._workers = self.initial_workers()
        self._streak_dir = 0
        self._streak = 0
        self._since_change = cooldown
        self.startup_s = DEFAULT_STARTUP_S
        self._recent_others: collections.deque[float] = collections.deque(maxlen=3)
        #: Measured pool time / modelled pool time (EWMA of warm runs): how much less than
        #: ``workers`` cores the pool really gets (a VM's shared cores, memory bandwidth,
        #: neighbours). 1.0 until measured; eases back to 1 while inline is chosen instead,
        #: so one bad run does not keep the pool unused for good.
        self.slowdown = 1.0
        #: Cores other processes want at this instant (runnable threads), or None: set by the
        #: sampler (``/proc/stat``), by tests, or left unset where the system has no such count.
        self.instant_others: Callable[[], float | None] | None = None
        self._idle = True
        self.last_plan: Plan | None = None
        self.last_reading: Reading | None = None
        self.resizes: list[dict[str, Any]] = []

    # -- sizing ----------------------------------------------------------------------------
    def initial_workers(self, other_busy_cores: float = 0.0) -> int:
        """Workers for an idle pool: the share of cores the target allows, capped."""
        wanted = self.cores * self.target - max(0.0, other_busy_cores)
        return self._clamp(math.floor(wanted + 0.5))

    def others(self, reading: Reading) -> float:
        """Cores that other processes keep busy, less the background noise floor."""
        raw = reading.machine_busy_cores - reading.sabot_busy_cores
        return max(0.0, raw - self.noise_floor)

    def _clamp(self, n: int) -> int:
        return max(1, min(self.max_workers, self.cores, int(n)))

    def _instant_others(self) -> float | None:
        probe = self.instant_others
        if probe is None:
            return None
        try:
            return probe()
        except Exception:  # a probe must never break planning
            log.debug("instant load probe failed", exc_info=True)
            return None

    @property
    def workers(self) -> int:
        """The pool size the controller currently wants."""
        with self._lock:
            return self._workers

    def workers_for_call(self) -> int:
        """The pool size for a new call. While the pool was idle the size follows the recent
        load of other processes (the least of the last readings, so a peer that has just
        finished does not shrink it), else it stays where the running work put it."""
        with self._lock:
            if not self._idle or not self._recent_others:
                return self._workers
            others = min(self._recent_others)
            now = self._instant_others()
            if now is not None:
                # The readings are 0.5 s windows of the past: a program that has just
                # finished still shows in them. What is runnable right now says whether it
                # is still there (the least of the two: either one may be a spike).
                others = min(others, max(0.0, now - self.noise_floor))
            wanted = self._clamp(math.floor(self.cores * self.target - others + 0.5))
            if wanted != self._workers:
                self.resizes.append({"at": time.time(), "from": self._workers, "to": wanted,
                                     "other_busy_cores": round(others, 2), "idle": True})
                del self.resizes[:-20]
                log.debug("controller: new call, pool %d -> %d (other processes use %.2f "
                          "cores)", self._workers, wanted, others)
                self._workers = wanted
                self._since_change = 0
            return wanted

    def observe(self, reading: Reading) -> int | None:
        """Feed one utilization reading; returns the new pool size when it changes, else None."""
        with self._lock:
            self.last_reading = reading
            self._since_change += 1
            others = self.others(reading)
            room = self.cores * self.target - others  # cores Sabot may keep busy
            cur = self._workers
            self._recent_others.append(others)
            self._idle = reading.pool_busy is None
            if self._idle:
                # No work ran since the last reading: nothing to resize now; the next call
                # sizes the pool from the recent load (see workers_for_call).
                self._streak_dir, self._streak = 0, 0
                return None
            direction = 0
            if room >= cur + self.band and cur < self._clamp(cur + 1):
                # Growing helps only when the workers we have are kept busy.
                busy = reading.pool_busy
                if busy is not None and busy >= min(0.9, self.target):
                    direction = 1
            elif room <= cur - self.band and cur > 1:
                direction = -1
            if direction == 0:
                self._streak_dir, self._streak = 0, 0
                return None
            if direction == self._streak_dir:
                self._streak += 1
            else:
                self._streak_dir, self._streak = direction, 1
            if self._streak < self.patience or self._since_change <= self.cooldown:
                return None
            new = self._clamp(cur + direction)
            self._workers = new
            self._streak_dir, self._streak, self._since_change = 0, 0, 0
            entry = {
                "at": reading.at, "from": cur, "to": new,
                "machine_busy_cores": round(reading.machine_busy_cores, 2),
                "sabot_busy_cores": round(reading.sabot_busy_cores, 2),
                "other_busy_cores": round(others, 2),
            }
            self.resizes.append(entry)
            del self.resizes[:-20]
        log.debug("controller: resize pool %d -> %d (other processes use %.2f cores, target "
                  "%.0f%% of %d cores)", cur, new, others, self.target * 100, self.cores)
        return new

    # -- planning --------------------------------------------------------------------------
    def plan_items(self, *, items: int, per_item_s: float, ship_item_s: float,
                   pool_warm: bool, picklable: bool = True,
                   items_per_morsel: int = 1) -> Plan:
        """Choose inline or processes for ``items`` more items of a per-item function."""
        workers = self.workers_for_call()
        t_inline = items * per_item_s
        if self.force is not None and items > 0 and (self.force == INLINE or picklable):
            per_task = self._items_per_task(items, per_item_s, max(2, workers), items_per_morsel)
            plan = Plan(self.force, 1 if self.force == INLINE else workers,
                        f"executor={self.force} forced by the caller", per_item_s, ship_item_s,
                        items, per_task)
        elif items <= 0 or t_inline < MIN_PARALLEL_S:
            plan = Plan(INLINE, 1, f"estimated {t_inline * 1e3:.1f} ms inline: too little work "
                        "to pay for parallelism", per_item_s, ship_item_s, items)
        elif workers < 2:
            plan = Plan(INLINE, 1, f"only {workers} worker allowed (cores={self.cores}, "
                        f"MAX_WORKERS cap={self.max_workers}, target={self.target:g})",
                        per_item_s, ship_item_s, items)
        elif not picklable:
            plan = Plan(INLINE, 1, "the function cannot be pickled for worker processes",
                        per_item_s, ship_item_s, items)
        else:
            per_task = self._items_per_task(items, per_item_s, workers, items_per_morsel)
            tasks = math.ceil(items / per_task)
            ship = ship_item_s * SHIP_OVERHEAD_FACTOR
            per_item_par = max(per_item_s / workers, ship)
            # A cold pool costs its start-up first (user code never runs in this process on the
            # pool's behalf: a crashing function must only take a worker down).
            startup = 0.0 if pool_warm else self.startup_s
            model = items * per_item_par + tasks * TASK_OVERHEAD_S
            t_par = startup + model * self.slowdown
            if t_par * MARGIN < t_inline:
                plan = Plan(PROCESSES, workers,
                            f"estimated {t_par * 1e3:.0f} ms on {workers} processes vs "
                            f"{t_inline * 1e3:.0f} ms inline", per_item_s, ship_item_s, items,
                            per_task, model_s=model if pool_warm else 0.0)
                if self.slowdown != 1.0:
                    plan.reason += f" (pool measured {self.slowdown:.2f}x slower than modelled)"
            else:
                plan = Plan(INLINE, 1,
                            f"estimated {t_inline * 1e3:.0f} ms inline vs {t_par * 1e3:.0f} ms "
                            f"on {workers} processes (shipping {ship * 1e9:.0f} ns/item "
                            f"vs computing {per_item_s * 1e9:.0f} ns/item)", per_item_s,
                            ship_item_s, items)
                if startup > 0 and (t_par - startup) * MARGIN < t_inline:
                    # Only the cold start made processes lose: start the pool for next time.
                    plan.warm_pool = True
                    plan.reason += "; starting the worker pool for the next calls"
                if self.slowdown > 1.0 and (startup + model) * MARGIN < t_inline:
                    # Only the learned slowdown made processes lose: forget some of it, so
                    # the pool is measured again after a few calls (the load may have gone).
                    plan.reason += (f" (pool measured {self.slowdown:.2f}x slower than "
                                    "modelled)")
                    self.slowdown = 1.0 + (self.slowdown - 1.0) * SLOWDOWN_DECAY
        self._record(plan)
        return plan

    def plan_batches(self, *, morsels: int, per_morsel_s: float) -> Plan:
        """Choose inline or threads for a batch function (numpy/Arrow kernels release the GIL)."""
        workers = self.workers_for_call()
        t_inline = morsels * per_morsel_s
        if morsels <= 1 or t_inline < MIN_PARALLEL_S or workers < 2:
            plan = Plan(INLINE, 1, f"estimated {t_inline * 1e3:.1f} ms over {morsels} morsel(s)"
                        + ("" if workers >= 2 else f"; only {workers} worker allowed"),
                        per_morsel_s, 0.0, morsels)
        else:
            plan = Plan(THREADS, min(workers, morsels),
                        f"estimated {t_inline * 1e3:.0f} ms over {morsels} morsels; batch "
                        "functions run on threads", per_morsel_s, 0.0, morsels)
        self._record(plan)
        return plan

    def learn(self, plan: Plan, seconds: float) -> None:
        """Feed the measured time of a warm pool run planned by ``plan_items``."""
        if plan.executor != PROCESSES or plan.model_s < MIN_PARALLEL_S or seconds <= 0:
            return
        ratio = min(SLOWDOWN_MAX, max(SLOWDOWN_MIN, seconds / plan.model_s))
        with self._lock:
            self.slowdown = (1 - SLOWDOWN_WEIGHT) * self.slowdown + SLOWDOWN_WEIGHT * ratio
        log.debug("controller: pool run took %.0f ms, modelled %.0f ms; slowdown now %.2f",
                  seconds * 1e3, plan.model_s * 1e3, self.slowdown)

    def note(self, plan: Plan) -> Plan:
        """Record a decision made outside the cost model (native, async)."""
        self._record(plan)
        return plan

    def _items_per_task(self, items: int, per_item_s: float, workers: int,
                        items_per_morsel: int) -> int:
        # A task groups whole morsels: long enough (~20 ms) to amortise the round trip, short
        # enough that every worker gets several (load balance, resizing, early errors).
        by_time = int(0.02 / per_item_s) if per_item_s > 0 else items
        by_balance = max(1, items // (workers * 4))
        per_task = max(1, min(by_time, by_balance))
        if per_task > items_per_morsel > 0:
            # Bigger than a morsel: whole morsels (MORSEL_SIZE_KB stays the unit of data).
            per_task = (per_task // items_per_morsel) * items_per_morsel
        return max(1, min(items, per_task))

    def _record(self, plan: Plan) -> None:
        self.last_plan = plan
        log.debug("controller: %s with %d worker(s): %s", plan.executor, plan.workers, plan.reason)

    # -- stats -----------------------------------------------------------------------------
    def snapshot(self) -> dict[str, Any]:
        with self._lock:
            plan = self.last_plan
            reading = self.last_reading
            out: dict[str, Any] = {
                "executor": plan.executor if plan else None,
                # workers of the last call (1 when inline); pool_target: the size the
                # controller keeps the process pool at
                "workers": plan.workers if plan else self._workers,
                "pool_target": self._workers,
                "max_workers": self.max_workers,
                "usable_cores": self.cores,
                "target_utilization": self.target,
                "reason": plan.reason if plan else "no work yet",
                "per_item_cost_s": plan.per_item_cost_s if plan else None,
                "pool_slowdown": round(self.slowdown, 3),
                "ship_cost_s": plan.ship_cost_s if plan else None,
                "utilization": None,
                "pool_busy": None,
                "resizes": list(self.resizes[-5:]),
            }
            if reading is not None:
                out["utilization"] = round(reading.machine_busy_cores / self.cores, 3)
                out["sabot_busy_cores"] = round(reading.sabot_busy_cores, 3)
                out["pool_busy"] = (None if reading.pool_busy is None
                                    else round(reading.pool_busy, 3))
            return out


__all__ = [
    "ASYNC",
    "INLINE",
    "NATIVE",
    "PROCESSES",
    "THREADS",
    "AdaptiveController",
    "Plan",
    "Reading",
]
