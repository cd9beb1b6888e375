"""A worker's streaming tasks: each one instance of a pipeline, in a process of its own.

The coordinator sends ``RunTask``; the worker starts ``python -m sabot.stream.cluster_task``,
hands it the pipeline (the client's cloudpickled graph, which only that process unpickles: user
code never runs in the worker itself) and the cluster secret on its standard input, and relays
between the task and the coordinator: the task's exchange endpoint (``TaskReady``), every
task's endpoints (``TaskPeers``), and its end (``TaskDone`` with the results its sinks
collected, or why it failed). The task reads its standard input to its end: when the worker
dies, so does the task. ``CancelTask`` kills the pipeline's tasks.

Once a worker has run a task, one task process is kept started ahead, its imports done,
waiting for the next pipeline (whose task then starts in milliseconds instead of most of a
second); a worker that never runs a pipeline starts none.
"""

from __future__ import annotations

import asyncio
import collections
import json
import logging
import os
import shutil
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

from ..config import Config
from .protocol import messages as m
from .security import load_secret

log = logging.getLogger(__name__)

#: The task's last lines of standard error kept for its failure message.
STDERR_LINES = 20


class _Task:
    def __init__(self, pipeline_id: str, instance: int, attempt: int, out_dir: Path) -> None:
        self.pipeline_id = pipeline_id
        self.instance = instance
        self.attempt = attempt
        self.out_dir = out_dir
        self.proc: asyncio.subprocess.Process | None = None
        self.reported = False
        self.cancelled = False
        self.stderr: collections.deque[str] = collections.deque(maxlen=STDERR_LINES)
        self.runner: asyncio.Task[None] | None = None


