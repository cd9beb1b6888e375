"""``sabot-node`` end to end: the daemon and every subcommand, as real subprocesses."""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import stat
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pyarrow as pa
import pyarrow.csv as pcsv
import pyarrow.parquet as pq
import pytest
from zmq.utils import z85

REPO = Path(__file__).resolve().parents[1]
SCRIPT = shutil.which("sabot-node")
CLI = [SCRIPT] if SCRIPT else [sys.executable, "-m", "sabot.cli"]
_SETTINGS = ("SABOT_", "COORDINATOR_", "CLUSTER_NAME", "MAX_WORKERS", "MORSEL_SIZE_KB",
             "TARGET_UTILIZATION", "LOG_LEVEL")


def env(tmp: Path, **extra: str) -> dict[str, str]:
    """The runner's environment without Sabot settings, plus ``extra``."""
    out = {k: v for k, v in os.environ.items() if not k.startswith(_SETTINGS)}
    out["PYTHONPATH"] = os.pathsep.join(
        [str(REPO / "python")] + [p for p in os.environ.get("PYTHONPATH", "").split(os.pathsep)
                                  if p])
    out.update(SABOT_DATA_DIR=str(tmp / "data"), SABOT_CLUSTER_KEY_FILE=str(tmp / "key"),
               MAX_WORKERS="2")
    out.update(extra)
    return out


def cli(*args: str, tmp: Path, stdin: str | None = None, timeout: float = 120,
        **extra: str) -> subprocess.CompletedProcess:
    return subprocess.run([*CLI, *args], input=stdin, capture_output=True, text=True,
                          timeout=timeout, env=env(tmp, **extra), cwd=tmp)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def one_line_error(proc: subprocess.CompletedProcess, code: int, *needles: str) -> None:
    assert proc.returncode == code, (proc.returncode, proc.stdout, proc.stderr)
    assert "Traceback" not in proc.stderr, proc.stderr
    lines = [line for line in proc.stderr.splitlines() if line.strip()]
    assert lines and lines[-1].startswith("sabot-node: "), proc.stderr
    for needle in needles:
        assert needle in lines[-1], (needle, lines[-1])


class Daemon:
    def __init__(self, tmp: Path, *args: str, **extra: str) -> None:
        self.tmp = tmp
        self.port = free_port()
        self.address = f"127.0.0.1:{self.port}"
        self.log = open(tmp / f"daemon-{self.port}.log", "w+")
        self.proc = subprocess.Popen(
            [*CLI, "--mode", "single-node", "--host", "127.0.0.1", "--port", str(self.port),
             "--log-level", "INFO", *args],
            stdout=self.log, stderr=subprocess.STDOUT, env=env(tmp, **extra), cwd=tmp)
        deadline = time.monotonic() + 60
        while True:
            try:
                with urllib.request.urlopen(f"http://{self.address}/ready", timeout=2) as r:
                    if r.status == 200:
                        break
            except OSError:
                pass
            if self.proc.poll() is not None or time.monotonic() > deadline:
                self.log.seek(0)
                raise AssertionError(f"daemon did not become ready:\n{self.log.read()}")
            time.sleep(0.1)

    def stop(self) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)
        self.log.close()
        return self.proc.returncode


