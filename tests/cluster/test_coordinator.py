"""The coordinator with real worker processes: big jobs, failures, restarts, scheduling."""

from __future__ import annotations

import asyncio
import json
import signal
import time
import urllib.request
from typing import Any

import pytest
import sabot
from sabot.cluster.coordinator import FORGET_AFTER_TIMEOUTS
from sabot.cluster.protocol import PROTOCOL_VERSION
from sabot.errors import CancelledError, JobFailedError


def _slow_square(every: int = 500, pause: float = 0.01) -> Any:
    # Self-contained (pickled by value): pauses on every ``every``-th item so a job takes a while.
    return lambda x, e=every, p=pause: (__import__("time").sleep(p) if x % e == 0 else None) \
        or x * x


async def _wait_progress(handle: Any, job_id: str, fraction: float, timeout: float = 60) -> dict:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        st = await handle.status(job_id)
        if st["progress"]["fraction"] >= fraction or st["status"] != "running" and \
                st["status"] != "pending":
            return st
        await asyncio.sleep(0.05)
    raise AssertionError(f"job {job_id} did not reach {fraction:.0%}: {st}")


def test_a_million_items_with_a_lambda_come_back_complete_and_in_order(shared_cluster):
    async def main():
        c = shared_cluster.handle()
        try:
            job = await sabot.submit_distributed_job(c, list(range(1_000_000)),
                                                     lambda x: x * 2 + 1)
            out = await sabot.get_distributed_job_result(c, job, timeout=180)
            return out, await c.status(job)
        finally:
            await c.stop()

    out, status = asyncio.run(main())
    assert out == [x * 2 + 1 for x in range(1_000_000)]
    assert status["status"] == "completed"
    assert status["progress"]["done"] == 1_000_000
    workers = shared_cluster.alive_workers()
    assert len(workers) == 3
    assert all(w["morsels_done"] > 0 for w in workers), workers


def test_stats_show_nodes_jobs_and_system_resources(shared_cluster):
    async def main():
        c = shared_cluster.handle()
        try:
            return await c.cluster_stats(), c.get_cluster_stats()
        finally:
            await c.stop()

    stats, sync_stats = asyncio.run(main())
    for s in (stats, sync_stats):
        assert {"nodes", "jobs", "system_resources", "queue_depth"} <= set(s)
        assert len([n for n in s["nodes"] if n["state"] == "alive"]) == 3
        assert s["system_resources"]["cpu_count"] >= 1
    info = shared_cluster.http("/cluster")
    assert info["zmq_port"] == shared_cluster.zmq_port
    assert info["protocol_version"] == PROTOCOL_VERSION
    assert info["cluster_name"] == "sabot-cluster"
    # Workers registered with an address and their own (ephemeral) HTTP port, which answers.
    for node in stats["nodes"]:
        assert node["address"] == "127.0.0.1" and node["http_port"] not in (0, shared_cluster.port)
        with urllib.request.urlopen(
                f"http://127.0.0.1:{node['http_port']}/health", timeout=5) as r:
            assert r.status == 200
        with urllib.request.urlopen(
                f"http://127.0.0.1:{node['http_port']}/metrics", timeout=5) as r:
            assert b"sabot_processing_throughput_items_per_second" in r.read()


def test_named_processor_numpy_and_arrow_inputs(shared_cluster):
    import numpy as np
    import pyarrow as pa

    async def main():
        c = shared_cluster.handle()
        try:
            a = await c.result(await c.submit(list(range(50_000)), "square"), timeout=60)
            b = await c.result(await c.submit(np.arange(100_000, dtype=np.int64),
                                              lambda v: v + 1), timeout=60)
            arr = await c.result(await c.submit(pa.array(range(30_000)), "double"), timeout=60)
            return a, b, arr
        finally:
            await c.stop()

    a, b, arr = asyncio.run(main())
    assert a == [x * x for x in range(50_000)]
    assert isinstance(b, np.ndarray) and b.tolist() == list(range(1, 100_001))
    assert isinstance(arr, pa.Array) and arr.to_pylist() == [2 * x for x in range(30_000)]


def test_unknown_processor_is_refused_with_the_known_names(shared_cluster):
    async def main():
        c = shared_cluster.handle()
        try:
            await c.submit([1, 2], "no-such-processor")
        finally:
            await c.stop()

    with pytest.raises(sabot.UnknownProcessorError) as err:
        asyncio.run(main())
    assert "no-such-processor" in str(err.value) and "square" in str(err.value)


