"""The utilization sampler: real psutil readings, fed to the controller off the event loop."""

from __future__ import annotations

import time

import sabot_test_nodes as nodes
from sabot.engine.controller import AdaptiveController
from sabot.engine.sampler import UtilizationSampler


def test_sampler_reads_this_process_and_feeds_the_controller():
    ctl = AdaptiveController(usable_cores=2, max_workers=2, target_utilization=0.8)
    resized: list[int] = []
    busy = [0.9]
    sampler = UtilizationSampler(ctl, pids=list, pool_busy=lambda: busy[0],
                                 on_resize=resized.append, interval=0.05)
    sampler.start()
    try:
        end = time.monotonic() + 0.4
        while time.monotonic() < end:  # keep this process busy
            sum(range(1000))
    finally:
        sampler.stop()
    reading = ctl.last_reading
    assert reading is not None
    assert reading.sabot_busy_cores > 0.0
    assert reading.machine_busy_cores >= 0.0
    assert reading.pool_busy == 0.9
    assert not sampler._thread.is_alive()
    assert all(1 <= n <= 2 for n in resized)


def test_a_worker_started_between_readings_counts_as_sabot_not_as_other_load():
    """A pool child that appears after the previous reading has spent all its CPU inside the
    window; booking it to "other processes" would make the controller shrink the pool."""
    ctl = AdaptiveController(usable_cores=2, max_workers=2, target_utilization=0.8)
    pids: list[int] = []
    sampler = UtilizationSampler(ctl, pids=lambda: list(pids), pool_busy=lambda: 1.0,
                                 on_resize=lambda n: None, interval=3600)
    sampler.start()  # primes the counters; the loop never fires within this test
    child = nodes.python_child("import sys, time\n"
                               "while time.process_time() < 0.3: pass\n"
                               "print('done', flush=True)\n"
                               "sys.stdin.read()\n")
    try:
        pids.append(child.pid)
        assert child.stdout.readline().strip() == "done"
        # CPU seconds booked to Sabot since start(): the child's whole 0.3 s are in them
        # (the parent only waited on the pipe meanwhile)
        assert sampler._sabot_cpu() >= 0.25  # /proc counts in 10 ms ticks
    finally:
        sampler.stop()
        nodes.end_child(child)


def test_instant_probe_counts_runnable_threads_other_than_the_caller():
    import subprocess
    import sys

    from sabot.engine.sampler import runnable_threads

    now = runnable_threads()
    if now is None:
        import os

        import pytest

        # (Linux always has it: on CI, where the suite runs on Linux, its absence is a failure)
        if os.environ.get("CI"):
            pytest.fail("no /proc/stat procs_running on this system")
        pytest.skip("no /proc/stat procs_running on this system")
    assert now >= 1  # this thread is running
    ctl = AdaptiveController(usable_cores=2, max_workers=2, target_utilization=0.8)
    sampler = UtilizationSampler(ctl, pids=list, pool_busy=lambda: None,
                                 on_resize=lambda n: None, interval=3600)
    sampler.start()
    spinners = [subprocess.Popen([sys.executable, "-c", "while True: pass"]) for _ in range(3)]
    try:
        time.sleep(0.3)
        assert ctl.instant_others is not None
        if sampler._use_cgroup:
            assert sampler.instant_others() is None
        else:
            # three busy processes on 2 cores: at least two are always running or runnable
            assert sampler.instant_others() >= 2
    finally:
        for p in spinners:
            p.kill()
            p.wait(timeout=10)
        sampler.stop()
    assert ctl.instant_others is None
