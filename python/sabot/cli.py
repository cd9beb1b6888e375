"""``sabot-node``: the Sabot daemon and its client subcommands.

``sabot-node`` alone runs a node in the mode of SABOT_MODE (like ``python -m
sabot.composable_launcher``); flags override the environment. The subcommands talk to a running
node over its HTTP API (``submit``, ``status``), run the built-in demo locally (``demo``) or make
a cluster secret (``keygen``). Every error is one line on stderr and a non-zero exit status.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from . import __version__
from .config import LOG_LEVELS, MODES, Config, load_config
from .errors import (
    ConfigError,
    CoordinatorUnavailableError,
    JobNotFoundError,
    RequestRefusedError,
    SabotError,
)
from .states import FINISHED_JOB_STATES, JobState

PROG = "sabot-node"
EXIT_ERROR, EXIT_USAGE, EXIT_INTERRUPTED = 1, 2, 130
FILE_FORMATS = ("jsonl", "json", "csv", "parquet", "arrow")

DESCRIPTION = """\
Run a Sabot node, or talk to one.

Without a subcommand, runs the daemon in the mode of SABOT_MODE (single-node, coordinator,
worker; auto: worker when COORDINATOR_HOST is set, else single-node) until SIGTERM or Ctrl-C.
Settings come from the environment (SABOT_HOST, SABOT_PORT, COORDINATOR_HOST, COORDINATOR_PORT,
CLUSTER_NAME, MAX_WORKERS, MORSEL_SIZE_KB, TARGET_UTILIZATION, LOG_LEVEL, SABOT_* ...; see
docs/cli.md); the flags below override them.
"""

EPILOG = """\
examples:
  sabot-node                                    # a single-node daemon on SABOT_PORT (8080)
  sabot-node --mode coordinator --port 8080
  sabot-node --mode worker --coordinator coordinator.example.com:8080
  sabot-node submit --processor square --data '[1, 2, 3, 4, 5]'
  sabot-node submit --processor square --file numbers.parquet --column value -o out.json
  sabot-node status --coordinator localhost:8080
  sabot-node demo
  sabot-node keygen > cluster.key
  sabot-node run pipeline.py --instances 2 --state-dir /shared/state
  sabot-node pipelines
  sabot-node pipelines stop PIPELINE_ID            # with a savepoint
  sabot-node pipelines resume PIPELINE_ID --instances 3
