"""The same-host data plane (the spool), on real processes over loopback.

The workers here share the coordinator's data dir, as the README's three terminals do (one
default ``~/.sabot/data``), and the Python client is given it too; big morsels and results then
travel as files in ``<data dir>/spool`` and the messages carry references (sabot.cluster.spool):

* bytes as files: a job's inputs and results pass through the spool, the results are right, and
  they survive every worker being SIGKILLed before the client fetched them; the job's spool
  directory is gone once it is over;
* a worker that does not share the spool (its own data dir) gets the bytes, read from the files
  by the coordinator;
* a client SIGKILLed in the middle of writing its inputs leaves no job; its files go once they
  are ``SABOT_SPOOL_ORPHAN_S`` old, and the same job id then submits and completes;
* an input file damaged after the submit fails its job with an error naming the file, whether a
  sharing worker or the coordinator finds it;
* a coordinator SIGKILLed with a spooled job unfinished resumes it from the files;
* chaos: sharing workers SIGKILLed and replaced during a spooled job (4 kills; 12 with
  ``-m slow``): every result exactly once, equal to a serial run.
"""

from __future__ import annotations

import asyncio
import random
import signal
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import sabot_test_nodes as nodes
from sabot.errors import JobFailedError

SETTINGS = {
    **nodes.CHAOS_SETTINGS,
    "SABOT_HEARTBEAT_S": "0.2",
    "SABOT_NODE_TIMEOUT_S": "2",
    "SABOT_SPOOL_ORPHAN_S": "2",
}


@pytest.fixture
def cluster(tmp_path: Path) -> Iterator[Any]:
    c = nodes.Cluster(tmp_path / "cluster", SETTINGS)
    c.start_coordinator()
    yield c
    c.stop()


def data_dir(cluster: Any) -> Path:
    return cluster.data_dir


def add_sharing_worker(cluster: Any, wait: bool = True) -> Any:
    return cluster.add_worker(wait=wait, SABOT_DATA_DIR=str(data_dir(cluster)))


def handle(cluster: Any) -> Any:
    return cluster.python_handle(cluster.data_dir)


def counters(cluster: Any) -> dict[str, Any]:
    return dict(cluster.coordinator.request("GET", "/stats").json["counters"])


def run(coro: Any) -> Any:
    return asyncio.run(coro)


async def fetch_after_killing(c: Any, jid: str, workers: list[Any]) -> list[str]:
    """Wait until job ``jid`` completed, SIGKILL ``workers``, then fetch its results."""
    deadline = time.monotonic() + 120
    while (await c.status(jid))["status"] != "completed":
        assert time.monotonic() < deadline
        await asyncio.sleep(0.05)
    for w in workers:
        w.kill()
    return list(await c.result(jid, timeout=60))


async def submit_and_wait(cluster: Any, items: list[str], processor: str, *,
                          job_id: str | None = None, timeout: float = 120) -> list[str]:
    c = handle(cluster)
    try:
        jid = await c.submit(items, processor, job_id=job_id)
        return list(await c.result(jid, timeout=timeout))
    finally:
        await c.stop()