def test_poison_item_fails_the_job_after_max_attempts_with_its_error(shared_cluster):
    async def main():
        c = shared_cluster.handle()
        try:
            job = await c.submit(list(range(5000)), lambda x: 1 // (x - 4321))
            with pytest.raises(JobFailedError) as err:
                await c.result(job, timeout=60)
            return err.value, await c.status(job)
        finally:
            await c.stop()

    error, status = asyncio.run(main())
    assert status["status"] == "failed"
    text = str(error)
    assert "ZeroDivisionError" in text and "item 4321" in text
    assert "after 3 attempt(s)" in text


def _failure_of(cluster: Any, func: Any) -> str:
    """The error text of a job of [1, 2, 3] that must fail."""
    async def main():
        c = cluster.handle()
        try:
            job = await c.submit([1, 2, 3], func)
            with pytest.raises(JobFailedError) as err:
                await c.result(job, timeout=60)
            return str(err.value)
        finally:
            await c.stop()

    return asyncio.run(main())


def _encoded_tasks(cluster: Any) -> int:
    total = 0
    for node in cluster.alive_workers():
        with urllib.request.urlopen(f"http://127.0.0.1:{node['http_port']}/stats",
                                    timeout=10) as r:
            engine = json.loads(r.read())["engine"] or {}
        total += engine.get("controller", {}).get("transport", {}).get("encoded_tasks", 0)
    return total


def test_bulk_morsels_run_encoded_in_the_pool_exactly_and_a_poison_item_is_named(
        shared_cluster, tmp_path, monkeypatch):
    """Morsels of 32 KiB or more are not decoded by the worker node: its pool processes decode,
    run and encode them. Plain and pickled results come back exactly, in order; a failing item
    is named by its place in the input; an input value whose class the workers cannot import
    fails naming the module."""
    mod = tmp_path / "points_only_here.py"
    mod.write_text("class Point:\n    def __init__(self, x):\n        self.x = x\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    import importlib

    points = importlib.import_module("points_only_here")
    before = _encoded_tasks(shared_cluster)

    async def main():
        c = shared_cluster.handle()
        try:
            plain = await c.submit(list(range(200_000)), lambda x: x * 3, morsel_items=20_000)
            pairs = await c.submit([(x, str(x)) for x in range(60_000)],
                                   lambda t: (t[1], t[0]), morsel_items=15_000)
            bad = await c.submit(list(range(200_000)), lambda x: 1 // (x - 123_456),
                                 morsel_items=20_000)
            alien = await c.submit([points.Point(x) for x in range(20_000)],
                                   lambda p: p.x, morsel_items=20_000)
            out = (await c.result(plain, timeout=120), await c.result(pairs, timeout=120))
            errors = []
            for job in (bad, alien):
                with pytest.raises(JobFailedError) as err:
                    await c.result(job, timeout=120)
                errors.append(str(err.value))
            return out, errors
        finally:
            await c.stop()

    (plain, pairs), (poison, alien) = asyncio.run(main())
    assert plain == [x * 3 for x in range(200_000)]
    assert pairs == [(str(x), x) for x in range(60_000)]
    assert "ZeroDivisionError" in poison and "item 123456" in poison
    assert "ModuleNotFoundError" in alien and "points_only_here" in alien
    # Each morsel is an encoded pool task: plain's 10 and pairs' 4, and the poison morsel and
    # the alien one once per attempt (3 each); the bad job's other morsels may be cancelled
    # before they run, once its poison morsel has failed its job.
    assert _encoded_tasks(shared_cluster) - before >= 10 + 4 + 3 + 3


def test_tiny_morsels_of_a_lambda_complete_and_a_poison_among_them_is_named(shared_cluster):
    """Small morsels of one function are coalesced into shared engine calls on a worker: every
    result still lands in its own morsel, in order, and an item failing inside such a call is
    reported as itself (its morsel's offset plus its index), not as a neighbour."""
    async def main():
        c = shared_cluster.handle()
        try:
            good = await c.submit(list(range(3000)), lambda x: (x, -x), morsel_items=3)
            bad = await c.submit(list(range(3000)), lambda x: 1 // (x - 2018), morsel_items=7)
            out = await c.result(good, timeout=120)
            with pytest.raises(JobFailedError) as err:
                await c.result(bad, timeout=120)
            return out, str(err.value)
        finally:
            await c.stop()

    out, error = asyncio.run(main())
    assert out == [(x, -x) for x in range(3000)]
    assert "ZeroDivisionError" in error and "item 2018" in error and "morsel 288 " in error
    # Bursts of assignments are read in order: none is mistaken for a replay (and lost).
    for node in shared_cluster.nodes:
        assert "replayed" not in node.output, node.output[-2000:]


def test_an_error_whose_text_utf8_cannot_carry_still_fails_the_job(shared_cluster):
    """An exception text with a lone surrogate cannot travel as UTF-8: it arrives escaped, and
    the job fails with it instead of waiting forever for a report that was never sent."""
    def bad(x):
        if x == 2:
            raise ValueError("bad \udcff byte")
        return x

    text = _failure_of(shared_cluster, bad)
    assert "ValueError: bad \\udcff byte" in text and "item 1" in text


def _slow_then_poison(x):
    import time as t

    t.sleep(0.0005)  # costly enough that the worker hands the morsel's rest to its engine
    return 1 // (x - 350)


def test_costly_function_failing_after_the_sampled_items_names_the_item(shared_cluster):
    async def main():
        c = shared_cluster.handle()
        try:
            good = await c.submit(list(range(300)), _slow_then_poison, morsel_items=300)
            ok = await c.result(good, timeout=60)
            job = await c.submit(list(range(400)), _slow_then_poison, morsel_items=400)
            with pytest.raises(JobFailedError) as err:
                await c.result(job, timeout=60)
            return ok, err.value
        finally:
            await c.stop()

    ok, error = asyncio.run(main())
    assert ok == [1 // (x - 350) for x in range(300)]
    assert "ZeroDivisionError" in str(error) and "item 350" in str(error)


def test_stream_result_yields_items_in_order(shared_cluster):
    async def main():
        c = shared_cluster.handle()
        try:
            job = await c.submit(list(range(40_000)), "increment", )
            seen = []
            async for item in sabot.stream_distributed_job_result(c, job, timeout=60):
                seen.append(item)
            return seen
        finally:
            await c.stop()

    assert asyncio.run(main()) == list(range(1, 40_001))


def test_a_function_whose_module_workers_lack_fails_naming_the_module(shared_cluster, tmp_path,
                                                                       monkeypatch):
    mod = tmp_path / "only_on_the_client.py"
    mod.write_text("def triple(x):\n    return 3 * x\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    import importlib

    module = importlib.import_module("only_on_the_client")

    text = _failure_of(shared_cluster, module.triple)
    assert "only_on_the_client" in text and "ModuleNotFoundError" in text


def test_kill_9_a_worker_mid_job_loses_and_duplicates_nothing(cluster):
    cluster.start_coordinator()
    workers = [cluster.start_worker(wait=False) for _ in range(3)]
    cluster.wait_workers(3)
    n = 100_000

    async def main():
        c = cluster.handle()
        try:
            job = await c.submit(list(range(n)), _slow_square(200, 0.01), morsel_items=500)
            await _wait_progress(c, job, 0.2)
            workers[0].kill()
            out = await c.result(job, timeout=120)
            return out, await c.status(job)
        finally:
            await c.stop()

    out, status = asyncio.run(main())
    assert out == [x * x for x in range(n)]
    assert status["status"] == "completed"
    time.sleep(2.0)  # past SABOT_NODE_TIMEOUT_S
    states = sorted(node["state"] for node in cluster.http("/stats")["nodes"])
    assert states == ["alive", "alive", "dead"]  # the dead worker is kept, not forgotten


def test_coordinator_killed_and_restarted_resumes_the_job(cluster):
    coordinator = cluster.start_coordinator()
    for _ in range(2):
        cluster.start_worker(wait=False)
    cluster.wait_workers(2)
    n = 60_000

    async def main():
        c = cluster.handle()
        try:
            job = await c.submit(list(range(n)), _slow_square(100, 0.01), morsel_items=500)
            await _wait_progress(c, job, 0.15)
            coordinator.kill()
            cluster.start_coordinator()
            out = await c.result(job, timeout=120)
            return job, out
        finally:
            await c.stop()

    _, out = asyncio.run(main())
    assert out == [x * x for x in range(n)]
    assert "resumed 1 unfinished job" in cluster.coordinator.output
    # The workers found the new coordinator by themselves.
    cluster.wait_workers(2)


def test_hanging_item_is_timed_out_and_retried(cluster, tmp_path):
    cluster.extra["SABOT_MORSEL_TIMEOUT_S"] = "1"
    cluster.start_coordinator()
    for _ in range(2):
        cluster.start_worker(wait=False)
    cluster.wait_workers(2)
    marker = str(tmp_path / "hung-once")

    def hang_once(x, p=marker):
        import os
        import time as t

        if x == 7 and not os.path.exists(p):
            open(p, "w").close()
            t.sleep(6)
        return x * 10

    async def main():
        c = cluster.handle()
        try:
            job = await c.submit(list(range(40)), hang_once, morsel_items=4)
            return await c.result(job, timeout=60), await c.cluster_stats()
        finally:
            await c.stop()

    out, stats = asyncio.run(main())
    assert out == [x * 10 for x in range(40)]
    assert stats["counters"]["morsels_timed_out"] >= 1
    assert "timed out after 1 s" in cluster.coordinator.output


def test_a_worker_joining_mid_job_gets_work(cluster):
    cluster.start_coordinator()
    cluster.start_worker()
    cluster.wait_workers(1)

    async def main():
        c = cluster.handle()
        try:
            job = await c.submit(list(range(40_000)), _slow_square(100, 0.01), morsel_items=200)
            await _wait_progress(c, job, 0.05)
            late = cluster.start_worker(wait=False)
            out = await c.result(job, timeout=120)
            return out, late
        finally:
            await c.stop()

    out, late = asyncio.run(main())
    assert out == [x * x for x in range(40_000)]
    done = {n["pid"]: n["morsels_done"] for n in cluster.http("/stats")["nodes"]}
    assert done[late.proc.pid] > 0, done


def test_a_slow_worker_gets_fewer_morsels(cluster):
    cluster.start_coordinator()
    fast = cluster.start_worker(wait=False)
    slow = cluster.start_worker(wait=False, SABOT_TEST_SLOW="1")
    cluster.wait_workers(2)

    def work(x):
        import os
        import time as t

        t.sleep(0.1 if os.environ.get("SABOT_TEST_SLOW") else 0.01)
        return x

    async def main():
        c = cluster.handle()
        try:
            job = await c.submit(list(range(80)), work, morsel_items=1)
            return await c.result(job, timeout=120)
        finally:
            await c.stop()

    assert asyncio.run(main()) == list(range(80))
    done = {n["pid"]: n["morsels_done"] for n in cluster.http("/stats")["nodes"]}
    assert done[slow.proc.pid] < done[fast.proc.pid], done
    assert done[slow.proc.pid] + done[fast.proc.pid] >= 80


def test_credits_follow_the_cost_of_morsels_unless_slots_are_fixed(cluster):
    """SABOT_WORKER_SLOTS=auto: cheap tiny morsels raise a worker's credits above its base
    (2 x MAX_WORKERS + 2 = 4 here) so that more of them wait and travel in batches, never above
    its slots; costly morsels bring them back to the base. A fixed SABOT_WORKER_SLOTS never
    moves."""
    cluster.start_coordinator()
    auto = cluster.start_worker(wait=False)
    fixed = cluster.start_worker(wait=False, SABOT_WORKER_SLOTS="3")
    cluster.wait_workers(2)

    def nodes() -> dict[int, dict[str, Any]]:
        return {n["pid"]: n for n in cluster.alive_workers()}

    assert nodes()[auto.proc.pid]["credits"] == 4 and nodes()[auto.proc.pid]["slots"] == 64
    assert nodes()[fixed.proc.pid]["credits"] == nodes()[fixed.proc.pid]["slots"] == 3

    async def job(func, n):
        c = cluster.handle()
        try:
            job = await c.submit(list(range(n)), func, morsel_items=1)
            return await c.result(job, timeout=120)
        finally:
            await c.stop()

    assert asyncio.run(job(lambda x: x + 1, 3000)) == list(range(1, 3001))
    cheap = nodes()
    assert 4 < cheap[auto.proc.pid]["credits"] <= 64, cheap
    assert cheap[fixed.proc.pid]["credits"] == 3, cheap

    costly = lambda x: __import__("time").sleep(0.03) or x  # noqa: E731
    assert asyncio.run(job(costly, 40)) == list(range(40))
    after = nodes()
    assert after[auto.proc.pid]["credits"] == 4, after
    assert after[fixed.proc.pid]["credits"] == 3, after


def test_cancel_stops_a_running_job(cluster):
    cluster.start_coordinator()
    cluster.start_worker()
    cluster.wait_workers(1)

    async def main():
        c = cluster.handle()
        try:
            job = await c.submit(list(range(200)), _slow_square(1, 0.05), morsel_items=2)
            await _wait_progress(c, job, 0.02)
            cancelled = await sabot.cancel_distributed_job(c, job)
            after = (await c.status(job))["progress"]["done"]
            await asyncio.sleep(1.0)
            later = await c.status(job)
            with pytest.raises(CancelledError):
                await c.result(job, timeout=10)
            # The worker is free again: a new job runs at once.
            quick = await c.result(await c.submit([1, 2, 3], "square"), timeout=30)
            return cancelled, after, later, quick
        finally:
            await c.stop()

    cancelled, after, later, quick = asyncio.run(main())
    assert cancelled["status"] == "cancelled" and later["status"] == "cancelled"
    assert later["progress"]["done"] == after < 200
    assert quick == [1, 4, 9]


def test_sigterm_drains_a_worker_and_exits_0(cluster):
    cluster.start_coordinator()
    first = cluster.start_worker()
    cluster.start_worker()
    cluster.wait_workers(2)

    async def main():
        c = cluster.handle()
        try:
            job = await c.submit(list(range(20_000)), _slow_square(100, 0.01), morsel_items=200)
            await _wait_progress(c, job, 0.1)
            rc = await asyncio.to_thread(first.terminate)
            return rc, await c.result(job, timeout=120)
        finally:
            await c.stop()

    rc, out = asyncio.run(main())
    assert rc == 0
    assert out == [x * x for x in range(20_000)]
    assert "leaves (stopping)" in cluster.coordinator.output
    states = {n["pid"]: n["state"] for n in cluster.http("/stats")["nodes"]}
    assert states[first.proc.pid] == "left"


def _nodes_by_pid(cluster) -> dict[int, str]:
    return {int(n["pid"]): n["state"] for n in cluster.http("/stats")["nodes"]}


def _wait_nodes(cluster, check, what: str, timeout: float = 60) -> dict[int, str]:
    deadline = time.monotonic() + timeout
    while True:
        nodes = _nodes_by_pid(cluster)
        if check(nodes):
            return nodes
        assert time.monotonic() < deadline, f"{what}: {nodes}\n{cluster.coordinator.output}"
        time.sleep(0.1)


def test_dead_and_departed_workers_are_forgotten_and_a_silent_one_comes_back(cluster):
    """Churning workers do not grow the coordinator's node table: a worker killed with -9
    (dead), one stopped with SIGTERM (left) and one frozen with SIGSTOP (dead) are shown with
    their state first, then dropped after SABOT_NODE_TIMEOUT_S x FORGET_AFTER_TIMEOUTS. The
    frozen one, continued, registers again and runs a job."""
    timeout_s = 0.5
    cluster.start_coordinator(SABOT_NODE_TIMEOUT_S=str(timeout_s), SABOT_HEARTBEAT_S="0.1")
    workers = [cluster.start_worker(wait=False, SABOT_NODE_TIMEOUT_S=str(timeout_s),
                                    SABOT_HEARTBEAT_S="0.1") for _ in range(4)]
    cluster.wait_workers(4)
    killed, left, frozen, kept = (w.proc.pid for w in workers)
    workers[0].kill()
    assert workers[1].terminate() == 0
    workers[2].proc.send_signal(signal.SIGSTOP)
    try:
        nodes = _wait_nodes(cluster, lambda n: n.get(killed) == "dead" and n.get(left) == "left"
                            and n.get(frozen) == "dead", "not marked dead / left")
        marked = time.monotonic()
        assert nodes[kept] == "alive"
        nodes = _wait_nodes(cluster, lambda n: not {killed, left, frozen} & set(n),
                            "dead and departed workers are never forgotten")
        # Not before the grace period (measured from when the test saw them marked).
        assert time.monotonic() - marked > FORGET_AFTER_TIMEOUTS * timeout_s * 0.5
        assert kept in nodes
    finally:
        workers[2].proc.send_signal(signal.SIGCONT)
    _wait_nodes(cluster, lambda n: n.get(frozen) == "alive", "the continued worker is not back")

    async def main():
        c = cluster.handle()
        try:
            job = await c.submit(list(range(2000)), "square", morsel_items=10)
            return await c.result(job, timeout=60)
        finally:
            await c.stop()

    assert asyncio.run(main()) == [x * x for x in range(2000)]
    workers_seen = {int(n["pid"]): n["morsels_done"] for n in cluster.http("/stats")["nodes"]}
    assert set(workers_seen) == {frozen, kept}
