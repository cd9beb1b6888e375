"""The native scheduler seen from Python: pinning, GIL release, errors, cancellation, resizing,
exactly-once execution, and a fresh pool after fork."""

from __future__ import annotations

import os
import select
import signal
import threading
import time

import pytest

from sabot import _native
from sabot.errors import CancelledError, SchedulerError


def _allowed_cpus(tid: int | str) -> set[int]:
    with open(f"/proc/self/task/{tid}/status") as f:
        text = f.read()
    field = text.split("Cpus_allowed_list:")[1].split()[0]
    cpus: set[int] = set()
    for part in field.split(","):
        lo, _, hi = part.partition("-")
        cpus.update(range(int(lo), int(hi or lo) + 1))
    return cpus


def test_workers_are_pinned_one_per_cpu(native_core) -> None:
    tids = native_core.worker_thread_ids()
    stats = native_core.get_stats()
    assert len(tids) == native_core.num_threads() == stats["threads"]
    process_cpus = os.sched_getaffinity(0)
    if len(tids) >= len(process_cpus):
        assert stats["pinned"] is True
        masks = [_allowed_cpus(t) for t in tids]
        assert all(len(m) == 1 for m in masks), masks
        pinned = [next(iter(m)) for m in masks]
        # Each worker on its own CPU, all within this process's affinity, as the stats report.
        assert len(set(pinned)) == min(len(tids), len(process_cpus))
        assert set(pinned) <= process_cpus
        assert pinned == [w["cpu"] for w in stats["workers"]]
    else:  # a pool smaller than the machine is left to the OS scheduler
        assert stats["pinned"] is False
        assert all(_allowed_cpus(t) == process_cpus for t in tids)


def test_default_pool_matches_usable_cores(native_core) -> None:
    from sabot.system import usable_cores

    assert native_core.usable_cores() == usable_cores()


def test_gil_is_released_during_a_long_call(native_core) -> None:
    counter = 0
    stop = threading.Event()

    def count() -> None:
        nonlocal counter
        while not stop.is_set():
            counter += 1

    t = threading.Thread(target=count)
    t.start()
    try:
        time.sleep(0.05)
        before = counter
        # 0.4 s of busy work in C++ per worker-thread slot; the counter thread needs the GIL.
        native_core.run_spin(native_core.num_threads() * 4, 100_000_000)
        during = counter - before
    finally:
        stop.set()
        t.join()
    assert during > 1000, f"the Python thread only counted {during} times during the call"


def test_task_error_is_raised_with_its_message(native_core) -> None:
    with pytest.raises(SchedulerError, match=r"^morsel 4321 failed on purpose$") as info:
        native_core.run_failing(100_000, 4321)
    assert isinstance(info.value, RuntimeError)
    # The pool keeps working afterwards.
    counts = native_core.run_count(1000)
    assert sum(c for c, _ in counts) == 1000


def test_every_morsel_runs_exactly_once(native_core) -> None:
    for n in (0, 1, 2, 3, 17, 1000, 123_457):
        counts = native_core.run_count(n)
        assert len(counts) == native_core.num_threads()
        assert sum(c for c, _ in counts) == n
        assert sum(s for _, s in counts) == n * (n - 1) // 2


def test_counters_count_every_morsel(native_core) -> None:
    before = native_core.get_stats()
    native_core.run_empty(250_000)
    after = native_core.get_stats()
    assert after["morsels_executed"] - before["morsels_executed"] == 250_000
    assert after["parallel_for_calls"] == before["parallel_for_calls"] + 1
    assert after["busy_seconds"] > before["busy_seconds"]


def test_cancel_from_another_python_thread(native_core) -> None:
    token = native_core.CancellationToken()
    total = 1_000_000  # 1 ms each: about 8 minutes if cancellation did not work
    before = native_core.get_stats()["morsels_executed"]
    timer = threading.Timer(0.2, token.cancel)
    timer.start()
    try:
        with pytest.raises(CancelledError, match="cancelled after"):
            native_core.run_spin(total, 1_000_000, token)
    finally:
        timer.cancel()
    assert token.cancelled
    ran = native_core.get_stats()["morsels_executed"] - before
    assert 0 < ran < total


def test_cancelled_token_runs_nothing_until_reset(native_core) -> None:
    token = native_core.CancellationToken()
    token.cancel()
    before = native_core.get_stats()["morsels_executed"]
    with pytest.raises(CancelledError, match="before it started"):
        native_core.run_spin(10, 0, token)
    assert native_core.get_stats()["morsels_executed"] == before
    token.reset()
    native_core.run_spin(10, 0, token)
    assert native_core.get_stats()["morsels_executed"] == before + 10


