"""Input and output adapters: one per data kind ``process_data`` accepts.

An adapter knows three things about its input: the items a per-item function sees (a Python
sequence), how to cut the input into morsels for a batch function (zero-copy slices where the
data kind allows), and how to build the output of the right type (list for list-like input,
numpy for numpy, Arrow for Arrow) from the results in input order.
"""

from __future__ import annotations

import sys
from collections.abc import Iterator, Sequence
from typing import Any

import numpy as np
import pyarrow as pa

from .results import arrow_array, results_array

LIST = "list"
ITERABLE = "iterable"
NUMPY = "numpy"
ARROW_ARRAY = "arrow-array"
ARROW_CHUNKED = "arrow-chunked-array"
ARROW_BATCH = "arrow-record-batch"
ARROW_TABLE = "arrow-table"
ARROW_READER = "arrow-reader"

ACCEPTED = (
    "list, tuple, range, any iterable (generator), numpy.ndarray, pyarrow Array, ChunkedArray, "
    "RecordBatch, Table or RecordBatchReader"
)

_POINTER = 8  # a list slot


def python_item_bytes(items: Sequence[Any]) -> float:
    """Average bytes per item of a Python sequence, from a spread sample of up to 64 items."""
    n = len(items)
    if n == 0:
        return float(_POINTER)
    step = max(1, n // 64)
    sample = [items[i] for i in range(0, n, step)][:64]
    return _POINTER + sum(sys.getsizeof(x) for x in sample) / len(sample)


def rows_per_morsel(morsel_bytes: int, bytes_per_row: float) -> int:
    """Rows in one morsel: MORSEL_SIZE_KB of real data, at least one row."""
    return max(1, int(morsel_bytes // max(bytes_per_row, 1.0)))


class Source:
    """A finite input: sized, sliceable, with a known output type."""

    kind: str = LIST

    def __init__(self, data: Any) -> None:
        self.data = data

    def __len__(self) -> int:
        return len(self.data)

    # -- per-item view ------------------------------------------------------------------
    def items(self) -> Sequence[Any]:
        """The items a per-item function receives, as an indexable sequence."""
        return self.data

    def bytes_per_row(self) -> float:
        return python_item_bytes(self.items())

    def build_items(self, results: list[Any]) -> Any:
        """The output of a per-item run: ``results`` in input order, of this kind's type."""
        return results

    def build_arrow_parts(self, parts: list[Any]) -> Any:
        """The output of a per-item run whose results came back as Arrow parts (Arrays or
        RecordBatches, in order), joined without going through Python objects when their types
        agree, and exactly like ``build_items`` otherwise."""
        try:
            if parts and all(isinstance(p, pa.RecordBatch) for p in parts):
                table = pa.Table.from_batches(parts)
                if self.kind == ARROW_BATCH:
                    return table.combine_chunks().to_batches()[0]
                if self.kind == ARROW_TABLE:
                    return table
            elif parts and all(isinstance(p, pa.Array) for p in parts):
                whole = pa.chunked_array(parts).combine_chunks()
                if self.kind in (ARROW_ARRAY, ARROW_BATCH):
                    return whole
                if self.kind == ARROW_TABLE:
                    return pa.chunked_array([whole], type=whole.type)
                if self.kind == ARROW_CHUNKED:
                    chunks, start = [], 0
                    for chunk in self.data.chunks:
                        chunks.append(whole.slice(start, len(chunk)))
                        start += len(chunk)
                    return pa.chunked_array(chunks, type=whole.type)
        except (pa.ArrowException, ValueError, TypeError):
            pass  # types inferred differently per part: rebuild from the values
        return self.build_items([x for p in parts for x in p.to_pylist()])

    # -- batch view ---------------------------------------------------------------------
    def morsels(self, rows: int) -> Iterator[tuple[int, Any]]:
        """``(offset, morsel)`` pairs covering the input in order, ``rows`` rows each."""
        data = self.data
        n = len(data)
        as_list = isinstance(data, range)
        for start in range(0, n, rows):
            part = data[start:start + rows]
            yield start, (list(part) if as_list else part)

    def build_batches(self, outputs: list[Any]) -> Any:
        """The output of a batch run from the per-morsel outputs, in order."""
        results: list[Any] = []
        for out in outputs:
            results.extend(out)
        return results


class ListSource(Source):
    kind = LIST


class NumpySource(Source):
    kind = NUMPY

    def __init__(self, data: np.ndarray) -> None:
        if data.ndim == 0:
            raise TypeError("a 0-dimensional numpy array has no items; pass a 1-D or larger array")
        super().__init__(data)
        self._items: Sequence[Any] | None = None

    def items(self) -> Sequence[Any]:
        # Python scalars for 1-D numeric arrays: what a per-item function expects, and several
        # times faster to call on than numpy scalars. Rows (views) for N-D arrays.
        if self._items is None:
            arr = self.data
            if arr.ndim == 1 and arr.dtype.kind != "O":
                self._items = arr.tolist()
            else:
                self._items = list(arr)
        return self._items

    def bytes_per_row(self) -> float:
        arr = self.data
        if len(arr) == 0:
            return float(arr.itemsize or 1)
        if arr.dtype.kind == "O":
            return python_item_bytes(arr)
        return arr.nbytes / len(arr)

    def build_items(self, results: list[Any]) -> np.ndarray:
        if not results:
            return np.empty((0,), dtype=self.data.dtype)
        return results_array(results)

    def morsels(self, rows: int) -> Iterator[tuple[int, Any]]:
        arr = self.data
        for start in range(0, len(arr), rows):
            yield start, arr[start:start + rows]

    def build_batches(self, outputs: list[Any]) -> np.ndarray:
        if not outputs:
            return np.empty((0,), dtype=self.data.dtype)
        return np.concatenate([np.asarray(o) for o in outputs])


def arrow_nbytes(obj: Any) -> int:
    """The bytes of an Arrow object's buffers."""
    try:
        return int(obj.get_total_buffer_size())
    except (AttributeError, pa.ArrowException):
        return int(obj.nbytes)


def _looks_like_rows(results: list[Any]) -> bool:
    return any(isinstance(r, dict) for r in results[:1]) and all(
        isinstance(r, dict) for r in results
    )


def _concat_arrow(outputs: list[Any]) -> Any:
    """Join batch outputs: RecordBatches/Tables into a Table, arrays into a ChunkedArray."""
    parts: list[Any] = []
    for out in outputs:
        if isinstance(out, (pa.Array, pa.ChunkedArray, pa.RecordBatch, pa.Table)):
            parts.append(out)
        elif isinstance(out, np.ndarray):
            parts.append(pa.array(out))
        else:
            parts.append(arrow_array(list(out)))
    if parts and all(isinstance(p, (pa.RecordBatch, pa.Table)) for p in parts):
        tables = [pa.Table.from_batches([p]) if isinstance(p, pa.RecordBatch) else p for p in parts]
        return pa.concat_tables(tables)
    chunks: list[pa.Array] = []
    for p in parts:
        if isinstance(p, pa.ChunkedArray):
            chunks.extend(p.chunks)
        elif isinstance(p, pa.Array):
            chunks.append(p)
        else:
            raise TypeError(
                "a batch function over Arrow data must return arrays or record batches "
                f"consistently; got a mix including {type(p).__name__}"
            )
    return pa.chunked_array(chunks) if chunks else pa.chunked_array([], type=pa.null())


class ArrowArraySource(Source):
    kind = ARROW_ARRAY

    def __init__(self, data: pa.Array) -> None:
        super().__init__(data)
        self._items: list[Any] | None = None

    def head(self, rows: int) -> list[Any]:
        """The first ``rows`` items, without converting the rest."""
        return self.data.slice(0, rows).to_pylist()

    def arrow_slice(self, start: int, rows: int) -> Any:
        return self.data.slice(start, rows)

    def items(self) -> Sequence[Any]:
        if self._items is None:
            self._items = self.data.to_pylist()
        return self._items

    def bytes_per_row(self) -> float:
        n = len(self.data)
        return arrow_nbytes(self.data) / n if n else 1.0

    def build_items(self, results: list[Any]) -> pa.Array:
        return arrow_array(results)

    def morsels(self, rows: int) -> Iterator[tuple[int, Any]]:
        arr = self.data
        for start in range(0, len(arr), rows):
            yield start, arr.slice(start, rows)

    def build_batches(self, outputs: list[Any]) -> Any:
        out = _concat_arrow(outputs)
        if isinstance(out, pa.ChunkedArray):
            return out.combine_chunks() if out.num_chunks != 1 else out.chunk(0)
        return out


class ArrowChunkedSource(ArrowArraySource):
    kind = ARROW_CHUNKED

    def build_items(self, results: list[Any]) -> pa.ChunkedArray:
        # Keep the input's chunk layout; one conversion so every chunk has the same type.
        whole = arrow_array(results)
        chunks, start = [], 0
        for chunk in self.data.chunks:
            chunks.append(whole.slice(start, len(chunk)))
            start += len(chunk)
        return pa.chunked_array(chunks, type=whole.type)

    def arrow_slice(self, start: int, rows: int) -> Any:
        return self.data.slice(start, rows).combine_chunks()

    def morsels(self, rows: int) -> Iterator[tuple[int, Any]]:
        offset = 0
        for chunk in self.data.chunks:
            for start in range(0, len(chunk), rows):
                yield offset + start, chunk.slice(start, rows)
            offset += len(chunk)

    def build_batches(self, outputs: list[Any]) -> Any:
        return _concat_arrow(outputs)


class ArrowTabularSource(Source):
    """RecordBatch or Table: per-item functions see rows as dicts."""

    def __init__(self, data: pa.RecordBatch | pa.Table) -> None:
        super().__init__(data)
        self.kind = ARROW_BATCH if isinstance(data, pa.RecordBatch) else ARROW_TABLE
        self._items: list[Any] | None = None

    def __len__(self) -> int:
        return self.data.num_rows

    def head(self, rows: int) -> list[Any]:
        return self.data.slice(0, rows).to_pylist()

    def arrow_slice(self, start: int, rows: int) -> Any:
        """Rows ``[start, start + rows)`` as one RecordBatch."""
        data = self.data.slice(start, rows)
        if isinstance(data, pa.RecordBatch):
            return data
        batches = data.combine_chunks().to_batches()
        return batches[0] if batches else pa.RecordBatch.from_pylist([], schema=data.schema)

    def items(self) -> Sequence[Any]:
        if self._items is None:
            self._items = self.data.to_pylist()
        return self._items

    def bytes_per_row(self) -> float:
        n = self.data.num_rows
        return arrow_nbytes(self.data) / n if n else 1.0

    def build_items(self, results: list[Any]) -> Any:
        if results and _looks_like_rows(results):
            if self.kind == ARROW_BATCH:
                return pa.RecordBatch.from_pylist(results)
            return pa.Table.from_pylist(results)
        whole = arrow_array(results)
        return whole if self.kind == ARROW_BATCH else pa.chunked_array([whole], type=whole.type)

    def morsels(self, rows: int) -> Iterator[tuple[int, Any]]:
        data = self.data
        if isinstance(data, pa.RecordBatch):
            for start in range(0, data.num_rows, rows):
                yield start, data.slice(start, rows)
            return
        offset = 0
        for rb in data.to_batches(max_chunksize=rows):
            yield offset, rb
            offset += rb.num_rows

    def build_batches(self, outputs: list[Any]) -> Any:
        out = _concat_arrow(outputs)
        if self.kind == ARROW_BATCH:
            if isinstance(out, pa.Table):
                return out.combine_chunks().to_batches()[0] if out.num_rows else (
                    pa.RecordBatch.from_pylist([], schema=out.schema))
            return out.combine_chunks() if out.num_chunks != 1 else out.chunk(0)
        return out


def adapt(data: Any) -> Source:
    """The adapter for a finite input (a RecordBatchReader is read whole here; stream it with
    ``process_stream`` to keep memory flat). Generators are materialised into a list."""
    if isinstance(data, (list, tuple, range)):
        return ListSource(data)
    if isinstance(data, np.ndarray):
        return NumpySource(data)
    if isinstance(data, pa.ChunkedArray):
        return ArrowChunkedSource(data)
    if isinstance(data, pa.Array):
        return ArrowArraySource(data)
    if isinstance(data, (pa.RecordBatch, pa.Table)):
        return ArrowTabularSource(data)
    if isinstance(data, pa.RecordBatchReader):
        return ArrowTabularSource(data.read_all())
    if isinstance(data, (str, bytes, bytearray, dict)):
        raise TypeError(
            f"data of type {type(data).__name__} is ambiguous (process its items explicitly, "
            f"e.g. list(data)); accepted: {ACCEPTED}"
        )
    if hasattr(data, "__iter__") or hasattr(data, "__aiter__"):
        if hasattr(data, "__aiter__"):
            raise TypeError(
                "process_data needs a synchronous input; stream an async iterable with "
                "launcher.process_stream(source, func)"
            )
        return ListSource(list(data))
    raise TypeError(f"data of type {type(data).__name__} is not supported; accepted: {ACCEPTED}")


__all__ = ["ACCEPTED", "Source", "adapt", "arrow_nbytes", "python_item_bytes", "rows_per_morsel"]
