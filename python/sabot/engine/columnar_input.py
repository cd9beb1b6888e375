"""numpy and Arrow input of a per-item function: how its morsels reach pool processes (raw
array slices, Arrow IPC, or shared memory; never per-item pickling in this process), how the
results, which come back as arrays, are joined into the output, and how the rest of such
input runs inline in cache-sized pieces.
"""

from __future__ import annotations

import logging
import pickle
import time
from collections.abc import Callable
from typing import Any

import numpy as np
import pyarrow as pa

from ..errors import ProcessingError
from . import adapters, shm
from .adapters import Source, arrow_nbytes
from .functions import FunctionSpec, function_pickles
from .inline import NUMPY_PIECE, InlineRun, run_numpy_pieces
from .morsels import ArrowMorsel
from .results import join_numpy, results_arrow, results_part

log = logging.getLogger("sabot.engine")


def build_items(src: Source, results: list[Any]) -> Any:
    """The output of a per-item call over ``src``; ProcessingError when the results do not
    fit its type."""
    try:
        return src.build_items(results)
    except TypeError as exc:
        raise ProcessingError(str(exc), original=exc) from exc


class PieceRun:
    """A per-item function over the rest of numpy or Arrow input, inline, in pieces of 64K
    items: each piece is converted to Python objects, run, and its results made an array
    (numpy) or Arrow array (Arrow) at once. Faster than converting everything first (the
    objects are still in cache), and memory holds one piece of objects, not the whole input's.
    ``results`` keeps the controller's sample (Python objects); ``parts`` the result parts of
    the items run here since."""

    def __init__(self, func: Callable[[Any], Any], columnar: ColumnarInput, done: int,
                 sampled: list[Any]) -> None:
        self.func = func
        self.columnar = columnar
        self.n = len(columnar)
        self.done = done
        self.results = sampled
        self.parts: list[Any] = []

    @property
    def remaining(self) -> int:
        return self.n - self.done

    def step(self, k: int) -> None:
        end = min(self.n, self.done + k)
        if end <= self.done:
            return
        src = self.columnar.src
        if self.columnar.numpy:
            self.parts.extend(run_numpy_pieces(self.func, src.data[self.done:end], self.done))
        else:
            for start in range(self.done, end, NUMPY_PIECE):
                rows = min(end, start + NUMPY_PIECE) - start
                items = src.arrow_slice(start, rows).to_pylist()
                results = InlineRun(self.func, items, start).run_all()
                del items
                try:
                    self.parts.append(results_arrow(results))
                except TypeError as exc:
                    raise ProcessingError(str(exc), original=exc) from exc
        self.done = end


