"""The process executor: a resizable pool of worker processes for per-item Python functions.

Why not ``concurrent.futures.ProcessPoolExecutor``: it cannot be resized while running, and a
worker that dies breaks the whole pool without saying which morsel it ran. Here each worker has
its own pipe and a dispatcher thread in the parent, so the parent knows exactly which task a dead
worker held (it is retried up to SABOT_MAX_ATTEMPTS times on a fresh worker, then fails with
:class:`~sabot.errors.WorkerLostError`), the pool grows and shrinks one worker at a time, and the
event loop never blocks on a pipe.

Children are fresh interpreters (``python -c``) talking over a socket pair: forking the
multi-threaded parent is unsafe, and unlike ``multiprocessing``'s spawn they never re-import the
user's ``__main__`` (no ``if __name__ == "__main__"`` guard needed). A child that dies closes its
end of the socket, which is how the parent notices at once. Functions travel with cloudpickle
(lambdas and closures, also those defined in ``__main__``), sent to a worker once while it keeps
them loaded (the last WORKER_FUNCTIONS used); named processors travel by name.

A task whose call is cancelled while a child runs it (a cancelled job, a morsel timed out by the
coordinator) is stopped for real: the child is killed and a fresh one started, so a function
that hangs holds no process once nobody wants its result. No child outlives its parent: each is
started by its worker's dispatch thread and asks the kernel for SIGKILL when that thread (the
process) dies (``PR_SET_PDEATHSIG``; elsewhere it watches its parent).
"""

from __future__ import annotations

import asyncio
import collections
import itertools
import logging
import multiprocessing.connection
import os
import pickle
import queue
import signal
import socket
import subprocess
import sys
import threading
import time
from concurrent.futures import Future
from typing import Any, ClassVar

from ..errors import ProcessingError, WorkerLostError
from .morsels import FN_PICKLED, FN_PROCESSOR

log = logging.getLogger("sabot.engine.processes")

#: Functions a worker process keeps loaded; the least recently used beyond this is forgotten
#: (a long-running node sees many calls, and a function may hold large closures).
WORKER_FUNCTIONS = 64


class ShippedFunction:
    """A function prepared for the children: pickled once per call, sent once per worker.

    Calls that ship the same function (the same pickled bytes: the same code and the same
    captured values) share one token, so a worker that has it loaded is not sent it again
    (a cluster worker makes one call per batch of morsels). Pickling each call still sees a
    function's current globals and closures; only identical bytes are shared."""

    _tokens = itertools.count(1)
    _known: ClassVar[collections.OrderedDict[tuple[str, Any, bool], int]] = \
        collections.OrderedDict()
    _known_lock = threading.Lock()

    def __init__(self, func: Any, *, batch: bool, processor: str | None = None,
                 pickled: bytes | None = None) -> None:
        self.batch = batch
        if processor is not None:
            self.kind, self.payload = FN_PROCESSOR, processor
        elif pickled is not None:  # the bytes ``func`` was unpickled from
            self.kind, self.payload = FN_PICKLED, pickled
        else:
            import cloudpickle

            self.kind, self.payload = FN_PICKLED, cloudpickle.dumps(func, protocol=5)
        key = (self.kind, self.payload, batch)
        with self._known_lock:
            token = self._known.get(key)
            if token is None:
                token = self._known[key] = next(self._tokens)
                if len(self._known) > 4 * WORKER_FUNCTIONS:
                    self._known.popitem(last=False)
            else:
                self._known.move_to_end(key)
        self.token = token


class Task:
    """One unit sent to a worker: a run of consecutive items starting at ``offset``."""

    __slots__ = ("attempts", "call", "cold", "data", "fn", "future", "morsel", "offset",
                 "seconds")

    def __init__(self, fn: ShippedFunction, offset: int, data: Any, morsel: int,
                 call: CallGroup) -> None:
        self.fn = fn
        self.offset = offset
        self.data = data
        self.morsel = morsel
        self.future: Future[Any] = Future()
        self.attempts = 0
        self.call = call
        self.seconds = 0.0  # wall time of the successful run
        self.cold = False  # it was the first task of a fresh process (lazy imports in its time)


