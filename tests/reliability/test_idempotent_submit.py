"""Idempotent submits (#16 item 7): a client that lost a submit's answer sends it again under
the job id it chose (HTTP ``Idempotency-Key`` or ``job_id``, the Python API's ``job_id=``) and
gets the same job, which runs once; the same id with other content is refused (409,
JobIdConflictError); this holds across a coordinator SIGKILL and restart (the id and the
content's digest are journaled). Real coordinator and worker processes; a processor that
appends a line per call to a file counts the runs."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

import sabot_test_nodes as nodes
from sabot import JobIdConflictError
from sabot.config import load_config
from sabot.distributed import (
    create_distributed_coordinator,
    get_distributed_job_result,
    submit_distributed_job,
)

procs = nodes.chaos_procs()


def _calls(path: Path) -> list[int]:
    return sorted(int(line) for line in path.read_text().split()) if path.exists() else []


def _cluster(tmp_path: Path, calls: Path) -> nodes.Cluster:
    return nodes.Cluster(tmp_path / "c", {**nodes.CHAOS_SETTINGS, procs.CALLS_FILE_VAR:
                                          str(calls)})


def _post(node: nodes.NodeProcess, body: dict, key: str | None = None) -> nodes.HttpReply:
    headers = {"Idempotency-Key": key} if key is not None else None
    return node.request("POST", "/submit_job", body, headers=headers)


def test_an_http_resubmit_under_the_same_key_is_the_same_job_and_runs_once(
        tmp_path: Path) -> None:
    calls = tmp_path / "calls"
    cluster = _cluster(tmp_path, calls)
    coordinator = cluster.start_coordinator()
    try:
        items = procs.make_items(300, pad=40)
        body = {"data": items, "processor_func": "chaos_counted"}
        first = _post(coordinator, body, "order-42")
        again = _post(coordinator, body, "order-42")  # the client lost the first answer
        in_body = _post(coordinator, {**body, "job_id": "order-42"})
        assert first.status == again.status == in_body.status == 200, (first, again, in_body)
        assert first.json["job_id"] == again.json["job_id"] == in_body.json["job_id"] == \
            "order-42"
        assert "Idempotent-Replayed" not in first.headers
        assert again.headers.get("Idempotent-Replayed") == "true"

        cluster.add_worker()
        job = coordinator.wait_job("order-42")
        assert job["status"] == "completed" and job["result"] == [procs.answer(x)
                                                                   for x in items]
        after = _post(coordinator, body, "order-42")
        assert after.status == 200 and after.json == {"job_id": "order-42",
                                                      "status": "completed"}
        assert _calls(calls) == list(range(len(items)))  # every item ran exactly once
        jobs = coordinator.request("GET", "/jobs").json["jobs"]
        assert [j["job_id"] for j in jobs] == ["order-42"]

        # The same key with other content: refused, naming the key.
        for other in ({**body, "data": items[:-1]}, {**body, "processor_func": "chaos_fast"},
                      {**body, "priority": 5}):
            conflict = _post(coordinator, other, "order-42")
            assert conflict.status == 409, conflict
            assert conflict.json["job_id"] == "order-42"
            assert "other content" in conflict.json["error"]

        # Bad keys: 400 saying what a key may hold.
        for bad in ("", "a b", "x" * 129, "caf\u00e9", "../x"):
            reply = _post(coordinator, {**body, "job_id": bad})
            assert reply.status == 400 and "letters, digits" in reply.json["error"], reply
        mixed = _post(coordinator, {**body, "job_id": "one"}, "two")
        assert mixed.status == 400 and "differ" in mixed.json["error"], mixed
        assert _calls(calls) == list(range(len(items)))
        nodes.record("idempotent HTTP resubmit", variant="ci", jobs=1,
                     results_checked=len(items), lost=0,
                     duplicated=len(_calls(calls)) - len(items), submits_same_key=4,
                     conflicts_409=3, bad_keys_400=6)
    finally:
        cluster.stop()


def test_the_key_and_its_content_survive_a_coordinator_sigkill(tmp_path: Path) -> None:
    calls = tmp_path / "calls"
    cluster = _cluster(tmp_path, calls)
    coordinator = cluster.start_coordinator()
    try:
        items = procs.make_items(200, pad=40)
        body = {"data": items, "processor_func": "chaos_counted"}
        assert _post(coordinator, body, "nightly-2026-12-02").status == 200
        # No worker yet: nothing ran. The coordinator dies at once after the ack.
        coordinator.kill()
        restarted = cluster.restart_coordinator()
        again = _post(restarted, body, "nightly-2026-12-02")
        assert again.status == 200 and again.headers.get("Idempotent-Replayed") == "true"
        assert _post(restarted, {**body, "data": items[:10]}, "nightly-2026-12-02").status \
            == 409
        cluster.add_worker()
        assert restarted.wait_job("nightly-2026-12-02")["result"] == \
            [procs.answer(x) for x in items]
        restarted.kill()
        restarted = cluster.restart_coordinator()
        done = _post(restarted, body, "nightly-2026-12-02")
        assert done.status == 200 and done.json["status"] == "completed", done
        assert _post(restarted, {**body, "priority": 1}, "nightly-2026-12-02").status == 409
        assert _calls(calls) == list(range(len(items)))
        nodes.record("idempotent resubmit across coordinator SIGKILLs", variant="ci", jobs=1,
                     kills=2, results_checked=len(items), lost=0,
                     duplicated=len(_calls(calls)) - len(items))
    finally:
        cluster.stop()


def test_the_python_api_takes_a_job_id_and_never_runs_a_job_twice(tmp_path: Path) -> None:
    calls = tmp_path / "calls"
    cluster = _cluster(tmp_path, calls)
    coordinator = cluster.start_coordinator()
    cluster.add_worker()
    config = load_config(env={"SABOT_CLUSTER_KEY_FILE": str(cluster.key_file)})
    items = procs.make_items(150, pad=40)

    async def main() -> None:
        handle = create_distributed_coordinator("127.0.0.1", coordinator.http_port,
                                                config=config)
        try:
            first = await submit_distributed_job(handle, items, "chaos_counted",
                                                 job_id="py-batch-7")
            second = await submit_distributed_job(handle, items, "chaos_counted",
                                                  job_id="py-batch-7")
            assert first == second == "py-batch-7"
            result = await get_distributed_job_result(handle, first, timeout=60)
            assert result == [procs.answer(x) for x in items]
            assert await submit_distributed_job(handle, items, "chaos_counted",
                                                job_id="py-batch-7") == "py-batch-7"
            with pytest.raises(JobIdConflictError, match="py-batch-7"):
                await submit_distributed_job(handle, items[:5], "chaos_counted",
                                             job_id="py-batch-7")
            with pytest.raises(ValueError, match="letters, digits"):
                await submit_distributed_job(handle, items, "chaos_counted", job_id="no spaces")
            # A function shipped by value: the same one under the same id is the same job.
            square = lambda x: x * x  # noqa: E731
            a = await submit_distributed_job(handle, [1, 2, 3], square, job_id="py-lambda")
            b = await submit_distributed_job(handle, [1, 2, 3], square, job_id="py-lambda")
            assert a == b and await get_distributed_job_result(handle, a, timeout=60) == \
                [1, 4, 9]
            with pytest.raises(JobIdConflictError):
                await submit_distributed_job(handle, [1, 2, 3], lambda x: -x, job_id="py-lambda")
            # Without a job_id every submit is a job of its own.
            one = await submit_distributed_job(handle, [1], square)
            two = await submit_distributed_job(handle, [1], square)
            assert one != two
        finally:
            await handle.stop()

    try:
        asyncio.run(main())
        assert _calls(calls) == list(range(len(items)))
    finally:
        cluster.stop()
