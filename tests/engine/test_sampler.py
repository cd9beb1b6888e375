"""The utilization sampler: real psutil readings, fed to the controller off the event loop."""

from __future__ import annotations

import time

from sabot.engine.controller import AdaptiveController
from sabot.engine.sampler import UtilizationSampler


def test_sampler_reads_this_process_and_feeds_the_controller():
    ctl = AdaptiveController(usable_cores=2, max_workers=2, target_utilization=0.8)
    resized: list[int] = []
    busy = [0.9]
    sampler = UtilizationSampler(ctl, pids=lambda: [], pool_busy=lambda: busy[0],
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