"""


class CliError(Exception):
    """A problem the user can fix; printed as one line."""


# -- argument parsing ---------------------------------------------------------------------
def _host_port(text: str) -> tuple[str, int]:
    host, sep, port = text.rpartition(":")
    if not sep or not host:
        raise argparse.ArgumentTypeError(f"expected HOST:PORT (like localhost:8080), got {text!r}")
    try:
        number = int(port)
    except ValueError:
        number = -1
    if not 1 <= number <= 65535:
        raise argparse.ArgumentTypeError(f"the port in {text!r} must be an integer from 1 to "
                                         "65535")
    return host.strip("[]"), number


def _add_client_options(p: argparse.ArgumentParser) -> None:
    # SUPPRESS: given before the subcommand, the main parser's value must survive.
    p.add_argument("--coordinator", metavar="HOST:PORT", type=_host_port,
                   default=argparse.SUPPRESS,
                   help="the node to talk to (default: COORDINATOR_HOST:COORDINATOR_PORT, "
                        "localhost:8080)")
    p.add_argument("--token", metavar="TOKEN",
                   help="bearer token for a node with SABOT_AUTH_TOKEN (default: "
                        "SABOT_AUTH_TOKEN)")
    p.add_argument("--timeout", type=float, default=60.0, metavar="SECONDS",
                   help="HTTP timeout of each request (default 60)")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog=PROG, description=DESCRIPTION, epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    daemon = parser.add_argument_group("daemon options (override the environment)")
    daemon.add_argument("--mode", choices=MODES, help="SABOT_MODE")
    daemon.add_argument("--host", help="SABOT_HOST: where the HTTP API listens")
    daemon.add_argument("--port", type=int, help="SABOT_PORT: the HTTP port (0: any free one)")
    daemon.add_argument("--coordinator", metavar="HOST:PORT", type=_host_port,
                        help="COORDINATOR_HOST and COORDINATOR_PORT (a worker's coordinator)")
    daemon.add_argument("--log-level", type=str.upper, choices=LOG_LEVELS, help="LOG_LEVEL")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")

    p = sub.add_parser(
        "submit", help="run a named processor over data on a node, with a progress bar",
        description="Submit a job to a node's HTTP API, show its progress and print its result "
                    "(a JSON array) or write it to --output.",
        formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--processor", "-p", required=True, metavar="NAME",
                   help="a registered processor (square, double, negate, increment, identity, "
                        "len, or one from SABOT_PROCESSORS on the node)")
    src = p.add_mutually_exclusive_group(required=True)
    src.add_argument("--data", metavar="JSON", help="the items inline, as a JSON array")
    src.add_argument("--file", "-f", metavar="PATH",
                     help="read the items here: JSON lines, a JSON array, CSV, Parquet or Arrow "
                          "IPC ('-' reads JSON lines from stdin)")
    src.add_argument("--node-file", metavar="PATH",
                     help="a file already on the node, under its SABOT_DATA_DIR (not uploaded)")
    p.add_argument("--format", choices=FILE_FORMATS,
                   help="format of --file/--node-file (default: from the file name)")
    p.add_argument("--column", metavar="NAME",
                   help="the column to process, for files with several")
    p.add_argument("--priority", type=int, default=0, help="higher runs first (default 0)")
    p.add_argument("--output", "-o", metavar="PATH",
                   help="write the result here (.json, .jsonl, .csv, .parquet, .arrow) instead "
                        "of stdout")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.add_argument("--no-wait", action="store_true",
                   help="print the job id and return without waiting")
    _add_client_options(p)

    p = sub.add_parser("status", help="nodes and recent jobs of a node, as tables",
                       description="Show a node's nodes (a coordinator's workers) and jobs.")
    p.add_argument("--jobs", type=int, default=20, metavar="N", help="jobs to list (default 20)")
    p.add_argument("--json", action="store_true", help="print the raw JSON instead")
    _add_client_options(p)

    p = sub.add_parser(
        "demo", help="the main job on built-in data, on a local engine (no network)",
        description="Generate data, run a columnar expression and aggregation and a per-item "
                    "'square' job on a local single-node engine, and print the throughput.")
    p.add_argument("--rows", type=int, default=2_000_000,
                   help="rows of the columnar part (default 2,000,000)")
    p.add_argument("--items", type=int, default=1_000_000,
                   help="items of the per-item part (default 1,000,000)")
    p.add_argument("--seed", type=int, default=7, help="random seed of the generated data")

    p = sub.add_parser(
        "run", help="run a streaming pipeline file on the cluster",
        description="Import FILE, call its pipeline(env) with a StreamEnv of the cluster at "
                    "--coordinator (COORDINATOR_HOST:COORDINATOR_PORT), and run the job it "
                    "builds on the workers. A DataStream pipeline() returns is collected and "
                    "printed as JSON lines; otherwise its sinks (to_files, to_kafka, ...) take "
                    "the output.")
    p.add_argument("file", metavar="FILE", help="a Python file defining pipeline(env)")
    p.add_argument("--name", help="the job's name (default: the file's name)")
    p.add_argument("--instances", type=int, metavar="N",
                   help="tasks to run (default: one per alive worker)")
    p.add_argument("--state-dir", metavar="DIR",
                   help="checkpoints here (a directory every worker reaches): the pipeline "
                        "survives a lost worker and can be stopped with a savepoint")
    p.add_argument("--checkpoint-interval", metavar="DURATION",
                   help="time between checkpoints, e.g. 10s (with --state-dir)")
    _add_client_options(p)

    p = sub.add_parser(
        "pipelines", help="list, stop, resume or cancel the cluster's streaming pipelines",
        description="Without an action: the coordinator's pipelines as a table. stop: with a "
                    "savepoint (resumable) unless --no-savepoint; resume: from its savepoint, "
                    "on --instances tasks (another number re-cuts the state); cancel: end it.")
    p.add_argument("action", nargs="?", choices=("list", "stop", "resume", "cancel"),
                   default="list")
    p.add_argument("pipeline_id", nargs="?", metavar="PIPELINE_ID")
    p.add_argument("--no-savepoint", action="store_true", help="stop: at once, not resumable")
    p.add_argument("--instances", type=int, metavar="N", help="resume: on this many tasks")
    p.add_argument("--json", action="store_true", help="print the raw JSON instead")
    _add_client_options(p)

    p = sub.add_parser("keygen", help="print a new cluster secret (SABOT_CLUSTER_KEY)",
                       description="Print a new random 32-byte cluster secret, Z85-encoded. "
                                   "Give it to every node as SABOT_CLUSTER_KEY or in "
                                   "SABOT_CLUSTER_KEY_FILE.")
    p.add_argument("--output", "-o", metavar="PATH",
                   help="write it to this file (created with mode 0600) instead of stdout")
    return parser


# -- configuration ------------------------------------------------------------------------
def _config(args: argparse.Namespace) -> Config:
    host, port = args.coordinator if getattr(args, "coordinator", None) else (None, None)
    return load_config(
        mode=getattr(args, "mode", None), host=getattr(args, "host", None),
        port=getattr(args, "port", None), coordinator_host=host, coordinator_port=port,
        log_level=getattr(args, "log_level", None), auth_token=getattr(args, "token", None))


def _client(args: argparse.Namespace) -> Any:
    from .http.client import HttpClient

    config = _config(args)
    return HttpClient(config.coordinator_host, config.coordinator_port,
                      token=config.auth_token, timeout_s=args.timeout)


# -- daemon -------------------------------------------------------------------------------
def run_daemon(args: argparse.Namespace) -> int:
    config = _config(args)
    from .launcher import launch_sabot

    asyncio.run(launch_sabot(config))
    return 0


# -- submit -------------------------------------------------------------------------------
def _detect_format(path: str, fmt: str | None) -> str:
    if fmt:
        return fmt
    name = path.lower()
    for ending, known in ((".jsonl", "jsonl"), (".ndjson", "jsonl"), (".json", "json"),
                          (".csv", "csv"), (".parquet", "parquet"), (".pq", "parquet"),
                          (".arrow", "arrow"), (".feather", "arrow"), (".ipc", "arrow")):
        if name.endswith(ending):
            return known
    raise CliError(f"cannot tell the format of {path!r} from its name; pass --format "
                   f"({', '.join(FILE_FORMATS)})")


def _column(table: Any, column: str | None, path: str) -> list[Any]:
    if column is None:
        if table.num_columns != 1:
            raise CliError(f"{path} has {table.num_columns} columns "
                           f"({', '.join(table.column_names)}); choose one with --column")
        return table.column(0).to_pylist()
    if column not in table.column_names:
        raise CliError(f"{path} has no column {column!r}; columns: "
                       f"{', '.join(table.column_names)}")
    return table.column(column).to_pylist()


def read_items(path: str, fmt: str | None, column: str | None) -> list[Any]:
    """The items of a local file (or stdin for '-') as JSON-able values."""
    if path == "-":
        return _json_lines(sys.stdin, "stdin")
    fmt = _detect_format(path, fmt)
    if not Path(path).is_file():
        raise CliError(f"no such file: {path}")
    if fmt in ("jsonl", "json"):
        with open(path, encoding="utf-8") as fh:
            if fmt == "jsonl":
                return _json_lines(fh, path)
            try:
                items = json.load(fh)
            except ValueError as exc:
                raise CliError(f"{path} is not valid JSON: {exc}") from None
        if not isinstance(items, list):
            raise CliError(f"{path} must hold a JSON array of items")
        return items
    import pyarrow as pa

    try:
        if fmt == "csv":
            import pyarrow.csv as pcsv

            table = pcsv.read_csv(path)
        elif fmt == "parquet":
            import pyarrow.parquet as pq

            table = pq.read_table(path)
        else:
            with pa.memory_map(path) as source:
                try:
                    table = pa.ipc.open_file(source).read_all()
                except pa.ArrowInvalid:
                    source.seek(0)
                    table = pa.ipc.open_stream(source).read_all()
    except (pa.ArrowException, OSError) as exc:
        raise CliError(f"cannot read {path} as {fmt}: {exc}") from None
    return _column(table, column, path)


def _check_upload_size(client: Any, path: str, fmt: str | None) -> None:
    """Refuse a text file larger than the node takes before reading it (a JSON request is at
    least as large as its JSON-lines, JSON or CSV source), instead of after the upload."""
    if path == "-" or not Path(path).is_file():
        return
    if _detect_format(path, fmt) not in ("jsonl", "json", "csv"):
        return
    limit = client.health().get("max_request_bytes")
    size = Path(path).stat().st_size
    if isinstance(limit, int) and size > limit:
        raise CliError(
            f"{path} is {size / 2**20:.2f} MB and the node at {client.address} takes requests "
            f"up to {limit / 2**20:.2f} MB (its SABOT_MAX_REQUEST_MB): put the file under the "
            "node's SABOT_DATA_DIR and use --node-file, or raise SABOT_MAX_REQUEST_MB on the node")


def _json_lines(lines: Any, name: str) -> list[Any]:
    items = []
    for number, line in enumerate(lines, 1):
        if line.strip():
            try:
                items.append(json.loads(line))
            except ValueError as exc:
                raise CliError(f"{name} line {number} is not valid JSON: {exc}") from None
    return items


def write_result(items: list[Any], output: str | None) -> None:
    if output is None:
        json.dump(items, sys.stdout)
        sys.stdout.write("\n")
        sys.stdout.flush()
        return
    name = output.lower()
    if name.endswith((".jsonl", ".ndjson")):
        with open(output, "w", encoding="utf-8") as fh:
            fh.writelines(json.dumps(item) + "\n" for item in items)
    elif name.endswith((".csv", ".parquet", ".pq", ".arrow", ".feather", ".ipc")):
        import pyarrow as pa

        table = pa.table({"result": pa.array(items)})
        if name.endswith(".csv"):
            import pyarrow.csv as pcsv

            pcsv.write_csv(table, output)
        elif name.endswith((".parquet", ".pq")):
            import pyarrow.parquet as pq

            pq.write_table(table, output)
        else:
            with pa.OSFile(output, "wb") as sink, pa.ipc.new_file(sink, table.schema) as writer:
                writer.write_table(table)
    else:
        with open(output, "w", encoding="utf-8") as fh:
            json.dump(items, fh)
            fh.write("\n")


def run_submit(args: argparse.Namespace) -> int:
    client = _client(args)
    if args.node_file is not None:
        spec = {"path": args.node_file}
        if args.format:
            if args.format == "json":
                raise CliError("--node-file takes jsonl, csv, parquet or arrow files")
            spec["format"] = args.format
        if args.column:
            spec["column"] = args.column
        accepted = client.submit(args.processor, input=spec, priority=args.priority)
    else:
        if args.data is not None:
            try:
                items = json.loads(args.data)
            except ValueError as exc:
                raise CliError(f"--data is not valid JSON: {exc}") from None
            if not isinstance(items, list):
                raise CliError("--data must be a JSON array, like '[1, 2, 3]'")
        else:
            _check_upload_size(client, args.file, args.format)
            items = read_items(args.file, args.format, args.column)
        try:
            accepted = client.submit(args.processor, data=items, priority=args.priority)
        except RequestRefusedError as exc:
            if exc.status == 413:
                raise CliError(f"{exc} — put the file under the node's SABOT_DATA_DIR and use "
                               "--node-file, or raise SABOT_MAX_REQUEST_MB on the node") from None
            raise
    job_id = accepted["job_id"]
    if args.no_wait:
        print(job_id)
        return 0
    try:
        job = _wait_with_progress(client, job_id, show=not args.no_progress)
    except KeyboardInterrupt:
        try:
            client.cancel(job_id)
            print(f"{PROG}: interrupted; job {job_id} cancelled", file=sys.stderr)
        except SabotError:
            print(f"{PROG}: interrupted; job {job_id} may still run", file=sys.stderr)
        return EXIT_INTERRUPTED
    if job["status"] != JobState.COMPLETED:
        first = (job.get("error") or "").strip().splitlines()
        reason = first[0] if first else "no reason given"
        raise CliError(f"job {job_id} {job['status']}: {reason}")
    write_result(list(client.result(job_id)), args.output)
    if args.output:
        print(f"{PROG}: job {job_id}: {job['progress']['total']} results written to "
              f"{args.output}", file=sys.stderr)
    return 0


def _wait_with_progress(client: Any, job_id: str, *, show: bool) -> dict[str, Any]:
    from tqdm import tqdm

    bar = None
    delay = 0.05
    told = None  # the last waiting_for said, so it is said once while it holds
    try:
        while True:
            job = client.job(job_id, limit=0)
            waiting = job.get("waiting_for")
            if waiting and waiting != told:
                message = f"{PROG}: job {job_id[:8]} waits: {waiting} (start one with " \
                          f"`{PROG} worker`)"
                if bar is not None:
                    bar.write(message, file=sys.stderr)
                else:
                    print(message, file=sys.stderr)
            told = waiting
            progress = job.get("progress") or {}
            total, done = int(progress.get("total") or 0), int(progress.get("done") or 0)
            if show and bar is None:
                bar = tqdm(total=total, unit="item", unit_scale=total >= 100_000, file=sys.stderr,
                           desc=f"job {job_id[:8]}", dynamic_ncols=True, leave=True)
            if bar is not None:
                bar.update(max(0, done - bar.n))
                bar.set_postfix_str(job["status"])
            if job["status"] in FINISHED_JOB_STATES:
                return job
            time.sleep(delay)
            delay = min(0.5, delay * 1.5)
    finally:
        if bar is not None:
            bar.close()


# -- status -------------------------------------------------------------------------------
def _table(rows: list[list[str]], header: list[str]) -> str:
    widths = [max(len(str(x)) for x in col) for col in zip(header, *rows)]
    lines = ["  ".join(str(h).ljust(w) for h, w in zip(header, widths))]
    lines.append("  ".join("-" * w for w in widths))
    for row in rows:
        lines.append("  ".join(str(c).ljust(w) for c, w in zip(row, widths)))
    return "\n".join(lines)


def _when(t: Any) -> str:
    return time.strftime("%H:%M:%S", time.localtime(t)) if t else "-"


def run_status(args: argparse.Namespace) -> int:
    client = _client(args)
    health = client.health()
    nodes = client.nodes()
    jobs = client.jobs(limit=max(1, min(args.jobs, 10_000)))
    if args.json:
        json.dump({"health": health, "nodes": nodes, "jobs": jobs}, sys.stdout, indent=2)
        print()
        return 0
    print(f"{health.get('role', '?')} {health.get('node_id', '?')} at {client.address} "
          f"(cluster {health.get('cluster_name', '?')}, version {health.get('version', '?')})")
    print()
    print(f"nodes ({len(nodes)})")
    print(_table([[n.get("node_id", ""), n.get("role", ""), n.get("status", ""),
                   n.get("address", ""),
                   "-" if n.get("utilization_percent") is None
                   else f"{float(n['utilization_percent']):.1f}%",
                   n.get("queue_depth", "-")] for n in nodes],
                 ["NODE", "ROLE", "STATUS", "ADDRESS", "UTIL", "QUEUE"]))
    if health.get("role") == "coordinator" and not any(
            n.get("role") == "worker" and n.get("status") == "alive" for n in nodes):
        print(f"no worker is connected to the coordinator: submitted jobs wait until one "
              f"registers (start one with `{PROG} worker`)")
    print()
    print(f"jobs ({len(jobs)} most recent)")
    print(_table([[j["job_id"], j.get("processor", ""), j["status"],
                   f"{(j.get('progress') or {}).get('done', 0)}/"
                   f"{(j.get('progress') or {}).get('total', 0)}",
                   _when(j.get("created_at")), _when(j.get("finished_at")),
                   ((j.get("error") or "").splitlines() or [""])[0][:60]] for j in jobs],
                 ["JOB", "PROCESSOR", "STATUS", "PROGRESS", "CREATED", "FINISHED", "ERROR"]))
    return 0


# -- pipelines ----------------------------------------------------------------------------
def run_pipelines(args: argparse.Namespace) -> int:
    client = _client(args)
    if args.action == "list":
        found = client.pipelines()
        if args.json:
            json.dump(found, sys.stdout, indent=2)
            print()
            return 0
        print(_table([[p["pipeline_id"], p["name"], p["state"], p["instances"],
                       ",".join(sorted({t["worker"] for t in p.get("tasks") or []})) or "-",
                       (p.get("checkpoints") or {}).get("committed", "-"),
                       p.get("restarts", 0), ((p.get("error") or "").splitlines() or [""])[0][:60]]
                      for p in found],
                     ["PIPELINE", "NAME", "STATE", "INSTANCES", "WORKERS", "CHECKPOINT",
                      "RESTARTS", "ERROR"]))
        return 0
    if not args.pipeline_id:
        raise CliError(f"pipelines {args.action} needs a PIPELINE_ID (see `{PROG} pipelines`)")
    body: dict[str, Any] = {}
    if args.action == "stop":
        body["savepoint"] = not args.no_savepoint
    if args.action == "resume" and args.instances is not None:
        if args.instances < 1:
            raise CliError("--instances must be at least 1")
        body["instances"] = args.instances
    reply = client.pipeline_action(args.pipeline_id, args.action, body)
    if args.json:
        json.dump(reply, sys.stdout, indent=2)
        print()
    else:
        print(f"pipeline {reply['pipeline_id']} ({reply['name']}): {reply['state']}"
              + (" (stopping with a savepoint)" if reply.get("stopping") else ""))
    return 0


def _json_value(v: Any) -> Any:
    """Times in ISO 8601 (as the HTTP API writes them), anything else as its text."""
    return v.isoformat() if hasattr(v, "isoformat") else str(v)


def run_pipeline_file(args: argparse.Namespace) -> int:
    import importlib.util

    from .stream import StreamEnv
    from .stream.stream import DataStream

    path = os.path.abspath(args.file)
    if not os.path.isfile(path):
        raise CliError(f"no such file: {args.file}")
    spec = importlib.util.spec_from_file_location(
        os.path.splitext(os.path.basename(path))[0].replace("-", "_"), path)
    if spec is None or spec.loader is None:
        raise CliError(f"{args.file} is not a Python file")
    import cloudpickle

    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    # (the workers do not have the file: its functions travel by value with the graph)
    cloudpickle.register_pickle_by_value(module)
    spec.loader.exec_module(module)
    build = getattr(module, "pipeline", None)
    if not callable(build):
        raise CliError(f"{args.file} defines no pipeline(env) function: it must build the job "
                       "on the StreamEnv it is given")
    config = _config(args)
    if args.instances is not None and args.instances < 1:
        raise CliError("--instances must be at least 1")
    env = StreamEnv(cluster=f"{config.coordinator_host}:{config.coordinator_port}",
                    instances=args.instances, state_dir=args.state_dir,
                    checkpoint_interval=args.checkpoint_interval)
    out = build(env)
    name = args.name or spec.name
    if isinstance(out, DataStream):
        table = out.collect()
        for row in table.to_pylist():
            print(json.dumps(row, default=_json_value))
    else:
        env.execute(name)
    res, info = env.last_result, env.cluster_info
    print(f"{PROG}: pipeline {info.get('pipeline_id')} {info.get('state')} on "
          f"{info.get('instances')} instance(s): {res.events if res else 0} events",
          file=sys.stderr)
    return 0


# -- demo ---------------------------------------------------------------------------------
def run_demo(args: argparse.Namespace) -> int:
    from .demo import run_demo as demo

    if args.rows < 1 or args.items < 1:
        raise CliError("--rows and --items must be at least 1")
    for line in demo(rows=args.rows, items=args.items, seed=args.seed):
        print(line, flush=True)
    return 0


# -- keygen -------------------------------------------------------------------------------
def new_secret() -> str:
    try:
        from .cluster.security import generate_secret
    except ImportError:
        from zmq.utils import z85

        return z85.encode(os.urandom(32)).decode("ascii")
    return generate_secret()


def run_keygen(args: argparse.Namespace) -> int:
    secret = new_secret()
    if args.output is None:
        print(secret)
        return 0
    try:
        fd = os.open(args.output, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        raise CliError(f"{args.output} exists; remove it first (a cluster secret is never "
                       "overwritten)") from None
    with os.fdopen(fd, "w") as fh:
        fh.write(secret + "\n")
    print(f"{PROG}: wrote a new cluster secret to {args.output} (mode 0600)", file=sys.stderr)
    return 0


COMMANDS = {None: run_daemon, "submit": run_submit, "status": run_status, "demo": run_demo,
            "keygen": run_keygen, "pipelines": run_pipelines, "run": run_pipeline_file}


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return COMMANDS[args.command](args)
    except KeyboardInterrupt:
        return EXIT_INTERRUPTED
    except ConfigError as exc:
        print(f"{PROG}: configuration error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except (CliError, CoordinatorUnavailableError, JobNotFoundError, RequestRefusedError,
            SabotError) as exc:
        message = str(exc)
        print(f"{PROG}: error: {message.splitlines()[0] if message else type(exc).__name__}",
              file=sys.stderr)
        return EXIT_ERROR
    except OSError as exc:
        print(f"{PROG}: error: {exc}", file=sys.stderr)
        return EXIT_ERROR


if __name__ == "__main__":
    sys.exit(main())