@pytest.fixture(scope="module")
def tmp(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("cli")
    (path / "data").mkdir()
    return path


@pytest.fixture(scope="module")
def daemon(tmp: Path):
    node = Daemon(tmp)
    yield node
    assert node.stop() == 0  # SIGTERM drains and exits 0


def test_help_explains_everything(tmp: Path) -> None:
    out = cli("--help", tmp=tmp)
    assert out.returncode == 0
    for word in ("submit", "status", "demo", "keygen", "--mode", "--coordinator", "--log-level",
                 "SABOT_MODE", "COORDINATOR_HOST"):
        assert word in out.stdout, word
    sub = cli("submit", "--help", tmp=tmp)
    assert sub.returncode == 0 and "--processor" in sub.stdout and "Parquet" in sub.stdout


def test_submit_inline_with_progress(daemon: Daemon, tmp: Path) -> None:
    out = cli("submit", "--coordinator", daemon.address, "--processor", "square",
              "--data", "[1,2,3,4,5]", tmp=tmp)
    assert out.returncode == 0, out.stderr
    assert json.loads(out.stdout) == [1, 4, 9, 16, 25]
    assert "5/5" in out.stderr  # the progress bar reached the end


def test_submit_reads_coordinator_from_environment(daemon: Daemon, tmp: Path) -> None:
    out = cli("submit", "-p", "double", "--data", "[7]", "--no-progress", tmp=tmp,
              COORDINATOR_HOST="127.0.0.1", COORDINATOR_PORT=str(daemon.port))
    assert out.returncode == 0 and json.loads(out.stdout) == [14] and out.stderr == ""


def test_submit_from_files_and_to_files(daemon: Daemon, tmp: Path) -> None:
    (tmp / "in.jsonl").write_text("1\n2\n\n3\n")
    pcsv.write_csv(pa.table({"a": [1, 2], "b": [3, 4]}), tmp / "in.csv")
    pq.write_table(pa.table({"v": [5, 6]}), tmp / "in.parquet")
    with pa.OSFile(str(tmp / "in.arrow"), "wb") as f, pa.ipc.new_file(
            f, pa.schema([("x", pa.int64())])) as w:
        w.write_table(pa.table({"x": [8]}))
    base = ("submit", "--coordinator", daemon.address, "-p", "square", "--no-progress")
    out = cli(*base, "--file", "in.jsonl", tmp=tmp)
    assert json.loads(out.stdout) == [1, 4, 9]
    out = cli(*base, "--file", "in.csv", "--column", "b", "-o", "out.jsonl", tmp=tmp)
    assert out.returncode == 0 and (tmp / "out.jsonl").read_text() == "9\n16\n"
    out = cli(*base, "--file", "in.parquet", "-o", "out.parquet", tmp=tmp)
    assert pq.read_table(tmp / "out.parquet").column("result").to_pylist() == [25, 36]
    out = cli(*base, "--file", "in.arrow", tmp=tmp)
    assert json.loads(out.stdout) == [64]
    out = cli(*base, "--file", "-", tmp=tmp, stdin="10\n11\n")
    assert json.loads(out.stdout) == [100, 121]
    one_line_error(cli(*base, "--file", "in.csv", tmp=tmp), 1, "2 columns", "--column")
    one_line_error(cli(*base, "--file", "missing.parquet", tmp=tmp), 1, "no such file")
    one_line_error(cli(*base, "--file", "in.txt", tmp=tmp), 1, "--format")


def test_submit_node_file(daemon: Daemon, tmp: Path) -> None:
    pq.write_table(pa.table({"v": [2, 3]}), tmp / "data" / "on-node.parquet")
    out = cli("submit", "--coordinator", daemon.address, "-p", "square", "--no-progress",
              "--node-file", "on-node.parquet", tmp=tmp)
    assert out.returncode == 0 and json.loads(out.stdout) == [4, 9]
    out = cli("submit", "--coordinator", daemon.address, "-p", "square",
              "--node-file", "../key", tmp=tmp)
    one_line_error(out, 1, "outside SABOT_DATA_DIR")


def test_submit_errors_are_one_line(daemon: Daemon, tmp: Path) -> None:
    base = ("submit", "--coordinator", daemon.address, "--no-progress")
    one_line_error(cli(*base, "-p", "cube", "--data", "[1]", tmp=tmp), 1,
                   "unknown processor 'cube'", "square")
    one_line_error(cli(*base, "-p", "len", "--data", "[1, 2]", tmp=tmp), 1, "failed",
                   "TypeError")
    one_line_error(cli(*base, "-p", "square", "--data", "[1,", tmp=tmp), 1, "--data is not valid")
    one_line_error(cli(*base, "-p", "square", "--data", "{}", tmp=tmp), 1, "JSON array")
    refused = cli("submit", "--coordinator", f"127.0.0.1:{free_port()}", "-p", "square",
                  "--data", "[1]", tmp=tmp)
    one_line_error(refused, 1, "cannot reach a Sabot node")
    usage = cli("submit", "--coordinator", "nohostport", "-p", "square", "--data", "[1]",
                tmp=tmp)
    assert usage.returncode == 2 and "HOST:PORT" in usage.stderr


def test_no_wait_prints_the_job_id(daemon: Daemon, tmp: Path) -> None:
    out = cli("submit", "--coordinator", daemon.address, "-p", "square", "--data", "[3]",
              "--no-wait", tmp=tmp)
    job_id = out.stdout.strip()
    assert out.returncode == 0 and len(job_id) >= 16
    status = cli("status", "--coordinator", daemon.address, tmp=tmp)
    assert status.returncode == 0 and job_id in status.stdout


def test_status_tables_and_json(daemon: Daemon, tmp: Path) -> None:
    cli("submit", "--coordinator", daemon.address, "-p", "square", "--data", "[1]",
        "--no-progress", tmp=tmp)
    out = cli("status", "--coordinator", daemon.address, tmp=tmp)
    assert out.returncode == 0, out.stderr
    assert "NODE" in out.stdout and "JOB" in out.stdout and "alive" in out.stdout
    assert "completed" in out.stdout and "single-node" in out.stdout
    raw = json.loads(cli("status", "--coordinator", daemon.address, "--json", tmp=tmp).stdout)
    assert raw["nodes"][0]["status"] == "alive" and raw["jobs"]
    one_line_error(cli("status", "--coordinator", f"127.0.0.1:{free_port()}", tmp=tmp), 1,
                   "cannot reach")


def test_token_protected_node(tmp: Path) -> None:
    node = Daemon(tmp, SABOT_AUTH_TOKEN="cli-token")
    try:
        one_line_error(cli("status", "--coordinator", node.address, tmp=tmp), 1, "bearer token",
                       "--token")
        out = cli("submit", "--coordinator", node.address, "--token", "cli-token", "-p",
                  "square", "--data", "[6]", "--no-progress", tmp=tmp)
        assert json.loads(out.stdout) == [36]
        out = cli("status", "--coordinator", node.address, tmp=tmp, SABOT_AUTH_TOKEN="cli-token")
        assert out.returncode == 0
    finally:
        assert node.stop() == 0


def test_daemon_refuses_bad_settings(tmp: Path) -> None:
    one_line_error(cli(tmp=tmp, SABOT_PORT="eighty"), 2, "SABOT_PORT", "integer")
    one_line_error(cli("--port", "70000", tmp=tmp), 2, "SABOT_PORT")
    busy = socket.socket()
    busy.bind(("127.0.0.1", 0))
    busy.listen()
    try:
        out = cli("--mode", "single-node", "--host", "127.0.0.1", "--port",
                  str(busy.getsockname()[1]), tmp=tmp)
        assert out.returncode != 0 and "Traceback" not in out.stderr
    finally:
        busy.close()


def test_keygen(tmp: Path) -> None:
    out = cli("keygen", tmp=tmp)
    secret = out.stdout.strip()
    assert out.returncode == 0 and len(z85.decode(secret)) == 32
    assert cli("keygen", tmp=tmp).stdout.strip() != secret
    out = cli("keygen", "-o", "cluster.key", tmp=tmp)
    assert out.returncode == 0
    key = tmp / "cluster.key"
    assert stat.S_IMODE(key.stat().st_mode) == 0o600
    assert len(z85.decode(key.read_text().strip())) == 32
    one_line_error(cli("keygen", "-o", "cluster.key", tmp=tmp), 1, "exists")


def test_demo(tmp: Path) -> None:
    out = cli("demo", "--rows", "200000", "--items", "50000", tmp=tmp)
    assert out.returncode == 0, out.stderr
    assert "rows/s" in out.stdout and "items/s" in out.stdout
    assert "square" in out.stdout and "50,000" in out.stdout
    one_line_error(cli("demo", "--rows", "0", tmp=tmp), 1, "--rows")


def test_too_big_for_the_node_suggests_node_file(tmp: Path) -> None:
    node = Daemon(tmp, SABOT_MAX_REQUEST_MB="0.01")
    try:
        (tmp / "many.jsonl").write_text("\n".join(str(i) for i in range(5000)))
        out = cli("submit", "--coordinator", node.address, "-p", "square", "--file",
                  "many.jsonl", tmp=tmp)
        one_line_error(out, 1, "SABOT_MAX_REQUEST_MB", "--node-file")
        # The size is checked before the file is read: a file this big is refused for its size
        # even where its later lines would not parse.
        (tmp / "big.jsonl").write_text("1\n" + "x" * 50_000 + "\n")
        out = cli("submit", "--coordinator", node.address, "-p", "square", "--file",
                  "big.jsonl", tmp=tmp)
        one_line_error(out, 1, "big.jsonl is 0.05 MB", "SABOT_MAX_REQUEST_MB", "--node-file")
    finally:
        assert node.stop() == 0


def test_node_file_takes_the_jsonl_that_file_takes(daemon: Daemon, tmp: Path) -> None:
    (tmp / "data" / "bare.jsonl").write_text("2\n3\n")
    (tmp / "bare.jsonl").write_text("2\n3\n")
    for flag in ("--node-file", "--file"):
        out = cli("submit", "--coordinator", daemon.address, "-p", "square", "--no-progress",
                  flag, "bare.jsonl", tmp=tmp)
        assert out.returncode == 0 and json.loads(out.stdout) == [4, 9], (flag, out.stderr)
