"""The main loop of a pool worker process (the child side of :mod:`sabot.engine.processes`).

A child runs one morsel at a time, so it limits its own native thread pools (Arrow's CPU pool,
Sabot's native scheduler) to one thread: the parent runs as many children as the controller
allows and the machine is never oversubscribed. The messages it reads and writes are described
in :mod:`sabot.engine.morsels`.

A child starts by importing this module alone; the modules a task needs (the inline loop,
shared memory, numpy, pyarrow, the processor registry) are imported when a task first needs
them, so a fresh child is ready sooner.
"""

from __future__ import annotations

import os
import pickle
import sys
import time
import traceback
from collections.abc import Callable
from typing import Any

from ..errors import ProcessingError
from .morsels import FN_PROCESSOR, ArrowMorsel, EncodedItems
from .results import join_parts, results_arrow

_native_limited = False


def _limit_native_threads() -> None:
    """One thread for Sabot's native scheduler, once user code has loaded it.

    Arrow's CPU pool already follows OMP_NUM_THREADS=1 (set by the parent). The native core is
    not imported here (it loads libarrow: a slow start for every worker); a task that used it
    leaves it in sys.modules, and the next task starts with it limited.
    """
    global _native_limited
    if _native_limited or "sabot._core" not in sys.modules:
        return
    _native_limited = True
    try:
        from .. import _native

        _native.set_threads(1)
    except Exception as exc:  # never fail a worker over a thread count
        print(f"sabot worker: cannot limit native threads: {exc}", file=sys.stderr)


def _load_function(kind: str, payload: Any) -> Callable[[Any], Any]:
    if kind == FN_PROCESSOR:
        from ..processors import get_processor  # (at the first task that needs it)

        return get_processor(payload)
    import cloudpickle

    try:
        return cloudpickle.loads(payload)
    except ImportError as exc:
        raise ImportError(
            f"the function cannot be loaded in a worker process: {exc}. Functions are sent by "
            "reference to their module, which must be importable in a fresh interpreter; "
            "define it in an importable module, or call "
            "cloudpickle.register_pickle_by_value(module) to send it by value") from exc


def _dump_exception(exc: BaseException) -> bytes | None:
    try:
        data = pickle.dumps(exc)
        pickle.loads(data)  # some exceptions pickle but cannot be rebuilt
        return data
    except Exception:
        return None


def _run_batch(func: Callable[[Any], Any], data: Any) -> Any:
    out = func(data)
    n_in, n_out = len(data), len(out)
    if n_out != n_in:
        raise ValueError(
            f"batch function returned {n_out} results for a morsel of {n_in} items; "
            "a batch function must return exactly one result per item"
        )
    return out


def _run(func: Callable[[Any], Any], batch: bool, offset: int, data: Any) -> Any:
    if batch:
        if isinstance(data, EncodedItems):
            # A cluster morsel still encoded: decoded here, the results encoded here too
            # (``encode`` takes what the function returned).
            value = data.decode(data.encoding, data.payload)
            encoding, blob = data.encode(_run_batch(func, value))
            return (len(value), encoding, blob)
        return _run_batch(func, data)
    from .inline import InlineRun, run_numpy_pieces  # (at the first task: see the docstring)
    from .shm import ArrowSlice, NumpySlice

    if isinstance(data, EncodedItems):
        # Decoded, run and encoded again here: the parent only moves bytes.
        items = data.decode(data.encoding, data.payload)
        if not isinstance(items, list):
            items = list(items)
        encoding, blob = data.encode(InlineRun(func, items, offset).run_all())
        return (len(items), encoding, blob)
    if isinstance(data, ArrowMorsel):
        # Arrow slices came as IPC bytes: rows/values become Python objects here, and the
        # results go back as Arrow (buffers, not pickled objects).
        results = InlineRun(func, data.decode().to_pylist(), offset).run_all()
        return results_arrow(results)
    if isinstance(data, NumpySlice):
        # Rows of a shared-memory copy of the input, read in place; results go back through
        # shared memory too when they have the expected type.
        return data.run(func, offset)
    if isinstance(data, ArrowSlice):
        return results_arrow(InlineRun(func, data.read_items(), offset).run_all())
    if type(data).__module__ == "numpy":
        # A numpy slice came as raw bytes: convert here, in parallel, and send back an array,
        # so the parent does no per-item work (it would be the pool's bottleneck).
        return join_parts(run_numpy_pieces(func, data, offset))
    return InlineRun(func, data, offset).run_all()