def test_set_threads_resizes_the_pool(native_core) -> None:
    original = native_core.num_threads()
    try:
        for n in (1, 3, 2):
            _native.set_threads(n)
            assert native_core.num_threads() == n == _native.get_threads()
            assert len(native_core.worker_thread_ids()) == n
            counts = native_core.run_count(5000)
            assert len(counts) == n and sum(c for c, _ in counts) == 5000
        # Threads of a replaced pool are gone.
        tids = native_core.worker_thread_ids()
        live = set(os.listdir("/proc/self/task"))
        assert {str(t) for t in tids} <= live
    finally:
        _native.set_threads(original)


@pytest.mark.parametrize("bad", [0, -1, 10**6, 2.5, "4", True])
def test_set_threads_rejects_bad_values(native_core, bad: object) -> None:
    with pytest.raises(ValueError, match="threads must be an integer from 1 to"):
        _native.set_threads(bad)  # type: ignore[arg-type]


def test_bad_arguments_are_refused(native_core) -> None:
    with pytest.raises(ValueError, match="num_morsels must be >= 0"):
        native_core.run_empty(-5)
    with pytest.raises(ValueError, match="from 1 to"):
        native_core.set_threads(0)


def test_morsel_plan_is_sized_in_bytes(native_core) -> None:
    # 16 bytes per row: 64 KiB morsels hold 4096 rows; 4 MiB morsels 262144.
    assert native_core.rows_per_morsel(1_000_000, 16_000_000, 64 * 1024) == 4096
    assert native_core.rows_per_morsel(1_000_000, 16_000_000, 4 * 1024 * 1024) == 262144
    plan = native_core.plan_morsels(10_000, 80_000, 8 * 1024)
    assert plan[0] == (0, 1024)
    assert sum(length for _, length in plan) == 10_000
    assert all(off == prev_off + prev_len for (prev_off, prev_len), (off, _) in zip(plan, plan[1:]))
    with pytest.raises(ValueError, match="morsel size must be > 0"):
        native_core.plan_morsels(10, 80, 0)


def test_forked_child_gets_a_working_pool(native_core) -> None:
    native_core.run_empty(1000)  # make sure the parent's pool is running
    read_fd, write_fd = os.pipe()
    pid = os.fork()
    if pid == 0:  # child: the parent's worker threads do not exist here
        try:
            counts = native_core.run_count(10_000)
            ok = sum(c for c, _ in counts) == 10_000 and len(native_core.worker_thread_ids()) >= 1
            os.write(write_fd, b"ok" if ok else b"bad")
        finally:
            os._exit(0)
    os.close(write_fd)
    try:
        ready, _, _ = select.select([read_fd], [], [], 60)
        if not ready:
            os.kill(pid, signal.SIGKILL)
        answer = os.read(read_fd, 16) if ready else b"timeout (deadlock in the child)"
    finally:
        os.close(read_fd)
        os.waitpid(pid, 0)
    assert answer == b"ok"


def test_scan_sum_reads_the_buffer_in_place(native_core) -> None:
    import numpy as np

    data = np.arange(1_000_003, dtype=np.int64) * 7 - 3
    for kb in (4, 64, 4096):
        total, morsels = native_core.scan_sum(data, kb * 1024)
        assert total == int(data.sum())
        assert morsels == -(-len(data) // native_core.rows_per_morsel(len(data), data.nbytes, kb * 1024))
    # Overflow wraps like numpy's int64 sum.
    big = np.full(4, 2**62, dtype=np.int64)
    assert native_core.scan_sum(big)[0] == int(big.sum())
    assert native_core.scan_sum(np.zeros(0, dtype=np.int64)) == (0, 0)
    with pytest.raises(ValueError, match="1-D contiguous int64"):
        native_core.scan_sum(np.arange(10, dtype=np.float64))
    with pytest.raises(ValueError, match="1-D contiguous int64"):
        native_core.scan_sum(np.arange(20, dtype=np.int64)[::2])


class _Interrupt(Exception):
    pass


def test_signal_interrupts_a_long_native_call(native_core) -> None:
    """Ctrl-C during a long native job: the job is cancelled and the handler's exception raised."""

    def handler(signum: int, frame: object) -> None:
        raise _Interrupt("interrupted by SIGUSR1")

    previous = signal.signal(signal.SIGUSR1, handler)
    total = 1_000_000  # 1 ms each: minutes if the signal were ignored until the end
    before = native_core.get_stats()["morsels_executed"]
    timer = threading.Timer(0.3, os.kill, (os.getpid(), signal.SIGUSR1))
    timer.start()
    try:
        with pytest.raises(_Interrupt, match="interrupted by SIGUSR1"):
            native_core.run_spin(total, 1_000_000)
    finally:
        timer.cancel()
        signal.signal(signal.SIGUSR1, previous)
    ran = native_core.get_stats()["morsels_executed"] - before
    assert 0 < ran < total
    # The pool is idle and usable again.
    assert sum(c for c, _ in native_core.run_count(100)) == 100