def wait_gone(path: Path, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while path.exists():
        assert time.monotonic() < deadline, f"{path} still there: {sorted(path.iterdir())}"
        time.sleep(0.1)


def test_bytes_travel_as_files_and_results_outlive_the_workers(cluster: Any) -> None:
    procs = nodes.chaos_procs()
    for _ in range(2):
        add_sharing_worker(cluster, wait=False)
    cluster.wait_workers(2)
    # 1.8 MB in, 8 MB out: morsels and results of 64 KiB and more
    items = procs.make_big_items(8000, result_bytes=1000, pad=200)
    want = [procs.big_answer(x) for x in items]
    before = counters(cluster)
    assert run(submit_and_wait(cluster, items, "chaos_big")) == want
    after = counters(cluster)
    sent = after["spool_morsels_assigned"] - before["spool_morsels_assigned"]
    assert sent >= 16 and after["spool_morsels_sent_inline"] == 0, after
    assert after["spool_results"] > before["spool_results"], after
    nodes_info = cluster.coordinator.request("GET", "/stats").json["nodes"]
    assert all(n["spool"] for n in nodes_info if n["state"] == "alive"), nodes_info

    # A job done, its workers SIGKILLed before the client fetched anything: the results are
    # the coordinator's (moved into its result files), not the workers'.
    async def submit_then_fetch_later() -> tuple[str, list[str]]:
        c = handle(cluster)
        try:
            jid = await c.submit(items, "chaos_big")
            return jid, await fetch_after_killing(c, jid, cluster.workers)
        finally:
            await c.stop()

    jid, got = run(submit_then_fetch_later())
    assert got == want
    # The HTTP API reads the same files.
    assert cluster.coordinator.wait_job(jid, timeout=30)["result"] == got
    # The job's spool directory (its inputs) went with its end.
    wait_gone(data_dir(cluster) / "spool" / f"j-{jid}")
    nodes.record("spooled job, every worker SIGKILLed before the fetch", variant="ci", jobs=2,
                 kills=2,
                 results_checked=2 * len(items), lost=0, duplicated=0,
                 spool_morsels_assigned=sent,
                 spool_results=after["spool_results"] - before["spool_results"])


def _io(proc: Any) -> tuple[int, int]:
    """(bytes read, bytes written) by ``proc``'s read/write calls (Linux /proc/<pid>/io)."""
    io = proc.io_counters()
    return io.read_chars, io.write_chars


class _PoolIO:
    """The read/write bytes of a node's pool processes over a stretch of time, sampled every
    20 ms: a process the pool lets go of meanwhile (it grows and shrinks with the load) keeps
    what it did until its last sample."""

    def __init__(self, node: Any) -> None:
        import psutil
        self._psutil = psutil
        self._node = node
        self._first: dict[int, tuple[int, int]] = {}
        self._last: dict[int, tuple[int, int]] = {}
        self._stop = threading.Event()
        self._sample(first=True)
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _sample(self, first: bool = False) -> None:
        for kid in self._node.children(recursive=True):
            try:
                io = _io(kid)
            except self._psutil.Error:  # gone meanwhile
                continue
            if first:
                self._first[kid.pid] = io
            self._last[kid.pid] = io

    def _run(self) -> None:
        while not self._stop.wait(0.02):
            self._sample()

    def stop(self) -> tuple[int, int]:
        self._stop.set()
        self._thread.join()
        self._sample()
        read = sum(io[0] - self._first.get(pid, (0, 0))[0] for pid, io in self._last.items())
        written = sum(io[1] - self._first.get(pid, (0, 0))[1]
                      for pid, io in self._last.items())
        return read, written


def test_a_sharing_workers_pool_processes_read_and_write_the_files(cluster: Any) -> None:
    """The worker node moves references only: its pool processes read each morsel's file and
    write each big result's file themselves (before, every byte crossed the worker process
    four times: file, pipe down, pipe up, file)."""
    psutil = pytest.importorskip("psutil")
    procs = nodes.chaos_procs()
    worker = add_sharing_worker(cluster)
    # 1.8 MB in, 8 MB out: morsels and results of 64 KiB and more
    items = procs.make_big_items(8000, result_bytes=1000, pad=200)
    want = [procs.big_answer(x) for x in items]
    assert run(submit_and_wait(cluster, items, "chaos_big")) == want  # (the pool starts)
    node = psutil.Process(worker.proc.pid)
    node_before = _io(node)
    pools = _PoolIO(node)
    before = counters(cluster)
    assert run(submit_and_wait(cluster, items, "chaos_big")) == want
    kids_read, kids_written = pools.stop()
    node_read, node_written = (a - b for a, b in zip(_io(node), node_before))
    after = counters(cluster)
    assert after["spool_results"] - before["spool_results"] >= 16, after
    # the items' own bytes (the files hold them and a little framing): 1.7 MB in, 8 MB out
    in_bytes = sum(len(x) for x in items)
    out_bytes = sum(len(x) for x in want)
    assert node_read < in_bytes // 4 and node_written < in_bytes // 4, \
        (node_read, node_written)
    assert kids_read >= in_bytes and kids_written >= out_bytes, (kids_read, kids_written)


@pytest.fixture
def whole_cluster(tmp_path: Path) -> Iterator[Any]:
    """A cluster that runs morsels whole (SABOT_MORSEL_TARGET_S=0): a piece of a morsel is
    read by the worker node, which slices it, and on a loaded machine a cheap function's
    measured cost can be high enough to be cut into pieces."""
    c = nodes.Cluster(tmp_path / "cluster", {**SETTINGS, "SABOT_MORSEL_TARGET_S": "0"})
    c.start_coordinator()
    yield c
    c.stop()


@pytest.mark.parametrize("kind", ["numpy", "arrow"])
def test_a_batch_job_goes_file_to_file_in_the_pool_processes(whole_cluster: Any,
                                                             kind: str) -> None:
    """A ``sabot.batch`` function over a numpy array (an Arrow table): its pool processes map
    each morsel's file and decode the array (the batch) in place, and write the result's file
    themselves; the worker node moves references only (before, it read every input file, sent
    the data to a pool process and back, and wrote every result file itself)."""
    psutil = pytest.importorskip("psutil")
    import numpy as np
    import pyarrow as pa
    import sabot

    cluster = whole_cluster
    procs = nodes.chaos_procs()
    worker = add_sharing_worker(cluster)
    # 80 MB: ~64 morsels of 1.25 MB, above MAP_MIN_BYTES, so their files are mapped
    arr = np.arange(10_000_000, dtype=np.int64)
    if kind == "numpy":
        data, func, want = arr, sabot.batch(procs.affine_block), arr * 3 + 1
    else:
        data = pa.table({"x": arr})
        func = sabot.batch(procs.affine_record_batch)
        want = pa.table({"x": arr * 3 + 1})

    async def go() -> Any:
        c = handle(cluster)
        try:
            return await c.result(await c.submit(data, func), timeout=120)
        finally:
            await c.stop()

    def same(got: Any) -> bool:
        if kind == "numpy":
            return isinstance(got, np.ndarray) and got.dtype == np.int64 and \
                np.array_equal(got, want)
        return isinstance(got, pa.Table) and got.equals(want)

    assert same(run(go()))  # (the pool starts)
    node = psutil.Process(worker.proc.pid)
    node_before = _io(node)
    pools = _PoolIO(node)
    before = counters(cluster)
    out = run(go())
    kids_read, kids_written = pools.stop()
    node_read, node_written = (a - b for a, b in zip(_io(node), node_before))
    after = counters(cluster)
    assert same(out)
    morsels = after["spool_results"] - before["spool_results"]
    assert morsels >= 16, after
    assert node_read < arr.nbytes // 8 and node_written < arr.nbytes // 8, \
        (node_read, node_written)
    # the inputs are mapped, not read (read/write counters do not see a mapping's pages);
    # the results are written
    assert kids_read < arr.nbytes // 8, kids_read
    assert kids_written >= arr.nbytes, kids_written


def test_a_worker_without_the_data_port_gets_the_bytes(cluster: Any) -> None:
    """A worker that shares no data dir and does not use the data port (SABOT_SPOOL=0 on it:
    what an older setup with only the ZeroMQ port open gets) is sent the bytes, read from the
    files by the coordinator."""
    procs = nodes.chaos_procs()
    cluster.add_worker(SABOT_SPOOL="0")  # its own data dir, and no data port
    items = procs.make_items(20_000, pad=100)
    before = counters(cluster)
    assert run(submit_and_wait(cluster, items, "chaos_fast")) == [procs.answer(x) for x in items]
    after = counters(cluster)
    assert after["spool_morsels_sent_inline"] - before["spool_morsels_sent_inline"] >= 8, after
    assert after["spool_morsels_assigned"] == before["spool_morsels_assigned"], after
    assert after["spool_results"] == before["spool_results"], after


def test_peers_elsewhere_pass_the_bytes_through_the_data_port(whole_cluster: Any,
                                                              tmp_path: Path) -> None:
    """A client and two workers with data dirs of their own (other hosts, as far as the spool
    can tell): every big input and result goes through the coordinator's data port as the
    spool's files, none through its ZeroMQ port, and the results outlive the workers."""
    cluster = whole_cluster
    procs = nodes.chaos_procs()
    workers = [cluster.add_worker(wait=False) for _ in range(2)]
    cluster.wait_workers(2)
    # 4 MB in, 4 MB out, in 16 morsels of 250 items: 256 KB morsels and results (the data
    # port takes those of REMOTE_MIN_BYTES, 128 KiB, and more)
    items = procs.make_big_items(4000, result_bytes=1000, pad=1000)
    want = [procs.big_answer(x) for x in items]
    in_bytes, out_bytes = sum(map(len, items)), sum(map(len, want))
    before = counters(cluster)

    async def go() -> tuple[str, list[str]]:
        c = cluster.python_handle(tmp_path / "client-data")
        try:
            jid = await c.submit(items, "chaos_big", morsel_items=250)
            # every worker SIGKILLed before the client fetched anything: the results are on
            # the coordinator (put through the data port before they were reported)
            return jid, await fetch_after_killing(c, jid, workers)
        finally:
            await c.stop()

    jid, got = run(go())
    assert got == want
    after = counters(cluster)
    assert after["spool_morsels_assigned"] - before["spool_morsels_assigned"] >= 16, after
    assert after["spool_morsels_sent_inline"] == before["spool_morsels_sent_inline"], after
    assert after["spool_results"] - before["spool_results"] >= 16, after
    # in: the client's put and the workers' get; out: the workers' put and the client's get
    moved_in = after["data_port_bytes_in"] - before["data_port_bytes_in"]
    moved_out = after["data_port_bytes_out"] - before["data_port_bytes_out"]
    # (a result the coordinator keeps in memory, as one of a piece of a morsel, reaches the
    # client over its ZeroMQ port, as it does a client on the coordinator's host)
    assert moved_in >= in_bytes + out_bytes and moved_out >= in_bytes, \
        (moved_in, moved_out, in_bytes, out_bytes)
    control = after["bytes_received"] - before["bytes_received"]
    assert control < (in_bytes + out_bytes) // 20, (control, in_bytes, out_bytes)
    assert after["data_port_refused"] == before["data_port_refused"], after
    # the workers' local copies went as each morsel ended
    for w in workers:
        staging = Path(w.env["SABOT_DATA_DIR"]) / "staging"
        left = [p for p in staging.rglob("*") if p.is_file()] if staging.exists() else []
        assert left == [], left
    assert cluster.coordinator.wait_job(jid, timeout=30)["result"] == got
    nodes.record("peers elsewhere through the data port, every worker SIGKILLed before the "
                 "fetch", variant="ci", jobs=1, kills=2, results_checked=len(items), lost=0,
                 duplicated=0, data_port_bytes=moved_in + moved_out, control_bytes=control)


_DIE_MID_UPLOAD = r"""
import asyncio, os, signal, sys
import sabot
from sabot.cluster import spool
from sabot.config import load_config

real = spool.Spool.write
written = []

def write(self, path, data, *, sync, crc=None):
    written.append(path)
    if len(written) == 4:
        # half of the fourth file, then the client dies
        blob = b"".join(data) if isinstance(data, (list, tuple)) else bytes(data)
        with open(str(path) + ".tmp", "wb") as f:
            f.write(blob[: len(blob) // 2])
        os.kill(os.getpid(), signal.SIGKILL)
    return real(self, path, data, sync=sync, crc=crc)

spool.Spool.write = write
sys.path.append(sys.argv[4])
import sabot_chaos_procs as procs

config = load_config(env={}, cluster_key_file=sys.argv[2], data_dir=sys.argv[3])
c = sabot.create_distributed_coordinator("127.0.0.1", int(sys.argv[1]), config=config)
asyncio.run(c.submit(procs.make_items(20000, pad=100), "chaos_fast", job_id="upload-killed"))
print("submitted")
"""


def test_a_client_killed_mid_upload_leaves_no_job(cluster: Any) -> None:
    import subprocess
    import sys

    procs = nodes.chaos_procs()
    add_sharing_worker(cluster)
    child = subprocess.run(
        [sys.executable, "-c", _DIE_MID_UPLOAD, str(cluster.coordinator.http_port),
         str(cluster.key_file), str(data_dir(cluster)), str(nodes.CHAOS_PROCS_DIR)],
        check=False, capture_output=True, text=True, timeout=120, env=nodes.child_env())
    assert child.returncode == -signal.SIGKILL, child.stderr
    assert "submitted" not in child.stdout
    left = data_dir(cluster) / "spool" / "j-upload-killed"
    names = sorted(p.name for p in left.iterdir())
    assert [n.split(".", 1)[0] for n in names] == ["0", "1", "2", "3"], names
    assert [n.endswith(".in") for n in names] == [True, True, True, False], names
    assert names[3].endswith(".in.tmp"), names
    # No job: the submit never went out.
    assert cluster.coordinator.request("GET", "/job/upload-killed").status == 404
    # The files go once SABOT_SPOOL_ORPHAN_S (2 s here) old; the coordinator serves meanwhile.
    wait_gone(left)
    items = procs.make_items(20_000, pad=100)
    assert run(submit_and_wait(cluster, items, "chaos_fast", job_id="upload-killed")) == \
        [procs.answer(x) for x in items]
    nodes.record("client SIGKILLed mid-upload to the spool", variant="ci", jobs=1, kills=1,
                 results_checked=len(items), lost=0, duplicated=0, orphan_files_removed=1)


_DIE_MID_PUT = r"""
import asyncio, os, signal, sys
import sabot
from sabot.cluster import spool_client
from sabot.config import load_config

real = spool_client.SpoolClient.put
puts = []

def put(self, name, parts, size, crc):
    puts.append(name)
    if len(puts) == 4:
        os.kill(os.getpid(), signal.SIGKILL)  # the fourth file never reaches the port
    return real(self, name, parts, size, crc)

spool_client.SpoolClient.put = put
sys.path.append(sys.argv[4])
import sabot_chaos_procs as procs

config = load_config(env={}, cluster_key_file=sys.argv[2], data_dir=sys.argv[3])
c = sabot.create_distributed_coordinator("127.0.0.1", int(sys.argv[1]), config=config)
asyncio.run(c.submit(procs.make_items(20000, pad=100), "chaos_fast", job_id="put-killed",
                     morsel_items=2000))
print("submitted")
"""


def test_a_client_elsewhere_killed_mid_upload_leaves_no_job(cluster: Any,
                                                             tmp_path: Path) -> None:
    """A client with a data dir of its own SIGKILLed while it puts its inputs through the data
    port: no job, the files it put go once SABOT_SPOOL_ORPHAN_S old, and the same job id then
    submits and completes."""
    import subprocess
    import sys

    procs = nodes.chaos_procs()
    cluster.add_worker()
    child = subprocess.run(
        [sys.executable, "-c", _DIE_MID_PUT, str(cluster.coordinator.http_port),
         str(cluster.key_file), str(tmp_path / "client-data"), str(nodes.CHAOS_PROCS_DIR)],
        check=False, capture_output=True, text=True, timeout=120, env=nodes.child_env())
    assert child.returncode == -signal.SIGKILL, child.stderr
    assert "submitted" not in child.stdout
    left = data_dir(cluster) / "spool" / "j-put-killed"
    names = sorted(p.name for p in left.iterdir())
    assert [n.split(".", 1)[0] for n in names] == ["0", "1", "2"], names
    assert all(n.endswith(".in") for n in names), names
    assert cluster.coordinator.request("GET", "/job/put-killed").status == 404
    wait_gone(left)
    items = procs.make_items(20_000, pad=100)

    async def again() -> list[str]:
        c = cluster.python_handle(tmp_path / "client-data")
        try:
            return list(await c.result(await c.submit(items, "chaos_fast", job_id="put-killed",
                                                      morsel_items=2000), timeout=120))
        finally:
            await c.stop()

    before = counters(cluster)
    assert run(again()) == [procs.answer(x) for x in items]
    assert counters(cluster)["data_port_bytes_in"] > before["data_port_bytes_in"]
    nodes.record("client elsewhere SIGKILLed mid-upload to the data port", variant="ci",
                 jobs=1, kills=1, results_checked=len(items), lost=0, duplicated=0)


@pytest.mark.parametrize("sharing", [True, False], ids=["sharing-worker", "coordinator-reads"])
def test_a_damaged_input_file_fails_its_job_naming_it(cluster: Any, sharing: bool) -> None:
    procs = nodes.chaos_procs()
    items = procs.make_items(20_000, pad=100)

    async def go() -> str:
        c = handle(cluster)
        try:
            jid = await c.submit(items, "chaos_fast")  # no worker yet: nothing runs
            path, = (data_dir(cluster) / "spool" / f"j-{jid}").glob("3.*.in")
            raw = bytearray(path.read_bytes())
            raw[len(raw) // 2] ^= 0xFF
            path.write_bytes(bytes(raw))
            if sharing:
                add_sharing_worker(cluster)
            else:
                cluster.add_worker()
            with pytest.raises(JobFailedError) as err:
                await c.result(jid, timeout=120)
            return str(err.value)
        finally:
            await c.stop()

    error = run(go())
    assert "/3." in error and ".in is damaged" in error and "CRC-32" in error, error
    assert "morsel 3" in error, error


def test_a_spooled_job_resumes_after_a_coordinator_sigkill(cluster: Any) -> None:
    procs = nodes.chaos_procs()
    items = procs.make_items(20_000, pad=100)

    async def go() -> list[str]:
        c = handle(cluster)
        try:
            jid = await c.submit(items, "chaos_fast")
            cluster.coordinator.kill()
            cluster.restart_coordinator()
            add_sharing_worker(cluster)
            return list(await c.result(jid, timeout=120))
        finally:
            await c.stop()

    assert run(go()) == [procs.answer(x) for x in items]


def _chaos(cluster: Any, kills: int, items_n: int, variant: str) -> None:
    procs = nodes.chaos_procs()
    for _ in range(3):
        add_sharing_worker(cluster, wait=False)
    cluster.wait_workers(3)
    # ~2 ms per item, morsels of ~100 items (0.2 s: they run whole) and results of 32 KiB or
    # more: a job of several seconds
    items = procs.make_big_items(items_n, result_bytes=400, pad=600)
    done = threading.Event()
    killed = []

    def killer() -> None:
        rng = random.Random(7)
        while len(killed) < kills and not done.wait(rng.uniform(0.4, 0.9)):
            alive = [w for w in cluster.workers if w.running()]
            if not alive:
                continue
            victim = rng.choice(alive)
            victim.kill()
            killed.append(victim.name)
            add_sharing_worker(cluster, wait=False)

    t = threading.Thread(target=killer, daemon=True)
    t.start()
    try:
        got = run(submit_and_wait(cluster, items, "chaos_big_ms", timeout=600))
    finally:
        done.set()
        t.join(10)
    want = [procs.big_answer(x) for x in items]
    lost = sum(1 for x in want if x not in set(got))
    assert len(got) == len(want) and got == want, (len(got), lost)
    c = counters(cluster)
    assert c["spool_results"] > 0 and c["spool_morsels_sent_inline"] == 0, c
    nodes.record("worker kill -9 chaos, spooled job", variant=variant, jobs=1, kills=len(killed),
                 results_checked=len(items), lost=0, duplicated=0, wrong=0,
                 spool_results=c["spool_results"],
                 morsels_requeued_node_lost=c["morsels_requeued_node_lost"])


def test_sharing_workers_killed_during_a_spooled_job(cluster: Any) -> None:
    _chaos(cluster, kills=4, items_n=4000, variant="ci")


@pytest.mark.slow
def test_sharing_workers_killed_during_a_spooled_job_12_kills(cluster: Any) -> None:
    _chaos(cluster, kills=12, items_n=15_000, variant="slow")