def worker_main(conn: Any, processor_modules: tuple[str, ...] = ()) -> None:
    """Serve tasks on ``conn`` until told to stop or the parent goes away."""
    _limit_native_threads()
    if processor_modules:
        from ..processors import load_processor_modules

        load_processor_modules(processor_modules)
    funcs: dict[int, tuple[Callable[[Any], Any], bool]] = {}
    while True:
        try:
            msg = conn.recv()
        except (EOFError, OSError):
            return  # parent is gone
        if msg is None:
            return
        op = msg[0]
        if op == "fn":
            _, token, kind, payload, batch = msg
            try:
                funcs[token] = (_load_function(kind, payload), batch)
            except BaseException as exc:  # reported when a task uses it
                funcs[token] = (_Unloadable(exc), False)
            continue
        if op == "forget":
            funcs.pop(msg[1], None)
            continue
        _, task_id, token, offset, data = msg
        _limit_native_threads()
        cpu0 = time.process_time()
        try:
            func, batch = funcs[token]
            if isinstance(func, _Unloadable):
                raise func.exc
            results = _run(func, batch, offset, data)
            reply: tuple[Any, ...] = ("ok", task_id, results, time.process_time() - cpu0)
        except BaseException as exc:
            if isinstance(exc, ProcessingError) and exc.original is not None:
                index, original, tb = exc.index, exc.original, exc.remote_traceback
            else:
                index, original = None, exc
                tb = "".join(traceback.format_exception(type(exc), exc, exc.__traceback__))
            summary = f"{type(original).__name__}: {original}"
            reply = ("err", task_id, index, _dump_exception(original), tb, summary)
            if isinstance(exc, (KeyboardInterrupt, SystemExit)):
                _send(conn, reply)
                return
        _send(conn, reply)


def main_fd(fd: int, parent_pid: int = 0) -> None:
    """Entry point of a pool child: ``fd`` is its end of a socket pair with the parent, whose
    pid is ``parent_pid``."""
    import multiprocessing.connection
    import signal

    # Ctrl-C in a terminal reaches the whole process group; the parent decides when workers
    # stop (it drains first), so the children ignore it.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    if parent_pid:
        die_with_parent(parent_pid)
    conn = multiprocessing.connection.Connection(fd)
    try:
        msg = conn.recv()
    except (EOFError, OSError):
        return
    _, parent_path, modules = msg
    # The parent's import path, so functions pickled by reference (from the user's modules)
    # import here too.
    for entry in reversed(parent_path):
        if entry not in sys.path:
            sys.path.insert(0, entry)
    try:
        conn.send(("ready", os.getpid()))
        worker_main(conn, tuple(modules))
    except (BrokenPipeError, ConnectionResetError, EOFError):
        pass  # the parent went away: nothing left to do
    finally:
        conn.close()


#: PR_SET_PDEATHSIG from <linux/prctl.h>.
_PR_SET_PDEATHSIG = 1
#: How often a child without PR_SET_PDEATHSIG looks for its parent.
_PARENT_POLL_S = 1.0


def die_with_parent(parent_pid: int) -> None:
    """Make sure this process ends when ``parent_pid`` does, even while user code runs here
    (a function that hangs, or holds the GIL in C): on Linux the kernel sends SIGKILL when
    the parent's thread that started us ends (PR_SET_PDEATHSIG); elsewhere a daemon thread
    watches the parent. Exits at once if the parent is already gone."""
    import signal

    armed = False
    if sys.platform.startswith("linux"):
        try:
            import ctypes

            libc = ctypes.CDLL(None, use_errno=True)
            armed = libc.prctl(_PR_SET_PDEATHSIG, int(signal.SIGKILL), 0, 0, 0) == 0
        except (OSError, AttributeError):
            armed = False
    # The parent may have died before the signal was armed: then we were re-parented.
    if os.getppid() != parent_pid:
        os._exit(1)
    if not armed:
        import threading

        def watch() -> None:
            while os.getppid() == parent_pid:
                time.sleep(_PARENT_POLL_S)
            os._exit(1)

        threading.Thread(target=watch, name="sabot-parent-watch", daemon=True).start()


class _Unloadable:
    def __init__(self, exc: BaseException) -> None:
        self.exc = exc


def _send(conn: Any, reply: tuple[Any, ...]) -> None:
    try:
        conn.send(reply)
    except (pickle.PicklingError, TypeError, AttributeError, ValueError) as exc:
        # A result that cannot travel back is the user's error; say which morsel.
        tb = "".join(traceback.format_exception(type(exc), exc, exc.__traceback__))
        conn.send(("err", reply[1], None, _dump_exception(exc), tb,
                   f"a result cannot be sent back to the parent process: {exc}"))


if __name__ == "__main__":  # pragma: no cover - started through multiprocessing only
    raise SystemExit(f"{os.path.basename(__file__)} is started by sabot's process pool")