class StreamTasks:
    def __init__(self, config: Config, node_id: str, post: Callable[[m.Message], None],
                 host: Callable[[], str]) -> None:
        self.config = config
        self.node_id = node_id
        self._post = post
        self._host = host
        self._tasks: dict[tuple[str, int, int], _Task] = {}
        self._spare: asyncio.subprocess.Process | None = None
        self._spawning: asyncio.Task[None] | None = None
        self._closed = False

    # -- from the coordinator -------------------------------------------------------------------
    def run(self, msg: m.RunTask) -> None:
        key = (msg.pipeline_id, msg.instance, msg.attempt)
        if key in self._tasks:
            return  # (a RunTask sent again)
        out = Path(self.config.data_dir) / "tasks" / \
            f"{msg.pipeline_id}-{msg.instance}-{msg.attempt}"
        task = _Task(msg.pipeline_id, msg.instance, msg.attempt, out)
        self._tasks[key] = task
        task.runner = asyncio.ensure_future(self._run(task, msg))

    def _tell(self, pipeline_id: str, instance: int, attempt: int, what: dict[str, Any]) -> None:
        task = self._tasks.get((pipeline_id, instance, attempt))
        if task is None or task.proc is None or task.proc.stdin is None:
            return
        try:
            task.proc.stdin.write(json.dumps(what).encode() + b"\n")
        except (BrokenPipeError, ConnectionResetError):  # it ended: its runner reports it
            pass

    def peers(self, msg: m.TaskPeers) -> None:
        self._tell(msg.pipeline_id, msg.instance, msg.attempt,
                   {"peers": list(msg.endpoints)})

    def control(self, msg: m.TaskControl) -> None:
        self._tell(msg.pipeline_id, msg.instance, msg.attempt, dict(msg.control))

    def cancel(self, pipeline_id: str, reason: str, before_attempt: int | None = None) -> None:
        for task in [t for t in self._tasks.values() if t.pipeline_id == pipeline_id
                     and (before_attempt is None or t.attempt < before_attempt)]:
            log.info("task %d of pipeline %s stopped: %s", task.instance, pipeline_id, reason)
            task.cancelled = True
            self._kill(task)

    async def close(self) -> None:
        self._closed = True
        if self._spawning is not None:
            self._spawning.cancel()
            await asyncio.gather(self._spawning, return_exceptions=True)
        spare, self._spare = self._spare, None
        if spare is not None and spare.returncode is None:
            spare.kill()
            await spare.wait()
        tasks = list(self._tasks.values())
        for task in tasks:
            task.cancelled = True
            self._kill(task)
        await asyncio.gather(*(t.runner for t in tasks if t.runner is not None),
                             return_exceptions=True)

    # -- a task's life --------------------------------------------------------------------------
    @staticmethod
    def _kill(task: _Task) -> None:
        if task.proc is not None and task.proc.returncode is None:
            try:
                task.proc.kill()
            except ProcessLookupError:
                pass

    def _report(self, task: _Task, msg: m.TaskDone) -> None:
        if not task.reported:
            task.reported = True
            self._post(msg)

    async def _run(self, task: _Task, msg: m.RunTask) -> None:
        try:
            await self._start_and_relay(task, msg)
        except Exception as exc:  # noqa: BLE001 - reported as the task's failure
            log.exception("task %d of pipeline %s failed", task.instance, task.pipeline_id)
            self._report(task, m.TaskDone(task.pipeline_id, task.instance,
                                          error=f"{type(exc).__name__}: {exc}",
                                          attempt=task.attempt))
        finally:
            self._kill(task)
            if task.proc is not None:
                await task.proc.wait()
            self._tasks.pop((task.pipeline_id, task.instance, task.attempt), None)
            shutil.rmtree(task.out_dir, ignore_errors=True)

    @staticmethod
    async def _spawn() -> asyncio.subprocess.Process:
        return await asyncio.create_subprocess_exec(
            sys.executable, "-m", "sabot.stream.cluster_task",
            stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE, env=dict(os.environ), limit=1 << 24)

    def warm_up(self) -> None:
        """Start a spare task process (once, in the background) unless one is there."""
        if self._closed or self._spare is not None or \
                (self._spawning is not None and not self._spawning.done()):
            return

        async def spawn() -> None:
            try:
                proc = await self._spawn()
            except OSError as exc:
                log.warning("cannot start a spare task process: %s", exc)
                return
            if self._closed:
                proc.kill()
                await proc.wait()
                return
            self._spare = proc

        self._spawning = asyncio.ensure_future(spawn())

    async def _process(self) -> asyncio.subprocess.Process:
        """The spare task process if it is alive, else a new one; a new spare is started."""
        spare, self._spare = self._spare, None
        if spare is None and self._spawning is not None and not self._spawning.done():
            await asyncio.gather(self._spawning, return_exceptions=True)
            spare, self._spare = self._spare, None
        self.warm_up()
        if spare is not None and spare.returncode is None:
            return spare
        return await self._spawn()

    async def _start_and_relay(self, task: _Task, msg: m.RunTask) -> None:
        task.out_dir.mkdir(parents=True, exist_ok=True)
        header = {"pipeline_id": msg.pipeline_id, "name": msg.name, "instance": msg.instance,
                  "instances": msg.instances, "key_groups": msg.key_groups,
                  "attempt": msg.attempt, "checkpoint": msg.checkpoint,
                  "restore_epoch": msg.restore_epoch,
                  "restore_instances": msg.restore_instances,
                  "host": self._host(), "out_dir": str(task.out_dir),
                  "secret": load_secret(self.config, create=False).hex(),
                  "graph_bytes": len(msg.graph)}
        task.proc = proc = await self._process()
        assert proc.stdin is not None and proc.stdout is not None and proc.stderr is not None
        proc.stdin.write(json.dumps(header).encode() + b"\n" + bytes(msg.graph))
        await proc.stdin.drain()
        errors = asyncio.ensure_future(self._read_stderr(task, proc.stderr))
        while True:
            line = await proc.stdout.readline()
            if not line:
                break
            try:
                said = json.loads(line)
            except ValueError:
                continue
            pid, i, attempt = task.pipeline_id, task.instance, task.attempt
            if "ready" in said:
                self._post(m.TaskReady(pid, i, str(said["ready"]), attempt))
            elif "done" in said:
                done = said["done"]
                results = {sink: Path(path).read_bytes() for sink, path in done["results"].items()}
                self._report(task, m.TaskDone(pid, i, None, results, done.get("stats", {}),
                                              attempt))
            elif "error" in said:
                self._report(task, m.TaskDone(pid, i, error=str(said["error"]), attempt=attempt))
            elif "checkpointed" in said or "checkpoint_failed" in said or "stats" in said:
                self._post(m.TaskEvent(pid, i, attempt, said))
        rc = await proc.wait()
        await errors
        if not task.reported and not task.cancelled:
            tail = " | ".join(task.stderr) or "no output"
            self._report(task, m.TaskDone(task.pipeline_id, task.instance,
                                          error=f"the task process exited with code {rc}: {tail}",
                                          attempt=task.attempt, lost=True))

    async def _read_stderr(self, task: _Task, stream: asyncio.StreamReader) -> None:
        while True:
            line = await stream.readline()
            if not line:
                return
            text = line.decode("utf-8", "replace").rstrip()
            task.stderr.append(text)
            log.info("task %d of pipeline %s: %s", task.instance, task.pipeline_id, text)
