"""The adaptive controller: plans from measured costs, resizes from utilization readings."""

from __future__ import annotations

import pytest
from sabot.engine.controller import INLINE, PROCESSES, THREADS, AdaptiveController, Reading


def controller(cores=8, max_workers=8, target=0.8, **kw) -> AdaptiveController:
    return AdaptiveController(usable_cores=cores, max_workers=max_workers,
                              target_utilization=target, **kw)


def busy(machine: float, sabot: float, pool_busy: float | None = 1.0) -> Reading:
    return Reading(machine_busy_cores=machine, sabot_busy_cores=sabot, pool_busy=pool_busy)


def test_initial_size_follows_cores_target_and_cap():
    assert controller(cores=8, target=0.8).workers == 6          # 6.4 -> 6
    assert controller(cores=2, target=0.8).workers == 2          # 1.6 -> 2
    assert controller(cores=16, max_workers=4).workers == 4      # MAX_WORKERS caps it
    assert controller(cores=4, target=0.1).workers == 1          # never below one
    assert controller(cores=8).initial_workers(other_busy_cores=3.0) == 3


def test_cheap_functions_run_inline_and_expensive_ones_in_processes():
    c = controller()
    cheap = c.plan_items(items=2_000_000, per_item_s=60e-9, ship_item_s=80e-9, pool_warm=True)
    assert cheap.executor == INLINE and "shipping" in cheap.reason
    small = c.plan_items(items=1000, per_item_s=1e-6, ship_item_s=1e-7, pool_warm=True)
    assert small.executor == INLINE and "too little work" in small.reason
    costly = c.plan_items(items=100_000, per_item_s=10e-6, ship_item_s=1e-7, pool_warm=True)
    assert costly.executor == PROCESSES and costly.workers == c.workers
    assert 1 <= costly.items_per_task <= 100_000 // (c.workers * 4)


def test_cold_pool_start_up_counts_against_processes():
    c = controller(cores=2, max_workers=2)
    c.startup_s = 0.5
    plan = c.plan_items(items=10_000, per_item_s=50e-6, ship_item_s=1e-7, pool_warm=False)
    assert plan.executor == INLINE  # 0.5 s inline vs 0.5 s start-up + 0.25 s
    plan = c.plan_items(items=10_000, per_item_s=50e-6, ship_item_s=1e-7, pool_warm=True)
    assert plan.executor == PROCESSES


def test_one_worker_or_unpicklable_means_inline():
    one = controller(cores=1, max_workers=1)
    plan = one.plan_items(items=10_000, per_item_s=1e-3, ship_item_s=1e-7, pool_warm=True)
    assert plan.executor == INLINE and "only 1 worker" in plan.reason
    c = controller()
    plan = c.plan_items(items=10_000, per_item_s=1e-3, ship_item_s=0, pool_warm=True,
                        picklable=False)
    assert plan.executor == INLINE and "pickled" in plan.reason


def test_batch_functions_use_threads_when_there_is_enough_work():
    c = controller()
    assert c.plan_batches(morsels=100, per_morsel_s=0.005).executor == THREADS
    assert c.plan_batches(morsels=3, per_morsel_s=0.0001).executor == INLINE


def test_grows_when_other_load_goes_away():
    c = controller(cores=8, target=0.8)
    c._workers = 2
    sizes = [c.observe(busy(machine=2.0, sabot=2.0)) for _ in range(12)]
    # room = 6.4 cores: one worker at a time, after patience and cooldown, up to 6
    assert c.workers == 6
    changes = [s for s in sizes if s is not None]
    assert changes == [3, 4, 5, 6]
    assert [r["to"] for r in c.resizes] == [3, 4, 5, 6]


def test_does_not_grow_when_its_workers_are_not_busy():
    c = controller(cores=8, target=0.8)
    c._workers = 2
    for _ in range(10):
        assert c.observe(busy(machine=1.0, sabot=1.0, pool_busy=0.3)) is None
    assert c.workers == 2


def test_shrinks_when_other_processes_take_the_cores():
    c = controller(cores=8, target=0.8)
    assert c.workers == 6
    # another program now keeps 5 cores busy: room = 6.4 - 5 = 1.4 cores
    for _ in range(20):
        c.observe(busy(machine=8.0, sabot=3.0))
    assert c.workers == 1 or c.workers == 2
    assert all(r["to"] < r["from"] for r in c.resizes)


def test_no_flapping_on_readings_around_the_threshold():
    c = controller(cores=8, target=0.8)
    start = c.workers  # 6
    # other load oscillates between 0.2 and 1.0 cores: room 5.4..6.2, inside the dead band
    for i in range(40):
        others = 0.2 if i % 2 else 1.0
        c.observe(busy(machine=start + others, sabot=start))
    assert c.workers == start and c.resizes == []


def test_alternating_spikes_do_not_resize_without_patience():
    c = controller(cores=8, target=0.8, patience=2)
    start = c.workers
    for i in range(40):  # a spike every other reading never lasts two readings
        others = 5.0 if i % 2 else 0.0
        c.observe(busy(machine=start + others, sabot=start))
    assert c.workers == start


def test_idle_readings_change_nothing():
    c = controller(cores=8, target=0.8)
    start = c.workers
    for _ in range(10):
        assert c.observe(busy(machine=8.0, sabot=0.0, pool_busy=None)) is None
    assert c.workers == start


def test_never_beyond_max_workers_or_cores():
    c = controller(cores=4, max_workers=3, target=1.0)
    for _ in range(20):
        c.observe(busy(machine=0.0, sabot=0.0))
    assert c.workers == 3