class ColumnarInput:
    """numpy or Arrow input for a per-item function: how its morsels travel to worker processes
    (raw array slices / Arrow IPC, never per-item pickling in this process) and how the
    results, which come back as arrays, are joined into the output."""

    def __init__(self, src: Source) -> None:
        self.src = src
        self.numpy = src.kind == adapters.NUMPY
        self.n = len(src)
        # shared-memory transport while a pool runs the items (open_shared .. close_shared)
        self._segments: list[shm.Segment] = []
        self._input: shm.Segment | None = None
        self._output: tuple[shm.Segment, Any] | None = None
        self._arrow_shared = False
        # the shared output as the whole result, and its pool-written tail (resolve .. join)
        self._whole: Any = None
        self._tail: Any = None

    @staticmethod
    def supports(src: Source) -> bool:
        if src.kind == adapters.NUMPY:
            return src.data.ndim == 1 and src.data.dtype.kind in "biuf"
        return src.kind in (adapters.ARROW_ARRAY, adapters.ARROW_CHUNKED, adapters.ARROW_BATCH,
                            adapters.ARROW_TABLE)

    def __len__(self) -> int:
        return self.n

    def head(self, rows: int) -> list[Any]:
        return self.src.data[:rows].tolist() if self.numpy else self.src.head(rows)

    def task_data(self, start: int, rows: int) -> Any:
        """What one pool task gets: a shared-memory descriptor once ``open_shared`` made the
        input shared, else the slice itself (raw array bytes / Arrow IPC over the pipe)."""
        if self._input is not None:
            out = None
            if self._output is not None:
                out = (self._output[0].path, self._output[1].str)
            return shm.NumpySlice(self._input.path, self.src.data.dtype.str, start, rows, out)
        if self._arrow_shared:
            return self._arrow_slice_shared(start, rows)
        return self._pipe_data(start, rows)

    def _pipe_data(self, start: int, rows: int) -> Any:
        if self.numpy:
            return self.src.data[start:start + rows]
        return ArrowMorsel.encode(self.src.arrow_slice(start, rows))

    def open_shared(self, sample_results: list[Any]) -> None:
        """Before a pool runs the items: copy numpy input once into shared memory (and make a
        shared output when the sample's results are fixed-width numbers), or send Arrow slices
        through shared memory. Inputs under ``shm.MIN_SHARED_BYTES`` keep the pipes; so does a
        system without room in ``/dev/shm`` (logged at DEBUG)."""
        data = self.src.data
        try:
            if self.numpy:
                if data.nbytes < shm.MIN_SHARED_BYTES:
                    return
                seg = shm.Segment(data.nbytes)
                self._segments.append(seg)
                np.frombuffer(seg.map, dtype=data.dtype, count=self.n)[:] = data
                self._input = seg
                part = results_part(sample_results) if sample_results else None
                if isinstance(part, np.ndarray) and part.dtype.kind in "biufc":
                    # workers write it; this process touches only the first rows
                    out = shm.Segment(self.n * part.dtype.itemsize, populate=False)
                    self._segments.append(out)
                    self._output = (out, part.dtype)
            else:
                nbytes = arrow_nbytes(data)
                if nbytes >= shm.MIN_SHARED_BYTES and shm.shared_dir() is not None:
                    self._arrow_shared = True
        except OSError as exc:
            log.debug("shared memory unavailable (%s); morsels travel over the pipes", exc)
            self.close_shared()

    def _arrow_slice_shared(self, start: int, rows: int) -> Any:
        batch = self.src.arrow_slice(start, rows)
        column = isinstance(batch, pa.Array)
        if column:
            batch = pa.RecordBatch.from_arrays([batch], names=["v"])
        mock = pa.MockOutputStream()
        with pa.ipc.new_stream(mock, batch.schema) as writer:
            writer.write_batch(batch)
        size = mock.size()
        try:
            seg = shm.Segment(size)
        except OSError as exc:
            log.debug("shared memory unavailable (%s); this morsel travels over the pipe", exc)
            return self._pipe_data(start, rows)
        self._segments.append(seg)
        sink = pa.FixedSizeBufferWriter(pa.py_buffer(seg.map))
        with pa.ipc.new_stream(sink, batch.schema) as writer:
            writer.write_batch(batch)
        sink.close()
        del sink  # its buffer views the mapping
        return shm.ArrowSlice(seg.path, 0, size, len(batch), column)

    def resolve(self, start: int, parts: list[Any]) -> list[Any]:
        """Tasks' results with those left in the shared output copied out (tasks cover the
        rows from ``start`` in order)."""
        if self._output is None:
            return parts
        seg, dtype = self._output
        out = np.frombuffer(seg.map, dtype=dtype, count=self.n)
        if parts and all(isinstance(p, shm.InShared) for p in parts):
            # Every task wrote its results: one array over the shared output, no copy (the
            # array keeps the mapping alive; close_shared only removes the file's name). The
            # join may put the first rows' results in front of it in place (see join).
            self._whole = out
            self._tail = out[start:]
            return [self._tail]
        pos, resolved = start, []
        for part in parts:
            if isinstance(part, shm.InShared):
                resolved.append(out[pos:pos + part.rows].copy())
            else:
                resolved.append(part)
            pos += len(part) if not isinstance(part, shm.InShared) else part.rows
        del out
        return resolved

    def close_shared(self) -> None:
        segments, self._segments = self._segments, []
        self._input = self._output = None
        self._arrow_shared = False
        for seg in segments:
            seg.close()

    def _result_part(self, results: list[Any]) -> Any:
        return results_part(results) if self.numpy else results_arrow(results)

    def build(self, results: list[Any]) -> Any:
        return build_items(self.src, results)

    def join(self, sample_results: list[Any], parts: list[Any]) -> Any:
        try:
            first = [self._result_part(sample_results)] if sample_results else []
        except TypeError as exc:
            raise ProcessingError(str(exc), original=exc) from exc
        # empty parts carry no type information (an empty array is float64 / null)
        parts = [p for p in [*first, *parts] if len(p)]
        if not parts:
            return self.build([])
        if self.numpy:
            whole, tail, self._whole, self._tail = self._whole, self._tail, None, None
            if whole is not None and parts[-1] is tail:
                # The pool wrote its rows into the shared output: the rows before them go in
                # front, in place, when they are of the same type (no copy of the output).
                heads = parts[:-1]
                if all(isinstance(p, np.ndarray) and p.dtype == whole.dtype for p in heads) \
                        and sum(len(p) for p in heads) == len(whole) - len(tail):
                    pos = 0
                    for p in heads:
                        whole[pos:pos + len(p)] = p
                        pos += len(p)
                    return whole
            return join_numpy(parts)
        return self.src.build_arrow_parts(parts)

    def ship_cost(self, done: int, sample_results: list[Any],
                  spec: FunctionSpec) -> tuple[float, bool, float]:
        """Parent-side seconds per item to send a slice and take the results back (buffers,
        not objects), whether the function pickles, and the per-item cost of converting items
        to Python objects and results back (paid by whoever runs the items)."""
        n = max(1, done)
        if not function_pickles(spec):
            return 0.0, False, 0.0
        t = time.perf_counter()
        self.head(done)
        try:
            part = self._result_part(sample_results)
        except TypeError:
            return 0.0, False, 0.0  # results Arrow cannot hold: the inline path reports it
        convert = time.perf_counter() - t
        t = time.perf_counter()
        pickle.dumps(self._pipe_data(0, done), protocol=5)
        pickle.loads(pickle.dumps(part, protocol=5))
        return (time.perf_counter() - t) / n, True, convert / n


__all__ = ["ColumnarInput", "PieceRun", "build_items"]
