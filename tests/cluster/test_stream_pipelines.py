"""Streaming pipelines on the cluster: a StreamEnv job split across worker processes.

Real coordinator and worker processes on loopback; each pipeline instance is a task process of
its own, and rows cross between them over the exchange's ZeroMQ sockets.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc
import pytest
import sabot.stream as st
from sabot.errors import ConfigError, PipelineFailedError
from sabot.stream.nexmark.queries import QUERIES

from .conftest import Cluster

EVENTS = 120_000


@pytest.fixture(scope="module")
def three(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    c = Cluster(tmp_path_factory.mktemp("stream-cluster"))
    try:
        c.start_coordinator()
        for _ in range(3):
            c.start_worker(wait=False)
        c.wait_workers(3)
        old = os.environ.get("SABOT_CLUSTER_KEY_FILE")
        os.environ["SABOT_CLUSTER_KEY_FILE"] = c.env()["SABOT_CLUSTER_KEY_FILE"]
        yield c
        if old is None:
            os.environ.pop("SABOT_CLUSTER_KEY_FILE", None)
        else:
            os.environ["SABOT_CLUSTER_KEY_FILE"] = old
    finally:
        c.close()


@contextlib.contextmanager
def _cluster(tmp: Path, monkeypatch: pytest.MonkeyPatch, workers: int
             ) -> Iterator[tuple[Cluster, list[Any]]]:
    """A coordinator and ``workers`` workers (all alive), and this process's client settings."""
    c = Cluster(tmp)
    try:
        c.start_coordinator()
        nodes = [c.start_worker(wait=False) for _ in range(workers)]
        if workers:
            c.wait_workers(workers)
        monkeypatch.setenv("SABOT_CLUSTER_KEY_FILE", c.env()["SABOT_CLUSTER_KEY_FILE"])
        yield c, nodes
    finally:
        c.close()


def _env(c: Cluster, **kw: Any) -> st.StreamEnv:
    return st.StreamEnv(cluster=f"127.0.0.1:{c.port}", **kw)


def _rows(t: pa.Table) -> list[tuple]:
    return sorted((tuple(sorted(r.items())) for r in t.to_pylist()), key=repr)


@pytest.mark.parametrize("query", ["q0", "q5", "q7", "q8"])
@pytest.mark.parametrize("instances", [2, 3])
def test_nexmark_on_the_cluster_equals_the_single_node_run(three: Cluster, query: str,
                                                            instances: int) -> None:
    single = QUERIES[query](st.StreamEnv().nexmark(EVENTS)).collect()
    env = _env(three, instances=instances)
    out = QUERIES[query](env.nexmark(EVENTS)).collect()
    assert out.num_rows == single.num_rows > 0
    assert _rows(out) == _rows(single)
    info = env.cluster_info
    assert info["state"] == "finished" and info["instances"] == instances
    # every instance ran in a task of its own, on the three workers
    assert len({t["worker"] for t in info["tasks"]}) == min(instances, 3)
    assert env.last_result is not None and env.last_result.late_events == 0


def _record_pid(key: Any, batch: pa.RecordBatch, ctx: Any) -> pa.RecordBatch:
    n = batch.num_rows
    return pa.record_batch({"k": pa.array([key] * n, pa.int64()),
                            "pid": pa.array([os.getpid()] * n, pa.int64())})


def test_all_rows_of_a_key_reach_one_instance(three: Cluster) -> None:
    env = _env(three, instances=3)
    data = [{"k": i % 50, "t": i} for i in range(6000)]
    # four source partitions, dealt over the three instances: each key comes from several
    out = (env.from_collection(data, timestamp="t", partitions=4, batch_size=100)
           .key_by("k").process(_record_pid).collect())
    assert out.num_rows == len(data)
    pids: dict[int, set[int]] = {}
    for r in out.to_pylist():
        pids.setdefault(r["k"], set()).add(r["pid"])
    assert all(len(p) == 1 for p in pids.values()), pids
    assert len(set().union(*pids.values())) == 3  # the keys are spread over the instances
    assert os.getpid() not in set().union(*pids.values())  # (none ran in this process)


def _explode(batch: pa.RecordBatch) -> pa.RecordBatch:
    if pc.any(pc.equal(batch.column("k"), 7)).as_py():
        raise ValueError("boom on key 7")
    return batch


def test_a_failing_task_fails_the_pipeline_with_its_error(three: Cluster) -> None:
    env = _env(three, instances=2)
    data = [{"k": i % 10, "t": i} for i in range(1000)]
    stream = env.from_collection(data, timestamp="t", partitions=2, batch_size=100).key_by(
        "k").window(st.tumbling("1s")).agg(n=st.count()).map(_explode)
    with pytest.raises(PipelineFailedError, match="boom on key 7") as info:
        stream.collect()
    assert "instance" in str(info.value)
    assert env.cluster_info["state"] == "failed"
    # the cluster runs the next pipeline as before
    ok = _env(three, instances=2).from_collection(data, timestamp="t").key_by("k").window(
        st.tumbling("1s")).agg(n=st.count()).collect()
    assert sum(ok.column("n").to_pylist()) == len(data)