def test_snapshot_shows_the_decision():
    c = controller()
    c.plan_items(items=100_000, per_item_s=10e-6, ship_item_s=1e-7, pool_warm=True)
    c.observe(busy(machine=4.0, sabot=3.0, pool_busy=0.9))
    snap = c.snapshot()
    assert snap["executor"] == PROCESSES
    assert snap["per_item_cost_s"] == pytest.approx(10e-6)
    assert snap["utilization"] == pytest.approx(0.5)
    assert snap["pool_busy"] == pytest.approx(0.9)
    assert snap["workers"] == c.workers == snap["pool_target"]


def test_idle_pool_is_resized_for_the_next_call_from_the_recent_load():
    c = controller(cores=8, target=0.8)
    # a busy period shrank the pool while work ran
    for _ in range(20):
        c.observe(busy(machine=8.0, sabot=3.0))
    shrunk = c.workers
    assert shrunk <= 2
    # the machine is quiet again, the pool idle: the next call gets the full size back
    for _ in range(3):
        c.observe(busy(machine=0.2, sabot=0.0, pool_busy=None))
    plan = c.plan_items(items=100_000, per_item_s=10e-6, ship_item_s=1e-7, pool_warm=True)
    assert plan.workers == c.workers == 6
    assert c.resizes[-1]["idle"] is True


def test_a_peer_that_just_finished_does_not_shrink_the_next_call():
    c = controller(cores=8, target=0.8)
    c.observe(busy(machine=0.1, sabot=0.0, pool_busy=None))
    c.observe(busy(machine=0.1, sabot=0.0, pool_busy=None))
    c.observe(busy(machine=7.5, sabot=0.0, pool_busy=None))  # another engine's last burst
    assert c.workers_for_call() == 6


def test_a_call_lost_only_to_the_cold_start_starts_the_pool_for_the_next_ones():
    c = controller(cores=2, max_workers=2)
    c.startup_s = 0.5
    cold = c.plan_items(items=10_000, per_item_s=50e-6, ship_item_s=1e-7, pool_warm=False)
    assert cold.executor == INLINE and cold.warm_pool and "starting the worker pool" in cold.reason
    cheap = c.plan_items(items=2_000_000, per_item_s=60e-9, ship_item_s=80e-9, pool_warm=False)
    assert not cheap.warm_pool


def test_background_noise_does_not_cost_a_worker_but_real_load_does():
    # 2 cores at 0.8: 1.6 cores of room. A quarter core of background use (kernel, agents,
    # an idle cluster's heartbeats) must not round that down to one worker...
    c = controller(cores=2, max_workers=2, target=0.8)
    for _ in range(3):
        c.observe(busy(machine=0.2, sabot=0.0, pool_busy=None))
    assert c.workers_for_call() == 2
    # ...while a program that keeps a core busy does
    for _ in range(3):
        c.observe(busy(machine=1.0, sabot=0.0, pool_busy=None))
    assert c.workers_for_call() == 1
    plan = c.plan_items(items=10_000, per_item_s=1e-3, ship_item_s=1e-7, pool_warm=True)
    assert plan.executor == INLINE and "only 1 worker" in plan.reason


def test_a_pool_slower_than_modelled_is_learned_and_measured_again_later():
    c = controller(cores=2, max_workers=2, target=0.8)
    kw = dict(items=10_000, per_item_s=60e-6, ship_item_s=1e-7, pool_warm=True)
    first = c.plan_items(**kw)
    assert first.executor == PROCESSES and first.model_s > 0
    # the machine gives the two workers little more than one core: the run takes 1.9x the model
    c.learn(first, first.model_s * 1.9)
    c.learn(first, first.model_s * 1.9)
    assert c.slowdown > 1.5
    assert c.snapshot()["pool_slowdown"] == pytest.approx(c.slowdown, abs=1e-3)
    second = c.plan_items(**kw)
    assert second.executor == INLINE and "slower than modelled" in second.reason
    # while inline is chosen because of what was learned, it fades: the pool is tried again
    plans = [c.plan_items(**kw).executor for _ in range(10)]
    assert PROCESSES in plans
    # a pool that keeps its promise keeps being used
    c2 = controller(cores=2, max_workers=2, target=0.8)
    for _ in range(5):
        plan = c2.plan_items(**kw)
        assert plan.executor == PROCESSES
        c2.learn(plan, plan.model_s)
    assert c2.slowdown == pytest.approx(1.0)


def test_cold_or_unplanned_runs_teach_nothing():
    c = controller(cores=2, max_workers=2)
    cold = c.plan_items(items=100_000, per_item_s=60e-6, ship_item_s=1e-7, pool_warm=False)
    assert cold.executor == PROCESSES and cold.model_s == 0.0
    c.learn(cold, 100.0)
    assert c.slowdown == 1.0


def test_a_peer_busy_for_the_last_readings_but_gone_now_does_not_shrink_the_next_call():
    c = controller(cores=2, max_workers=2, target=0.8)
    for _ in range(3):  # another engine ran flat out for the last 1.5 s...
        c.observe(busy(machine=2.0, sabot=0.0, pool_busy=None))
    assert c.workers_for_call() == 1  # without an instant probe, the readings decide
    c.instant_others = lambda: 0.0    # ...but nothing else is runnable now
    assert c.workers_for_call() == 2
    c.instant_others = lambda: 2.0    # it is still running
    assert c.workers_for_call() == 1
    c.instant_others = lambda: 1 / 0  # a broken probe changes nothing
    assert c.workers_for_call() == 1
