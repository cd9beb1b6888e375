"""The main loop of a pool worker process (the child side of :mod:`sabot.engine.processes`).

A child runs one morsel at a time, so it limits its own native thread pools (Arrow's CPU pool,
Sabot's native scheduler) to one thread: the parent runs as many children as the controller
allows and the machine is never oversubscribed.

Wire format (tuples over a ``multiprocessing`` connection; both ends are this package):
parent -> child ``("fn", token, kind, payload)``, ``("run", task_id, token, offset, data)``,
``("forget", token)``, ``None`` (exit); child -> parent ``("ok", task_id, results, cpu_s)`` or
``("err", task_id, index, exception_bytes, traceback_text, summary)``.
"""

from __future__ import annotations

import os
import pickle
import sys
import time
import traceback
from collections.abc import Callable
from typing import Any

FN_PICKLED = "pickled"
FN_PROCESSOR = "processor"


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
        from ..processors import get_processor

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


def _run(func: Callable[[Any], Any], batch: bool, offset: int, data: Any) -> Any:
    if batch:
        out = func(data)
        n_in, n_out = len(data), len(out)
        if n_out != n_in:
            raise ValueError(
                f"batch function returned {n_out} results for a morsel of {n_in} items; "
                "a batch function must return exactly one result per item"
            )
        return out
    from .inline import InlineRun
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
        from .inline import run_numpy_pieces

        return join_parts(run_numpy_pieces(func, data, offset))
    return InlineRun(func, data, offset).run_all()


class AsyncAsSync:
    """An ``async def`` per-item function run to completion on this process's own event loop:
    how a CPU-bound coroutine function (one that never waits) runs on worker processes."""

    _loop: Any = None

    def __init__(self, func: Callable[[Any], Any]) -> None:
        self.func = func

    def __call__(self, item: Any) -> Any:
        coro = self.func(item)
        try:
            coro.send(None)
        except StopIteration as done:  # finished without waiting: no event loop needed
            return done.value
        coro.close()
        # It waits on something after all: run it properly, on this process's loop.
        import asyncio

        if AsyncAsSync._loop is None:
            AsyncAsSync._loop = asyncio.new_event_loop()
        return AsyncAsSync._loop.run_until_complete(self.func(item))


class ArrowMorsel:
    """A slice of Arrow data (an Array or a RecordBatch) as Arrow IPC bytes.

    Pickling a sliced pyarrow object would copy its whole parent buffers; the IPC writer keeps
    only the slice. ``decode`` gives the Array (one column) or RecordBatch back without copying.
    """

    __slots__ = ("column", "payload", "rows")

    def __init__(self, payload: bytes, column: bool, rows: int) -> None:
        self.payload = payload
        self.column = column
        self.rows = rows

    @classmethod
    def encode(cls, data: Any) -> ArrowMorsel:
        import pyarrow as pa

        column = isinstance(data, pa.Array)
        batch = pa.RecordBatch.from_arrays([data], names=["v"]) if column else data
        sink = pa.BufferOutputStream()
        with pa.ipc.new_stream(sink, batch.schema) as writer:
            writer.write_batch(batch)
        return cls(sink.getvalue().to_pybytes(), column, batch.num_rows)

    def decode(self) -> Any:
        import pyarrow as pa

        batch = pa.ipc.open_stream(pa.py_buffer(self.payload)).read_next_batch()
        return batch.column(0) if self.column else batch

    def __len__(self) -> int:
        return self.rows


class EncodedItems:
    """A morsel of items still in its wire encoding (a cluster worker's morsel as it came),
    with the module-level functions that decode it and encode its results (they pickle by
    reference). The child decodes, runs and encodes; the result is
    ``(items, encoding, bytes)``. ``rows`` is the item count when known cheaply (else an
    estimate, used only for statistics)."""

    __slots__ = ("decode", "encode", "encoding", "payload", "rows")

    def __init__(self, encoding: str, payload: bytes, rows: int,
                 decode: Callable[[str, bytes], Any],
                 encode: Callable[[list[Any]], tuple[str, bytes]]) -> None:
        self.encoding = encoding
        self.payload = payload
        self.rows = rows
        self.decode = decode
        self.encode = encode

    def __len__(self) -> int:
        return self.rows


