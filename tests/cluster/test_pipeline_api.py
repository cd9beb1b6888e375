"""Pipelines through the HTTP API and sabot-node: registered pipelines (POST /submit_pipeline),
listing, stopping and results; ``sabot-node run`` of a pipeline file."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import sabot.stream as st
from sabot.stream.nexmark.queries import QUERIES

from .conftest import PYTHON_DIR, Cluster

PROCS = Path(__file__).resolve().parent / "procs"


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    c = Cluster(tmp_path_factory.mktemp("pipeline-api"),
                PYTHONPATH=os.pathsep.join([str(PYTHON_DIR), str(PROCS),
                                            os.environ.get("PYTHONPATH", "")]),
                SABOT_PROCESSORS="sabot_test_pipelines")
    try:
        c.start_coordinator()
        for _ in range(2):
            c.start_worker(wait=False)
        c.wait_workers(2)
        yield c
    finally:
        c.close()


def _call(c: Cluster, method: str, path: str, body: Any = None) -> tuple[int, Any]:
    data = None if body is None else json.dumps(body).encode()
    req = urllib.request.Request(f"http://127.0.0.1:{c.port}{path}", data,
                                 {"Content-Type": "application/json"}, method=method)
    try:
        with urllib.request.urlopen(req, timeout=30) as r:
            return r.status, json.loads(r.read())
    except urllib.error.HTTPError as err:
        return err.code, json.loads(err.read())


def _wait(c: Cluster, pid: str, states: tuple[str, ...], timeout: float = 60) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        status, p = _call(c, "GET", f"/pipeline/{pid}")
        assert status == 200, p
        if p["state"] in states:
            return p
        time.sleep(0.05)
    raise AssertionError(f"pipeline {pid} not {states} in {timeout} s: {p}")


def _rows(rows: list[dict[str, Any]]) -> list[Any]:
    return sorted(json.dumps(r, sort_keys=True, default=str) for r in rows)


def _as_json(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Rows as the HTTP API writes them (times in ISO 8601)."""
    return json.loads(json.dumps(rows, default=lambda v: v.isoformat()))


def test_a_registered_pipeline_runs_on_the_workers_and_its_rows_come_back(cluster: Cluster
                                                                          ) -> None:
    status, accepted = _call(cluster, "POST", "/submit_pipeline",
                             {"pipeline": "nexmark", "params": {"query": "q8", "events": 60_000},
                              "instances": 2})
    assert status == 200, accepted
    pid = accepted["pipeline_id"]
    done = _wait(cluster, pid, ("finished", "failed"))
    assert done["state"] == "finished", done
    assert {t["worker"] for t in done["tasks"]} and len(done["tasks"]) == 2
    status, results = _call(cluster, "GET", f"/pipeline/{pid}/results")
    assert status == 200
    single = QUERIES["q8"](st.StreamEnv().nexmark(60_000, batch_size=4096)).collect()
    assert _rows(results["rows"]) == _rows(_as_json(single.to_pylist()))
    listed = {p["pipeline_id"]: p for p in _call(cluster, "GET", "/pipelines")[1]["pipelines"]}
    assert listed[pid]["state"] == "finished"
    assert listed[pid]["events"] == sum(t["stats"]["events"] for t in listed[pid]["tasks"]) > 0
    # the status page lists it (rendered on the server)
    with urllib.request.urlopen(f"http://127.0.0.1:{cluster.port}/", timeout=10) as r:
        page = r.read().decode()
    row = page[page.index(f'data-pipeline-id="{pid}"'):]
    row = row[:row.index("</tr>")]
    assert "nexmark" in row and "status-finished" in row


def test_a_registered_pipelines_own_functions_run_on_the_workers(cluster: Cluster) -> None:
    status, accepted = _call(cluster, "POST", "/submit_pipeline",
                             {"pipeline": "tagged-bids", "params": {"events": 20_000}})
    assert status == 200, accepted
    done = _wait(cluster, accepted["pipeline_id"], ("finished", "failed"))
    assert done["state"] == "finished", done
    rows = _call(cluster, "GET", f"/pipeline/{accepted['pipeline_id']}/results")[1]["rows"]
    assert rows and all(r["big"] == (r["price"] > 1_000_000) for r in rows)


