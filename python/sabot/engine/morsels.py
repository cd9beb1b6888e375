"""What a process-pool task carries to a child: its function's kind, and its morsel when the
morsel is not a plain list or numpy slice.

Wire format (tuples over a ``multiprocessing`` connection; both ends are this package):
parent -> child ``("fn", token, kind, payload, batch)``, ``("run", task_id, token, offset,
data)``, ``("forget", token)``, ``None`` (exit); child -> parent ``("ok", task_id, results,
cpu_s)`` or ``("err", task_id, index, exception_bytes, traceback_text, summary)``. ``kind`` is
:data:`FN_PICKLED` (``payload``: cloudpickle bytes) or :data:`FN_PROCESSOR` (a registered
processor's name). ``data`` is a list, a numpy slice, an :class:`ArrowMorsel`, an
:class:`EncodedItems` or a shared-memory descriptor (:mod:`sabot.engine.shm`).

Light on purpose: a pool child imports it at start, before it needs pyarrow.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

FN_PICKLED = "pickled"
FN_PROCESSOR = "processor"


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
    with the callables that decode it and encode its results (module-level functions, or
    small instances of module-level classes). The child decodes, runs and encodes; the result is
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


__all__ = ["FN_PICKLED", "FN_PROCESSOR", "ArrowMorsel", "EncodedItems"]