def results_arrow(results: list[Any]) -> Any:
    """Per-item results as Arrow: a RecordBatch for dict rows, else an Array."""
    import pyarrow as pa

    if results and all(isinstance(r, dict) for r in results):
        try:
            return pa.RecordBatch.from_pylist(results)
        except (pa.ArrowException, TypeError, ValueError) as exc:
            raise _not_arrow(exc) from exc
    return arrow_array(results)


def arrow_array(results: list[Any]) -> Any:
    """Results as one Arrow array; TypeError saying what Arrow accepts when they do not fit."""
    import pyarrow as pa

    try:
        return pa.array(results)
    except (pa.ArrowException, TypeError, ValueError) as exc:
        raise _not_arrow(exc) from exc


def _not_arrow(exc: BaseException) -> TypeError:
    return TypeError(
        f"the function's results cannot be stored in Arrow ({exc}); return values of one "
        "Arrow-compatible type (numbers, strings, bools, dicts with the same keys, ...)")


def results_array(results: list[Any]) -> Any:
    """Results of a per-item function over numpy input as an array (ragged ones as objects)."""
    import numpy as np

    try:
        return np.array(results)
    except ValueError:
        out = np.empty(len(results), dtype=object)
        out[:] = results
        return out


def results_part(results: list[Any], ints: bool = False) -> Any:
    """One piece of the results of a per-item function over numpy input: an array when the
    results are scalars, else the list itself (an array of tuples would come back as rows or
    lists, and a later piece may make the whole output ragged; the join decides).

    ``ints``: earlier pieces were int64, so try a typed buffer first (~25% faster than numpy's
    type discovery). It accepts only integers (and bools) that fit in 64 bits, giving the values
    numpy would after joining with an int64 piece; anything else raises and takes numpy's way."""
    if ints:
        import array

        try:
            import numpy as np

            return np.frombuffer(array.array("q", results), dtype=np.int64)
        except (TypeError, OverflowError, ValueError):
            pass
    out = results_array(results)
    return out if out.ndim == 1 and out.dtype != object else results


def join_parts(parts: list[Any]) -> Any:
    """Result parts (see ``results_part``) joined into one part, as if made from all results
    at once: one array when every part is an array of scalars whose types combine, else the
    list of all results."""
    import numpy as np

    if parts and all(isinstance(p, np.ndarray) for p in parts):
        if len(parts) == 1:
            return parts[0]
        kinds = {p.dtype.kind for p in parts}
        if len({p.dtype for p in parts}) == 1 or kinds <= set("biuf") or kinds in ({"U"}, {"S"}):
            return np.concatenate(parts)
    return [x for p in parts for x in (p if isinstance(p, list) else p.tolist())]


def join_numpy(parts: list[Any]) -> Any:
    """Result parts joined into the output array of a per-item call over numpy input."""
    import numpy as np

    if not parts:
        return np.empty((0,))
    out = join_parts(parts)
    return out if isinstance(out, np.ndarray) else results_array(out)


def worker_main(conn: Any, processor_modules: tuple[str, ...] = ()) -> None:
    """Serve tasks on ``conn`` until told to stop or the parent goes away."""
    from ..errors import ProcessingError

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


def main_fd(fd: int) -> None:
    """Entry point of a pool child: ``fd`` is its end of a socket pair with the parent."""
    import multiprocessing.connection
    import signal
    import sys

    # Ctrl-C in a terminal reaches the whole process group; the parent decides when workers
    # stop (it drains first), so the children ignore it.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
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