def test_cluster_settings_are_checked() -> None:
    with pytest.raises(ConfigError, match="HOST:PORT"):
        st.StreamEnv(cluster="nowhere")
    with pytest.raises(ConfigError, match="max_restarts"):
        st.StreamEnv(cluster="127.0.0.1:1", max_restarts=-1)
    with pytest.raises(ConfigError, match="instances"):
        st.StreamEnv(instances=2)
    with pytest.raises(ConfigError, match="key_groups"):
        st.StreamEnv(cluster="127.0.0.1:1", key_groups=0)


def test_an_unbounded_collect_on_the_cluster_is_refused(three: Cluster) -> None:
    env = _env(three)

    async def first() -> None:
        async for _ in env.nexmark(None).bids.collect():
            break

    with pytest.raises(ConfigError, match="unbounded"):
        asyncio.run(first())


def test_no_worker_alive_is_a_clear_error(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    with _cluster(tmp_path, monkeypatch, 0) as (c, _workers), \
            pytest.raises(Exception, match="no worker is alive"):
        _env(c).from_collection([{"a": 1}]).collect()


def _kill_when(c: Cluster, node: Any, cond: Any, timeout: float = 60.0,
               how: str = "kill") -> threading.Thread:
    def run() -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                if cond():
                    node.kill() if how == "kill" else node.terminate()
                    return
            except Exception:  # noqa: BLE001, S110 - the coordinator may be busy; ask again
                pass
            time.sleep(0.05)

    t = threading.Thread(target=run, daemon=True)
    t.start()
    return t


def _pipelines(c: Cluster) -> list[dict[str, Any]]:
    return c.http("/pipelines")["pipelines"]


def _committed(c: Cluster) -> bool:
    running = [p for p in _pipelines(c) if p["state"] == "running"]
    return bool(running) and (running[0]["checkpoints"] or {}).get("committed", 0) >= 2


@pytest.mark.parametrize(("query", "how"), [("q5", "kill"), ("q8", "kill"), ("q5", "term")])
def test_a_worker_killed_mid_stream_loses_nothing(tmp_path: Path, query: str, how: str,
                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    """SIGKILL, or SIGTERM as a rollout replacing the worker's pod sends it."""
    with _cluster(tmp_path, monkeypatch, 3) as (c, workers):
        events = 200_000
        single = QUERIES[query](st.StreamEnv().nexmark(events)).collect()
        env = _env(c, instances=3, state_dir=str(tmp_path / "state"),
                   checkpoint_interval="200ms")
        # paced, so that the kill comes mid-stream, after a few committed checkpoints
        killer = _kill_when(c, workers[1], lambda: _committed(c), how=how)
        out = QUERIES[query](env.nexmark(events, rate=40_000, batch_size=4096)).collect()
        killer.join(30)
        info = env.cluster_info
        assert workers[1].proc.poll() is not None, "the worker was not killed mid-stream"
        assert info["restarts"] == 1 and info["attempt"] == 1, info
        assert info["checkpoints"]["committed"] >= 2
        # the run after the restart went on on the two workers left
        assert len({t["worker"] for t in info["tasks"]}) == 2
        assert _rows(out) == _rows(single)


def _post(c: Cluster, path: str, body: dict[str, Any]) -> tuple[int, Any]:
    import json
    import urllib.error
    import urllib.request

    req = urllib.request.Request(f"http://127.0.0.1:{c.port}{path}", json.dumps(body).encode(),
                                 {"Content-Type": "application/json"}, method="POST")
    try:
        with urllib.request.urlopen(req, timeout=10) as r:
            return r.status, json.loads(r.read())
    except urllib.error.HTTPError as err:
        return err.code, json.loads(err.read())


def _wait_state(c: Cluster, state: str, timeout: float = 30.0) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        found = [p for p in _pipelines(c) if p["state"] == state]
        if found:
            return found[0]
        time.sleep(0.05)
    raise AssertionError(f"no pipeline {state} within {timeout} s: {_pipelines(c)}")


@pytest.mark.parametrize(("query", "before", "after"), [("q5", 2, 3), ("q8", 3, 1)])
def test_stop_with_a_savepoint_and_resume_on_another_number_of_instances(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, query: str, before: int,
        after: int) -> None:
    with _cluster(tmp_path, monkeypatch, 3) as (c, _workers):
        events = 200_000
        single = QUERIES[query](st.StreamEnv().nexmark(events)).collect()
        env = _env(c, instances=before, state_dir=str(tmp_path / "state"))
        got: dict[str, Any] = {}

        def client() -> None:
            try:
                got["out"] = QUERIES[query](env.nexmark(events, rate=40_000,
                                                        batch_size=4096)).collect()
            except BaseException as exc:  # noqa: BLE001 - asserted below
                got["error"] = exc

        t = threading.Thread(target=client, daemon=True)
        t.start()
        running = _wait_state(c, "running")
        pid = running["pipeline_id"]
        time.sleep(1.5)  # (mid-stream: the paced source takes about 5 s)
        status, reply = _post(c, f"/pipeline/{pid}/stop", {"savepoint": True})
        assert status == 200, reply
        stopped = _wait_state(c, "stopped")
        savepoint = stopped["savepoint"]
        assert savepoint["epoch"] >= 1 and savepoint["instances"] == before
        assert not stopped["tasks"] and "out" not in got  # the client waits meanwhile
        status, reply = _post(c, f"/pipeline/{pid}/resume", {"instances": after})
        assert status == 200, reply
        t.join(120)
        assert "error" not in got, got.get("error")
        assert _rows(got["out"]) == _rows(single)
        info = env.cluster_info
        assert info["state"] == "finished" and info["instances"] == after
        assert len(info["tasks"]) == after
        # a finished pipeline cannot be resumed; an unknown one is not found
        assert _post(c, f"/pipeline/{pid}/resume", {})[0] == 409
        assert _post(c, "/pipeline/nope/stop", {})[0] == 404


def test_kafka_partitions_are_split_across_the_instances(three: Cluster, kafka_broker: Any,
                                                          kafka_topic: Any) -> None:
    import json

    from sabot_test_kafka import produce

    topic = kafka_topic(partitions=4)
    for p in range(4):
        produce(kafka_broker.bootstrap_servers, topic,
                [json.dumps({"k": (i * 7 + p) % 13, "t": 1_000 * i + p, "p": p}).encode()
                 for i in range(150)], partition=p)

    def pipeline(env: st.StreamEnv) -> Any:
        s = env.from_kafka(topic, bootstrap_servers=kafka_broker.bootstrap_servers,
                           until="end", timestamp="t",
                           watermark=st.bounded_out_of_orderness("1s"))
        return s.key_by("k").window(st.tumbling("20s")).agg(n=st.count(), ps=st.max("p"))

    single = pipeline(st.StreamEnv()).collect()
    env = _env(three, instances=3)
    out = pipeline(env).collect()
    assert _rows(out) == _rows(single) and sum(out.column("n").to_pylist()) == 600
    # each partition was read by one instance only (3 instances, 4 partitions: 2, 1, 1)
    seen = [sorted((t["stats"]["sources"][0]["lag"] or {}).keys()) for t in
            env.cluster_info["tasks"]]
    assert sorted(len(s) for s in seen) == [1, 1, 2], seen
    assert len({p for s in seen for p in s}) == 4
    assert env.last_result is not None and env.last_result.events == 600


@pytest.mark.slow
def test_workers_killed_again_and_again_and_replaced_lose_nothing(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The long form: four SIGKILLs of the worker running instance 0, each followed by a
    replacement worker joining; the output is still the single-node run's."""
    with _cluster(tmp_path, monkeypatch, 3) as (c, workers):
        events = 600_000
        single = QUERIES["q5"](st.StreamEnv().nexmark(events)).collect()
        env = _env(c, instances=3, state_dir=str(tmp_path / "state"),
                   checkpoint_interval="300ms", max_restarts=10)
        kills = 4

        def chaos() -> None:
            seen = 0
            while seen < kills:
                time.sleep(0.05)
                try:
                    ps = _pipelines(c)
                except Exception:  # noqa: BLE001, S112 - the coordinator may be busy; ask again
                    continue
                p = ps[0] if ps else None
                if p is None or p["state"] != "running" or p["attempt"] != seen or \
                        (p["checkpoints"] or {}).get("committed", 0) < 1:
                    continue
                worker = p["tasks"][0]["worker"]
                victim = next((w for w in workers if w.proc.poll() is None and
                               any(worker in line for line in w.lines)), None)
                if victim is None:
                    continue
                victim.kill()
                workers.append(c.start_worker(wait=False))  # the replacement
                seen += 1

        killer = threading.Thread(target=chaos, daemon=True)
        killer.start()
        out = QUERIES["q5"](env.nexmark(events, rate=60_000, batch_size=4096)).collect()
        killer.join(5)
        info = env.cluster_info
        assert info["restarts"] == kills, info
        assert _rows(out) == _rows(single)


def test_files_written_by_a_pipeline_whose_worker_is_killed_hold_each_row_once(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import pyarrow.parquet as pq

    with _cluster(tmp_path, monkeypatch, 2) as (c, workers):
        events = 200_000
        single = QUERIES["q5"](st.StreamEnv().nexmark(events)).collect()
        out_dir = tmp_path / "out"
        env = _env(c, instances=2, state_dir=str(tmp_path / "state"),
                   checkpoint_interval="200ms")
        QUERIES["q5"](env.nexmark(events, rate=40_000, batch_size=4096)).to_files(
            str(out_dir), format="parquet", roll_every=200)
        killer = _kill_when(c, workers[0], lambda: _committed(c))
        env.execute("q5-files")
        killer.join(30)
        assert workers[0].proc.poll() is not None
        assert env.cluster_info["restarts"] == 1
        files = sorted(out_dir.glob("part-*.parquet"))
        # each instance wrote files of its own names; none is left half-written
        assert {f.name[:9] for f in files} == {"part-i000", "part-i001"}
        assert not list(out_dir.glob(".*inprogress"))
        got = pa.concat_tables([pq.read_table(f) for f in files])
        assert _rows(got) == _rows(single.select(got.column_names))