class CallGroup:
    """The tasks of one process_data call; cancelling it drops its queued tasks."""

    __slots__ = ("cancelled",)

    def __init__(self) -> None:
        self.cancelled = False


_RETIRE = object()


def _signal_name(code: int | None) -> str:
    if code is None:
        return "unknown exit"
    if code < 0:
        try:
            return f"killed by {signal.Signals(-code).name}"
        except ValueError:
            return f"killed by signal {-code}"
    return f"exit code {code}"


class _Worker:
    def __init__(self, pool: ProcessPool, wid: int) -> None:
        self.pool = pool
        self.wid = wid
        self.proc: subprocess.Popen[bytes] | None = None
        self.conn: Any = None
        self.ready = False
        self.spawned_at = 0.0
        # tokens of the functions the child has loaded, least recently used first
        self.tokens: collections.OrderedDict[int, None] = collections.OrderedDict()
        self.busy_s = 0.0
        self.busy_since: float | None = None
        self.tasks_done = 0  # by the current child process
        self.task_started = 0.0  # when the current task reached a ready child
        self.cpu_s = 0.0
        self.lock = threading.Lock()
        # Held for one exchange with the child (send a task, read its reply): by this worker's
        # dispatch thread, or by an event loop that leased the worker (ProcessPool.lease).
        self.exch = threading.Lock()
        #: Set once the dispatch thread has started the first child (or failed to).
        self.started = threading.Event()
        self.start_error: BaseException | None = None
        self.thread = threading.Thread(
            target=self._loop, name=f"sabot-dispatch-{wid}", daemon=True)

    # -- child process -------------------------------------------------------------------
    def spawn(self) -> None:
        parent_sock, child_sock = socket.socketpair()
        try:
            fd = child_sock.fileno()
            proc = subprocess.Popen(
                [sys.executable, "-c", _CHILD_MAIN, str(fd), str(os.getpid())],
                pass_fds=(fd,), env=_child_env(), stdin=subprocess.DEVNULL, close_fds=True)
        finally:
            child_sock.close()
        conn = multiprocessing.connection.Connection(parent_sock.detach())
        conn.send(("init", list(sys.path), self.pool.processor_modules))
        with self.lock:
            self.proc, self.conn, self.ready = proc, conn, False
            self.tasks_done = 0
            self.tokens = collections.OrderedDict()
        self.spawned_at = time.perf_counter()

    def kill(self) -> None:
        with self.lock:
            proc, conn = self.proc, self.conn
            self.proc = self.conn = None
        if conn is not None:
            try:
                conn.close()
            except OSError:
                pass
        if proc is not None:
            if proc.poll() is None:
                proc.kill()
            try:
                proc.wait(timeout=5)
            except subprocess.TimeoutExpired:  # pragma: no cover - unkillable child
                log.warning("worker process %d did not exit after SIGKILL", proc.pid)

    def stop(self) -> None:
        with self.lock:
            conn, proc = self.conn, self.proc
        if conn is not None:
            try:
                conn.send(None)
            except (OSError, ValueError):
                pass
        if proc is not None:
            try:
                proc.wait(timeout=2)
            except subprocess.TimeoutExpired:
                pass
        self.kill()

    def exitcode(self, wait_s: float = 2.0) -> int | None:
        """The child's exit code, waiting at most ``wait_s`` for it to exit (None: it has not,
        or there is no child)."""
        proc = self.proc
        if proc is None:
            return None
        try:
            return proc.wait(timeout=wait_s)
        except subprocess.TimeoutExpired:
            return None

    @property
    def pid(self) -> int | None:
        return self.proc.pid if self.proc is not None else None

    # -- dispatch ------------------------------------------------------------------------
    def _loop(self) -> None:
        pool = self.pool
        try:
            # The child is started from this thread, which lives as long as the child should:
            # the kernel's parent-death signal follows the thread that forked, not the process.
            try:
                self.spawn()
            except Exception as exc:  # cannot start processes at all: resize() raises it
                self.start_error = exc
                return
            finally:
                self.started.set()
            while True:
                if pool.should_retire(self):
                    return
                try:
                    task = pool.tasks.get(timeout=0.25)
                except queue.Empty:
                    continue
                if task is _RETIRE:
                    return
                if task.call.cancelled or task.future.cancelled():
                    task.future.cancel()
                    continue
                if not self.exch.acquire(blocking=False):
                    # Leased to an event loop for one exchange: the task goes back for another
                    # process (it must not wait behind a slow call), and this thread waits for
                    # the lease to end.
                    pool.tasks.put(task)
                    with self.exch:
                        pass
                    continue
                try:
                    self._run(task)
                finally:
                    self.exch.release()
        finally:
            pool.worker_exited(self)
            with self.exch:
                self.stop()

    def _run(self, task: Task) -> None:
        task.attempts += 1
        if self.proc is None:
            try:
                self.spawn()
            except Exception as exc:  # cannot start processes at all
                _fail(task, exc)
                return
        start = time.perf_counter()
        self.busy_since = self.task_started = start
        try:
            outcome = self._exchange(task)
        finally:
            self.busy_s += time.perf_counter() - start
            self.busy_since = None
        if outcome is not None:
            self._settle_failure(task, *outcome)

    def _settle_failure(self, task: Task, kind: str, payload: Any) -> None:
        """The child died (``lost``, ``payload`` its exit code) or overran the morsel timeout:
        it is replaced, and the task runs again on the queue or fails."""
        pool = self.pool
        if kind == "cancelled":
            # The child still runs the task's function (maybe forever): end it, and start
            # its replacement now so the next task finds a process ready.
            pid = self.pid
            self.kill()
            task.future.cancel()
            pool.record_cancelled()
            log.info("worker process %s killed: morsel %d was cancelled while it ran", pid,
                     task.morsel)
            if not pool.closed and not pool.should_retire(self, peek=True):
                try:
                    self.spawn()
                except Exception:  # the next task retries the start (and reports it)
                    log.exception("cannot start a replacement worker process")
            return
        if pool.closed:
            _fail(task, WorkerLostError(
                f"the process pool was closed while morsel {task.morsel} was running",
                morsel=task.morsel))
            return
        if kind == "lost":
            code = payload
            pid = self.pid
            self.kill()
            what = (f"worker process {pid} died ({_signal_name(code)}) while running morsel "
                    f"{task.morsel} (items {task.offset}..{task.offset + len(task.data) - 1})")
            pool.record_lost()
            if task.attempts < pool.max_attempts and not task.call.cancelled:
                log.warning("%s; retrying on a fresh worker (attempt %d of %d)",
                            what, task.attempts + 1, pool.max_attempts)
                pool.tasks.put(task)
            else:
                _fail(task, WorkerLostError(
                    f"{what}; gave up after {task.attempts} attempt(s) (SABOT_MAX_ATTEMPTS="
                    f"{pool.max_attempts})", morsel=task.morsel))
        elif kind == "timeout":
            pid = self.pid
            self.kill()
            what = (f"morsel {task.morsel} (items {task.offset}..{task.offset + len(task.data) - 1}) "
                    f"ran longer than SABOT_MORSEL_TIMEOUT_S={pool.morsel_timeout_s:g}s on "
                    f"worker process {pid}")
            if task.attempts < pool.max_attempts and not task.call.cancelled:
                log.warning("%s; retrying (attempt %d of %d)", what, task.attempts + 1,
                            pool.max_attempts)
                pool.tasks.put(task)
            else:
                _fail(task, ProcessingError(
                    f"{what}; gave up after {task.attempts} attempt(s)", morsel=task.morsel,
                    original=TimeoutError(what)))

    def _exchange(self, task: Task) -> tuple[str, Any] | None:
        conn = self.conn
        try:
            if not self.ready:
                # The first reply of a fresh child says it has started (imports done).
                if not conn.poll(60):
                    return ("lost", self.exitcode())
                conn.recv()
                self.ready = True
                self.pool.note_startup(time.perf_counter() - self.spawned_at)
                # The task's own time starts now (task.seconds: not the process start).
                self.task_started = time.perf_counter()
            if not self._send_task(task):
                return None
        except (OSError, ValueError, EOFError):
            return ("lost", self.exitcode())
        try:
            waited = self._wait_reply(conn, task)
            if waited is not None:
                return (waited, None)
            reply = conn.recv()
        except (EOFError, OSError, ValueError):
            # The child's end of the socket closed: it died (or pool.close() closed ours).
            return ("lost", self.exitcode())
        self._settle_reply(task, reply)
        return None

    def _wait_reply(self, conn: Any, task: Task) -> str | None:
        """Wait for the child's reply: None once it is readable, ``"timeout"`` past the morsel
        timeout, ``"cancelled"`` once nobody wants the task any more (its call was cancelled).
        Waits in slices of _CANCEL_POLL_S to see a cancel."""
        timeout = pool_timeout(self.pool)
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            left = _CANCEL_POLL_S if deadline is None else \
                min(_CANCEL_POLL_S, deadline - time.monotonic())
            if left <= 0:
                return "timeout"
            if conn.poll(left):
                return None
            if task.call.cancelled or task.future.cancelled():
                return "cancelled"

    def _send_task(self, task: Task) -> bool:
        """Send the task (and its function, the first time) to the ready child. False when
        the task cannot be pickled (then it has failed and the child is replaced); OSError,
        ValueError or EOFError when the child is gone."""
        conn = self.conn
        fn = task.fn
        try:
            if fn.token not in self.tokens:
                conn.send(("fn", fn.token, fn.kind, fn.payload, fn.batch))
                self.tokens[fn.token] = None
                if len(self.tokens) > WORKER_FUNCTIONS:
                    old, _ = self.tokens.popitem(last=False)
                    conn.send(("forget", old))
            else:
                self.tokens.move_to_end(fn.token)
            conn.send(("run", id(task), fn.token, task.offset, task.data))
        except (pickle.PicklingError, TypeError, AttributeError) as exc:
            # The morsel itself cannot be pickled: the child may hold a partial message, so
            # replace it.
            self.kill()
            _fail(task, ProcessingError(
                f"morsel {task.morsel} cannot be sent to a worker process: {exc}",
                morsel=task.morsel, original=exc))
            return False
        return True

    def _settle_reply(self, task: Task, reply: Any) -> None:
        if reply[0] == "ok":
            self.cpu_s += reply[3]
            task.seconds = time.perf_counter() - self.task_started
            task.cold = self.tasks_done == 0
            self.tasks_done += 1
            _resolve(task, reply[2])
        else:
            _, _, index, exc_bytes, tb, summary = reply
            original: BaseException | None = None
            if exc_bytes is not None:
                try:
                    original = pickle.loads(exc_bytes)
                except Exception:
                    original = None
            if original is None:
                original = RuntimeError(summary)
            where = f"item {index}" if index is not None else f"morsel {task.morsel}"
            _fail(task, ProcessingError(
                f"function failed on {where} (in worker process {self.pid}): {summary}",
                index=index, morsel=task.morsel, original=original, remote_traceback=tb))

    async def run_on_loop(self, task: Task) -> None:
        """One exchange driven by the running event loop instead of the dispatch thread: the
        caller holds ``exch`` (ProcessPool.lease), and it is released here. Two thread
        wake-ups less than the queue (~250 µs of a small call's ~450 µs on a 2-vCPU VM). The
        outcome is in ``task.future``; a child that dies or overruns the morsel timeout is
        replaced and the task goes to the queue (retried there, or failed) as on the thread
        path. Cancelled mid-exchange, the child (which may still run the task) is replaced.
        Only for small tasks: the task is sent and its reply read on the loop."""
        loop = asyncio.get_running_loop()
        task.attempts += 1
        start = time.perf_counter()
        self.busy_since = self.task_started = start
        outcome: tuple[str, Any] | None = None
        fd = -1
        try:
            try:
                if not self._send_task(task):
                    return
                conn = self.conn
                fd = conn.fileno()
                readable = loop.create_future()
                loop.add_reader(fd, _wake, readable)
                outcome = await self._await_reply(readable, conn)
                if outcome is None:
                    # The reply is complete or follows at once (the child writes it in one go);
                    # the tasks that come here are small (see LocalEngine._gather_tasks).
                    self._settle_reply(task, conn.recv())
            except (OSError, ValueError, EOFError):
                outcome = ("lost", self.exitcode(_ON_LOOP_WAIT_S))
            except BaseException:
                if fd >= 0:
                    loop.remove_reader(fd)  # before its socket is closed
                    fd = -1
                self.kill()  # cancelled: the child may still be running the task
                raise
        finally:
            if fd >= 0:
                loop.remove_reader(fd)
            self.busy_s += time.perf_counter() - start
            self.busy_since = None
            try:
                if outcome is not None:
                    self._settle_failure(task, *outcome)
            finally:
                self.exch.release()

    async def _await_reply(self, readable: asyncio.Future[None], conn: Any
                           ) -> tuple[str, Any] | None:
        """Wait for the child's reply to be readable: None when it is, or the failure. Waits in
        short slices: a connection closed by another thread (pool.close() killing the
        process) never wakes a reader, so its end is noticed here."""
        loop = asyncio.get_running_loop()
        timeout = pool_timeout(self.pool)
        deadline = None if timeout is None else loop.time() + timeout
        while True:
            left = _LEASE_POLL_S if deadline is None else min(_LEASE_POLL_S,
                                                              deadline - loop.time())
            if left <= 0:
                return ("timeout", None)
            await asyncio.wait((readable,), timeout=left)
            if readable.done():
                return None
            if self.conn is not conn or self.pool.closed:
                return ("lost", self.exitcode(_ON_LOOP_WAIT_S))


