"""One task of a pipeline on the cluster: ``python -m sabot.stream.cluster_task``.

Started by a worker (:mod:`sabot.cluster.worker_tasks`), which writes a JSON header line and the
pipeline's cloudpickled graph to this process's standard input. The task builds its instance of
the job, binds its exchange and says ``{"ready": endpoint}``; given ``{"peers": [...]}`` it runs,
then writes what its collecting sinks gathered as Arrow IPC files and says ``{"done": ...}`` (or
``{"error": ...}``). These lines go to the worker on the task's original standard output;
the job's own prints go to standard error. At the end of its standard input (the worker is
gone, or stopped it) the task exits.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import sys
import time
import traceback
from pathlib import Path
from typing import IO, Any

import pyarrow as pa

#: Seconds between two reports of the task's figures to the coordinator.
STATS_S = 1.0


def _say(out: IO[bytes], what: dict[str, Any]) -> None:
    out.write(json.dumps(what).encode() + b"\n")
    out.flush()


async def _stdin_reader() -> asyncio.StreamReader:
    loop = asyncio.get_running_loop()
    reader = asyncio.StreamReader(limit=1 << 24)
    await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), sys.stdin)
    return reader


async def _run(header: dict[str, Any], graph: bytes, out: IO[bytes]) -> int:
    import cloudpickle

    from ..cluster.security import ClusterKeys
    from .cluster_checkpoints import ClusterCheckpointConfig, ClusterCheckpointer
    from .exchange_channels import ExchangeChannels
    from .runtime import Job
    from .sinks import CollectSink

    name, sinks, threads, tick_ms = cloudpickle.loads(graph)
    keys = ClusterKeys.from_secret(bytes.fromhex(header["secret"]), "the worker")
    instance, instances = int(header["instance"]), int(header["instances"])
    ch = ExchangeChannels(instance, instances, int(header["key_groups"]), keys,
                          str(header["host"]))
    try:
        job = Job(name, sinks, threads, tick_ms, channels=ch)
        if header.get("checkpoint"):
            job.checkpointer = ClusterCheckpointer(
                name, job.order, ClusterCheckpointConfig.from_dict(header["checkpoint"]),
                instance, instances, lambda what: _say(out, what), int(header["key_groups"]),
                int(header.get("restore_instances") or instances))
            job.ctx.checkpointing = True
            job.restore_from = int(header.get("restore_epoch") or 0)  # type: ignore[assignment]
        reader = await _stdin_reader()
        _say(out, {"ready": ch.endpoint})
        line = await reader.readline()
        if not line:
            return 1  # the worker is gone before the pipeline started
        ch.peers = [str(p) for p in json.loads(line)["peers"]]
        run = asyncio.ensure_future(job.run())
        gone = asyncio.ensure_future(_controls(reader, job))
        stats = asyncio.ensure_future(_report_stats(job, ch, out))
        done, _ = await asyncio.wait([run, gone], return_when=asyncio.FIRST_COMPLETED)
        stats.cancel()
        if run not in done:
            run.cancel()
            await asyncio.gather(run, return_exceptions=True)
            return 1
        gone.cancel()
        run.result()
        out_dir = Path(header["out_dir"])
        results = {}
        for op in job.sinks:
            if isinstance(op, CollectSink):
                path = out_dir / f"{len(results)}.arrow"
                table = op.table()
                with pa.OSFile(str(path), "wb") as f, pa.ipc.new_stream(f, table.schema) as w:
                    w.write_table(table)
                results[op.name] = str(path)
        _say(out, {"done": {"results": results, "stats": _stats(job, ch)}})
        return 0
    finally:
        ch.close()


def _stats(job: Any, ch: Any) -> dict[str, Any]:
    """What the coordinator shows of this task (GET /pipelines, the metrics)."""
    stats = job.stats()
    stats["exchange"] = ch.stats()
    stats["time"] = time.time()
    return json.loads(json.dumps(stats, default=str))


async def _report_stats(job: Any, ch: Any, out: IO[bytes]) -> None:
    while True:
        await asyncio.sleep(STATS_S)
        _say(out, {"stats": _stats(job, ch)})


async def _controls(reader: asyncio.StreamReader, job: Any) -> None:
    """The worker's requests (checkpoint n, commit n) until its end of the pipe."""
    while True:
        line = await reader.readline()
        if not line:
            return
        said = json.loads(line)
        for kind in ("checkpoint", "commit"):
            if kind in said:
                job.control(kind, int(said[kind]))


def main() -> int:
    # The protocol's lines go to the worker on the original stdout; everything else printed
    # (a print() sink, user code) goes to stderr, which the worker logs.
    out = os.fdopen(os.dup(1), "wb")
    os.dup2(2, 1)
    logging.basicConfig(level=logging.WARNING, stream=sys.stderr,
                        format="%(levelname)s %(name)s: %(message)s")
    # The imports first: a worker keeps a task process started ahead of its pipeline.
    import cloudpickle  # noqa: F401
    import zmq  # noqa: F401

    from . import cluster_checkpoints, exchange_channels, runtime, sinks  # noqa: F401
    from .nexmark import generator, queries  # noqa: F401

    generator.prepare()  # (the default seed's pools, for Nexmark pipelines)
    stdin = sys.stdin.buffer
    line = stdin.readline()
    if not line:
        return 0  # (a spare the worker did not need)
    header = json.loads(line)
    graph = stdin.read(int(header["graph_bytes"]))
    try:
        return asyncio.run(_run(header, graph, out))
    except Exception as exc:  # noqa: BLE001 - reported to the worker
        traceback.print_exc()
        _say(out, {"error": f"{type(exc).__name__}: {exc}"})
        return 1


if __name__ == "__main__":
    sys.exit(main())