@pytest.mark.parametrize(("body", "status", "text"), [
    ({"pipeline": "nope"}, 404, "registered: nexmark, tagged-bids"),
    ({"pipeline": "nexmark", "params": {"colour": 1}}, 400, "parameters"),
    ({"pipeline": "nexmark", "instances": 0}, 400, "instances"),
    ({"pipeline": "nexmark", "params": [1]}, 400, "params"),
    ({"params": {}}, 400, "pipeline"),
    ({"pipeline": "nexmark", "pipeline_id": "a b"}, 400, "pipeline_id"),
])
def test_bad_pipeline_requests_are_refused_with_the_reason(cluster: Cluster, body: Any,
                                                           status: int, text: str) -> None:
    got, reply = _call(cluster, "POST", "/submit_pipeline", body)
    assert got == status and text in reply["error"], reply


def _cli(cluster: Cluster, *args: str, cwd: Path | None = None) -> subprocess.CompletedProcess:
    env = cluster.env()
    return subprocess.run([sys.executable, "-m", "sabot.cli", *args, "--coordinator",
                           f"127.0.0.1:{cluster.port}"], env=env, capture_output=True,
                          text=True, timeout=120, cwd=cwd, check=False)


def test_sabot_node_lists_and_stops_pipelines(cluster: Cluster) -> None:
    status, accepted = _call(cluster, "POST", "/submit_pipeline",
                             {"pipeline": "nexmark",
                              "params": {"query": "q0", "events": 2_000_000, "rate": 20_000}})
    assert status == 200, accepted
    pid = accepted["pipeline_id"]
    _wait(cluster, pid, ("running",))
    # while it runs, its figures come in from the tasks: in /pipeline/{id} and the metrics
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        live = _call(cluster, "GET", f"/pipeline/{pid}")[1]
        if live["events"] > 0 and live["watermark"] is not None and live["events_per_s"] > 0:
            break
        time.sleep(0.1)
    assert live["events"] > 0 and live["watermark"] is not None, live
    assert live["events_per_s"] > 0, live
    ops = {o["name"]: o for o in live["operators"]}
    assert any(name.startswith("nexmark.bids") and o["records_out"] > 0
               for name, o in ops.items()), ops
    with urllib.request.urlopen(f"http://127.0.0.1:{cluster.port}/metrics", timeout=10) as r:
        text = r.read().decode()
    mine = [line for line in text.splitlines()
            if line.startswith("sabot_pipeline_") and pid in line]
    assert any(line.startswith("sabot_pipeline_operator_records_out") and
               float(line.rsplit(" ", 1)[1]) > 0 for line in mine), mine
    assert any(line.startswith("sabot_pipeline_watermark_lag_seconds") for line in mine), mine
    listed = _cli(cluster, "pipelines")
    assert listed.returncode == 0, listed.stderr
    assert pid in listed.stdout and "running" in listed.stdout
    # no checkpoints: a savepoint is refused with the reason, stopping without one works
    refused = _cli(cluster, "pipelines", "stop", pid)
    assert refused.returncode != 0 and "state_dir" in refused.stderr
    stopped = _cli(cluster, "pipelines", "stop", pid, "--no-savepoint")
    assert stopped.returncode == 0, stopped.stderr
    assert _wait(cluster, pid, ("cancelled",))["state"] == "cancelled"
    missing = _cli(cluster, "pipelines", "resume", "no-such-pipeline")
    assert missing.returncode != 0 and "no pipeline" in missing.stderr


PIPELINE_FILE = '''
import pyarrow.compute as pc
from sabot import stream as st


def only_big(batch):
    return batch.filter(pc.greater(batch.column("price"), 5_000_000))


def pipeline(env):
    bids = env.nexmark(40_000).bids.select("auction", "price", "date_time").map(only_big)
    return bids.key_by("auction").window(st.tumbling("10s")).agg(n=st.count())
'''


def test_sabot_node_run_runs_a_pipeline_file_on_the_cluster(cluster: Cluster,
                                                            tmp_path: Path) -> None:
    path = tmp_path / "my_pipeline.py"
    path.write_text(PIPELINE_FILE)
    done = _cli(cluster, "run", str(path), "--instances", "2", cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    got = [json.loads(line) for line in done.stdout.splitlines()]
    ns: dict[str, Any] = {}
    exec(PIPELINE_FILE, ns)  # noqa: S102 - the same pipeline, on one node
    single = ns["pipeline"](st.StreamEnv()).collect()
    assert _rows(got) == _rows(_as_json(single.to_pylist()))
    assert "finished on 2 instance(s)" in done.stderr
    bad = tmp_path / "nothing.py"
    bad.write_text("x = 1\n")
    refused = _cli(cluster, "run", str(bad))
    assert refused.returncode != 0 and "pipeline(env)" in refused.stderr