#: How often a loop exchange checks that its process was not taken away (pool closed).
_LEASE_POLL_S = 0.25
#: How often a dispatch thread waiting for a reply checks whether its task was cancelled.
_CANCEL_POLL_S = 0.1
#: Longest wait for a lost child's exit code on an event loop.
_ON_LOOP_WAIT_S = 0.05


def _wake(fut: asyncio.Future[None]) -> None:
    if not fut.done():
        fut.set_result(None)


def _resolve(task: Task, value: Any) -> None:
    if not task.future.done():
        task.future.set_result(value)


def _fail(task: Task, exc: BaseException) -> None:
    if not task.future.done():
        task.future.set_exception(exc)


def _child_env() -> dict[str, str]:
    env = dict(os.environ)
    # A worker runs one morsel at a time: one thread for Arrow's and OpenMP's pools.
    env["OMP_NUM_THREADS"] = "1"
    env["SABOT_POOL_CHILD"] = "1"
    return env


# The child imports only the worker module; everything else is imported on demand.
_CHILD_MAIN = ("import sys; from sabot.engine.worker_process import main_fd; "
               "main_fd(int(sys.argv[1]), int(sys.argv[2]))")


def pool_timeout(pool: ProcessPool) -> float | None:
    return pool.morsel_timeout_s if pool.morsel_timeout_s > 0 else None


class ProcessPool:
    """Worker processes fed from one task queue; ``resize`` changes the count while running."""

    def __init__(self, size: int, *, max_attempts: int = 3, morsel_timeout_s: float = 0.0,
                 processor_modules: tuple[str, ...] = (),
                 on_started: Any = None) -> None:
        self.max_attempts = max_attempts
        self.morsel_timeout_s = morsel_timeout_s
        self.processor_modules = processor_modules
        # SimpleQueue: a put costs a fraction of queue.Queue's (no Condition to notify)
        self.tasks: queue.SimpleQueue[Any] = queue.SimpleQueue()
        self._lock = threading.Lock()
        self._workers: list[_Worker] = []
        self._ids = itertools.count(1)
        self._target = 0
        self._closed = False
        self.workers_lost = 0
        #: Children killed because the task they ran was cancelled (and replaced).
        self.workers_killed_on_cancel = 0
        self.startup_s: float | None = None
        self._on_started = on_started
        self._busy_mark = (time.perf_counter(), 0.0)
        self.resize(size)

    @property
    def closed(self) -> bool:
        return self._closed

    # -- size ----------------------------------------------------------------------------
    @property
    def size(self) -> int:
        return self._target

    def resize(self, size: int) -> None:
        """Grow at once; shrink as workers finish their current task."""
        size = max(1, int(size))
        with self._lock:
            if self._closed:
                return
            self._target = size
            live = len(self._workers)
            new = [_Worker(self, next(self._ids)) for _ in range(max(0, size - live))]
            self._workers.extend(new)
        for w in new:
            w.thread.start()  # it starts its child (see _Worker._loop)
        for w in new:
            w.started.wait(60)
        for w in new:
            if w.start_error is not None:
                raise w.start_error

    def should_retire(self, worker: _Worker, *, peek: bool = False) -> bool:
        """Whether ``worker`` is one too many (it leaves the pool then, unless ``peek``)."""
        with self._lock:
            if self._closed:
                return True
            if len(self._workers) > self._target and worker in self._workers:
                if not peek:
                    self._workers.remove(worker)
                return True
            return False

    def worker_exited(self, worker: _Worker) -> None:
        with self._lock:
            if worker in self._workers:
                self._workers.remove(worker)

    def note_startup(self, seconds: float) -> None:
        with self._lock:
            self.startup_s = seconds
        if self._on_started is not None:
            self._on_started(seconds)

    def record_lost(self) -> None:
        with self._lock:
            self.workers_lost += 1

    def record_cancelled(self) -> None:
        with self._lock:
            self.workers_killed_on_cancel += 1

    # -- work ----------------------------------------------------------------------------
    def submit(self, task: Task) -> Future[Any]:
        if self._closed:
            raise RuntimeError("the process pool is closed")
        self.tasks.put(task)
        return task.future

    def lease(self) -> _Worker | None:
        """A started, idle worker reserved for one exchange on the caller's event loop
        (``await worker.run_on_loop(task)``), or None when there is none right now."""
        with self._lock:
            if self._closed:
                return None
            for w in self._workers:
                if w.ready and w.conn is not None and w.exch.acquire(blocking=False):
                    if w.conn is not None:
                        return w
                    w.exch.release()
        return None

    @property
    def ready_count(self) -> int:
        """Workers that have started and can take tasks."""
        with self._lock:
            return sum(1 for w in self._workers if w.ready)

    def busy_workers(self) -> int:
        """Workers running a task at this instant."""
        with self._lock:
            return sum(1 for w in self._workers if w.busy_since is not None)

    def pids(self) -> list[int]:
        with self._lock:
            return [p for p in (w.pid for w in self._workers) if p is not None]

    def busy_fraction(self) -> float | None:
        """Share of worker time spent running tasks since the previous call (0..1); None when
        the pool was idle the whole time (no reading of how busy work keeps it)."""
        now = time.perf_counter()
        with self._lock:
            workers = list(self._workers)
        busy = 0.0
        for w in workers:
            busy += w.busy_s
            since = w.busy_since
            if since is not None:
                busy += now - since
        t0, b0 = self._busy_mark
        self._busy_mark = (now, busy)
        span = (now - t0) * max(1, len(workers))
        if busy - b0 <= 0 and self.tasks.empty():
            return None
        return max(0.0, min(1.0, (busy - b0) / span)) if span > 0 else 0.0

    def close(self) -> None:
        """Stop every worker; queued tasks are cancelled."""
        with self._lock:
            if self._closed:
                return
            self._closed = True
            workers = list(self._workers)
        while True:
            try:
                task = self.tasks.get_nowait()
            except queue.Empty:
                break
            if isinstance(task, Task):
                task.future.cancel()
        for _ in workers:
            self.tasks.put(_RETIRE)
        me = threading.current_thread()
        for w in workers:
            if w.thread.is_alive() and w.thread is not me:
                w.thread.join(timeout=2)
        # A worker still busy after the grace period runs a long task: end it.
        for w in workers:
            w.kill()
            if w.thread.is_alive() and w.thread is not me:
                w.thread.join(timeout=5)


__all__ = ["CallGroup", "ProcessPool", "ShippedFunction", "Task"]
