"""Data encodings of morsels and results (the ``encoding`` field of Assign, MorselResult,
SubmitJob and ResultBatch), and how a job's input is cut into morsels and its result put back
together.

encodings:
  ``msgpack``      a msgpack array of plain values (nil, bool, int, float, str, bin, array, map)
  ``pickle``       a cloudpickle'd Python list (arbitrary objects; CURVE-authenticated peers only)
  ``npy``          one numpy array in .npy format (no object dtype)
  ``arrow``        an Arrow IPC stream holding one RecordBatch (a table morsel)
  ``arrow-array``  an Arrow IPC stream with one RecordBatch whose single column ``values`` is the
                   array

result kinds (how the client joins the result morsels): ``list``, ``numpy``, ``arrow-array``,
``arrow-table``.

A result may also come as ``parts`` (never an input): a morsel the coordinator ran in pieces
(see :func:`slice_morsel` and docs/protocol.md) is stored as a msgpack array ``[result kind,
[[encoding, items, bytes], ...]]`` of its pieces' results in order, and decodes to their join.
"""

from __future__ import annotations

import hashlib
import io
from collections.abc import Iterable, Iterator, Sequence
from typing import Any

import msgpack

from ...errors import ProtocolError

ENCODINGS = ("msgpack", "pickle", "npy", "arrow", "arrow-array")
RESULT_KINDS = ("list", "numpy", "arrow-array", "arrow-table")
#: The result encoding of a morsel that ran in pieces (:func:`join_parts`).
PARTS = "parts"

#: Items sampled to estimate the encoded size of a list item.
_SAMPLE = 256
#: An input is cut into at least this many morsels when they can stay at least 1/16 of the
#: morsel size: a job of a few morsels would leave workers idle and finish on its slowest one.
MIN_MORSELS = 16
#: What the Python client's submit passes as ``max_morsels``: a big input is cut into about
#: this many morsels at most, bigger than the morsel size ...
MAX_JOB_MORSELS = 64
#: ... up to this many bytes each (a result of that size still travels whole).
MAX_MORSEL_BYTES = 8 << 20


class _NotPlain(Exception):
    pass


def _strict_default(obj: Any) -> Any:
    # strict_types sends tuples, subclasses and everything msgpack lacks here: refuse, so the
    # morsel falls back to pickle and the receiver gets exactly the types that were sent.
    raise _NotPlain


def _pack_plain(items: list[Any]) -> bytes | None:
    try:
        return msgpack.packb(items, use_bin_type=True, strict_types=True, default=_strict_default)
    except (_NotPlain, OverflowError, TypeError, ValueError):
        return None


def _pickle(obj: Any) -> bytes:
    import cloudpickle

    return cloudpickle.dumps(obj)


def encode_items(items: list[Any]) -> tuple[str, bytes]:
    """A list of Python values: msgpack when every value is plain, else pickle."""
    packed = _pack_plain(items)
    if packed is not None:
        return "msgpack", packed
    return "pickle", _pickle(list(items))


#: A part of an encoded value: bytes, or a view of the value's own memory (numpy, Arrow).
Part = bytes | memoryview


def joined(parts: Sequence[Part]) -> bytes:
    """The bytes ``parts`` make (the one part itself when it is bytes already)."""
    if len(parts) == 1 and isinstance(parts[0], bytes):
        return parts[0]
    return b"".join(parts)


def parts_size(parts: Sequence[Part]) -> int:
    """How many bytes ``parts`` make."""
    return sum(memoryview(p).nbytes for p in parts)


def encode_value(value: Any) -> tuple[str, bytes]:
    """One morsel of data or of results, whatever its type."""
    encoding, parts = encode_parts(value)
    return encoding, joined(parts)


def encode_parts(value: Any) -> tuple[str, list[Part]]:
    """:func:`encode_value` as the parts its bytes are made of, in order, without joining
    them: a numpy array's are its header and a view of its own buffer, so a writer that
    takes parts (a spool file) copies the values once, straight into the file."""
    if isinstance(value, list):
        return _one(encode_items(value))
    if isinstance(value, (tuple, range)):
        return _one(encode_items(list(value)))
    mod = type(value).__module__
    if mod.startswith("numpy"):
        import numpy as np

        arr = np.asarray(value)
        if arr.dtype.hasobject:
            return "pickle", [_pickle(arr)]
        return "npy", _npy_parts(arr)
    if mod.startswith("pyarrow"):
        import pyarrow as pa

        if isinstance(value, pa.ChunkedArray):
            value = value.combine_chunks()
        if isinstance(value, pa.Array):
            batch = pa.record_batch([value], names=["values"])
            return "arrow-array", [_ipc(batch)]
        if isinstance(value, pa.Table):
            batches = value.combine_chunks().to_batches()
            if not batches:
                batch = pa.RecordBatch.from_pylist([], schema=value.schema)
            else:
                batch = batches[0] if len(batches) == 1 else pa.concat_batches(batches)
            return "arrow", [_ipc(batch)]
        if isinstance(value, pa.RecordBatch):
            return "arrow", [_ipc(value)]
    return _one(encode_items(list(value)))


def _one(encoded: tuple[str, bytes]) -> tuple[str, list[Part]]:
    return encoded[0], [encoded[1]]


def _npy_parts(arr: Any) -> list[Part]:
    """An array in .npy format (what ``numpy.save`` writes) as [header, its data in place]."""
    import numpy as np

    fmt = np.lib.format
    if not arr.flags.c_contiguous:
        arr = np.ascontiguousarray(arr)
    header = io.BytesIO()
    # (a C-ordered header for a C-contiguous array: what np.save writes for it)
    fields = {"descr": fmt.dtype_to_descr(arr.dtype), "fortran_order": False,
              "shape": arr.shape}
    try:
        fmt.write_array_header_1_0(header, fields)
    except ValueError:  # a header over 64 KiB (a vast structured dtype)
        header = io.BytesIO()
        fmt.write_array_header_2_0(header, fields)
    if arr.size == 0:
        return [header.getvalue()]
    return [header.getvalue(), memoryview(arr.reshape(-1).view(np.uint8))]


def _npy_header(data: bytes | memoryview) -> tuple[tuple[int, ...], bool, Any, int]:
    """(shape, fortran order, dtype, offset of the values) of .npy bytes."""
    import numpy as np

    fmt = np.lib.format
    stream = io.BytesIO(memoryview(data)[:1 << 17])  # (the header only: at most 64 KiB + 10)
    version = fmt.read_magic(stream)
    read = fmt.read_array_header_1_0 if version == (1, 0) else fmt.read_array_header_2_0
    shape, fortran, dtype = read(stream, max_header_size=10_000)
    return shape, fortran, dtype, stream.tell()


def _npy_value(data: bytes | memoryview) -> Any:
    """The array in .npy bytes, over ``data`` itself when that is writable memory (a mapped
    file), else a copy (as ``numpy.load`` gives: the caller owns a writable array)."""
    import numpy as np

    shape, fortran, dtype, offset = _npy_header(data)
    if dtype.hasobject:
        raise ProtocolError("an npy payload may not hold Python objects (object dtype)")
    count = 1
    for n in shape:
        count *= n
    view = memoryview(data)
    if len(view) - offset != count * dtype.itemsize:
        raise ProtocolError(f"an npy payload of shape {shape} and dtype {dtype} needs "
                            f"{count * dtype.itemsize} bytes of values, it has "
                            f"{len(view) - offset}")
    arr = np.frombuffer(view, dtype=dtype, count=count, offset=offset)
    arr = arr.reshape(shape, order="F" if fortran else "C")
    return arr if arr.flags.writeable else arr.copy()


def _ipc(batch: Any) -> Part:
    """A RecordBatch as an Arrow IPC stream (a view of the stream's own buffer)."""
    import pyarrow as pa

    sink = pa.BufferOutputStream()
    with pa.ipc.new_stream(sink, batch.schema) as writer:
        writer.write_batch(batch)
    return memoryview(sink.getvalue())


def decode_value(encoding: str, data: bytes | memoryview) -> Any:
    """The inverse of :func:`encode_value`; ProtocolError for an unknown encoding or bad bytes.
    numpy and Arrow values are decoded in place over writable memory (a mapped file: no copy
    of the values); over bytes, a numpy array is a copy the caller owns."""
    if encoding == PARTS:
        return _decode_parts(data)
    try:
        if encoding == "msgpack":
            value = msgpack.unpackb(data, raw=False, strict_map_key=False, use_list=True)
            if not isinstance(value, list):
                raise ProtocolError("a msgpack morsel must be an array")
            return value
        if encoding == "pickle":
            import cloudpickle

            return cloudpickle.loads(data)
        if encoding == "npy":
            return _npy_value(data)
        if encoding in ("arrow", "arrow-array"):
            import pyarrow as pa

            reader = pa.ipc.open_stream(pa.py_buffer(data))
            batches = list(reader)
            if len(batches) != 1:
                table = pa.Table.from_batches(batches, schema=reader.schema)
                batch = table.combine_chunks().to_batches()[0] if table.num_rows else \
                    pa.RecordBatch.from_pylist([], schema=reader.schema)
            else:
                batch = batches[0]
            return batch.column(0) if encoding == "arrow-array" else batch
    except ProtocolError:
        raise
    except (ModuleNotFoundError, AttributeError):
        raise  # unpickling a value whose module is missing: reported by the caller
    except Exception as exc:
        raise ProtocolError(f"cannot decode a {encoding} payload: {exc}") from exc
    raise ProtocolError(f"unknown encoding {encoding!r}; known: {', '.join(ENCODINGS)}")


def slice_morsel(encoding: str, data: bytes, start: int, count: int) -> tuple[str, bytes]:
    """Items ``start`` to ``start + count`` of an encoded morsel (``count`` < 0: to its end),
    encoded again (a worker runs a piece of a morsel so). A morsel holding fewer items gives
    those it holds in that range (maybe none): the coordinator, which counts every piece's
    result, then finds that the submit claimed more items than its data holds. ProtocolError
    for a negative start or a count of 0."""
    if start < 0 or count == 0:
        raise ProtocolError(f"a piece of a morsel must start at 0 or later and hold items "
                            f"(start {start}, count {count})")
    value = decode_value(encoding, data)
    n = int(value.num_rows) if hasattr(value, "num_rows") else len(value)
    lo = min(start, n)
    hi = n if count < 0 else min(n, start + count)
    if hasattr(value, "slice") and not isinstance(value, list):  # Arrow
        piece = value.slice(lo, hi - lo)
    else:
        piece = value[lo:hi]
    return encode_value(piece) if encoding != "pickle" else ("pickle", _pickle(piece))


def join_parts(kind: str, parts: Sequence[tuple[str, int, bytes]]) -> bytes:
    """The ``parts`` result of a morsel from its pieces' results ((encoding, items, bytes), in
    order), without decoding them."""
    return msgpack.packb([kind, [[enc, items, data] for enc, items, data in parts]],
                         use_bin_type=True)


def _decode_parts(data: bytes) -> Any:
    try:
        kind, parts = msgpack.unpackb(data, raw=False, use_list=True)
        values = [decode_value(enc, blob) for enc, _, blob in parts]
    except ProtocolError:
        raise
    except (ModuleNotFoundError, AttributeError):
        raise
    except Exception as exc:
        raise ProtocolError(f"cannot decode a {PARTS} payload: {exc}") from exc
    if kind not in RESULT_KINDS or any(enc == PARTS for enc, _, _ in parts):
        raise ProtocolError(f"a {PARTS} payload holds result kind {kind!r} or nested parts")
    return join(kind, values)


def count_items(encoding: str, data: bytes) -> int | None:
    """The number of items a morsel's bytes hold, read from its header without decoding the
    items (cheap enough for the coordinator to check every submit); None for ``pickle``, which
    only unpickling could count (a worker reports the count it decoded, and the coordinator
    compares it then). ProtocolError when the bytes are not a payload of that encoding."""
    if encoding == "msgpack":
        n, header = _msgpack_array_len(data)
        # Every item takes at least one byte: a count beyond the bytes left is a lie even when
        # the header says it.
        if n > len(data) - header:
            raise ProtocolError(f"a msgpack morsel's header counts {n} items but only "
                                f"{len(data) - header} bytes follow")
        return n
    if encoding == "pickle":
        return None
    if encoding == "npy":
        try:
            shape = _npy_header(data)[0]
        except Exception as exc:
            raise ProtocolError(f"cannot read the header of an npy payload: {exc}") from exc
        if not shape:
            raise ProtocolError("an npy morsel must hold an array of at least one dimension")
        return int(shape[0])
    if encoding in ("arrow", "arrow-array"):
        import pyarrow as pa

        try:
            reader = pa.ipc.open_stream(pa.py_buffer(data))
            # Reading batches from an in-memory buffer maps them without copying the values.
            return sum(batch.num_rows for batch in reader)
        except Exception as exc:
            raise ProtocolError(f"cannot read an {encoding} payload: {exc}") from exc
    raise ProtocolError(f"unknown encoding {encoding!r}; known: {', '.join(ENCODINGS)}")


def _msgpack_array_len(data: bytes) -> tuple[int, int]:
    """(items, header bytes) of the msgpack array ``data`` starts with."""
    if not data:
        raise ProtocolError("an empty msgpack morsel (expected an array)")
    first = data[0]
    if 0x90 <= first <= 0x9F:
        return first & 0x0F, 1
    if first == 0xDC and len(data) >= 3:
        return int.from_bytes(data[1:3], "big"), 3
    if first == 0xDD and len(data) >= 5:
        return int.from_bytes(data[1:5], "big"), 5
    raise ProtocolError("a msgpack morsel must be an array")


# -- splitting a job's input ------------------------------------------------------------------
def submit_digest(func_name: str, func_pickle: bytes | None, result_kind: str,
                  morsels: Sequence[Sequence[Any]], priority: int) -> str:
    """What a submit holds (function, data, options) as 32 hex digits: a resubmit of the same
    job id is the same job when its digest is the same. Each part is length-prefixed, so no
    two different submits read as the same bytes."""
    h = hashlib.blake2b(digest_size=16)

    def part(data: Any) -> None:
        h.update(memoryview(data).nbytes.to_bytes(8, "little"))
        h.update(data)

    part(func_name.encode())
    part(b"\x01" + func_pickle if func_pickle is not None else b"\x00")
    part(result_kind.encode())
    part(str(int(priority)).encode())
    for encoding, items, data in morsels:
        part(f"{encoding}:{int(items)}".encode())
        part(data)
    return h.hexdigest()


def result_kind_of(data: Any) -> str:
    mod = type(data).__module__
    if mod.startswith("numpy"):
        return "numpy"
    if mod.startswith("pyarrow"):
        import pyarrow as pa

        if isinstance(data, (pa.Array, pa.ChunkedArray)):
            return "arrow-array"
        return "arrow-table"
    return "list"


def split(data: Any, morsel_bytes: int, morsel_items: int | None = None, *,
          max_morsels: int | None = None) -> tuple[str, list[list[Any]]]:
    """Cut ``data`` into encoded morsels of about ``morsel_bytes`` each (or exactly
    ``morsel_items`` items; with ``max_morsels``, a big input into bigger ones: see
    :func:`_rows_per_morsel`); returns (result kind, [[encoding, items, bytes], ...])."""
    kind, morsels = split_parts(data, morsel_bytes, morsel_items, max_morsels=max_morsels)
    for part in morsels:
        part[2] = joined(part[2])
    return kind, morsels


def split_parts(data: Any, morsel_bytes: int, morsel_items: int | None = None, *,
                max_morsels: int | None = None) -> tuple[str, list[list[Any]]]:
    """:func:`split` with each morsel's bytes as their parts (:func:`encode_parts`): a writer
    that takes parts stores numpy values without a copy in between."""
    kind = result_kind_of(data)
    morsels: list[list[Any]] = []
    for chunk in _chunks(data, kind, morsel_bytes, morsel_items, max_morsels):
        enc, parts = encode_parts(chunk)
        morsels.append([enc, len(chunk) if not hasattr(chunk, "num_rows") else chunk.num_rows,
                        parts])
    return kind, morsels


def _rows_per_morsel(total: int, nbytes: int, morsel_bytes: int, n: int | None = None,
                     max_morsels: int | None = None) -> int:
    """Rows per morsel for ``n`` rows (default ``total``) that take ``nbytes`` per ``total``:
    morsels of ``morsel_bytes``, at least :data:`MIN_MORSELS` of them while each stays at
    least 1/16 of the size; with ``max_morsels``, no more than about that many while each
    stays within :data:`MAX_MORSEL_BYTES` (a morsel costs the cluster a hand-out, a result
    and, in the spool, two files: a big input in 64 KiB morsels spends its time on those)."""
    per_item = max(1.0, nbytes / max(1, total))
    n = total if n is None else n
    size: float = morsel_bytes
    if max_morsels:
        size = max(size, min(MAX_MORSEL_BYTES, per_item * n / max_morsels))
    step = max(1, int(size / per_item))
    return max(1, min(step, max(step // 16, -(-n // MIN_MORSELS))))


def _chunks(data: Any, kind: str, morsel_bytes: int, morsel_items: int | None,
            max_morsels: int | None = None) -> Iterator[Any]:
    if kind == "numpy":
        import numpy as np

        arr = np.asarray(data)
        if arr.ndim == 0:
            raise TypeError("a 0-dimensional numpy array is no sequence of items")
        n = len(arr)
        step = morsel_items or _rows_per_morsel(n, arr.nbytes, morsel_bytes, None, max_morsels)
        for i in range(0, n, step):
            yield arr[i:i + step]
        return
    if kind in ("arrow-array", "arrow-table"):
        import pyarrow as pa

        if isinstance(data, pa.ChunkedArray):
            data = data.combine_chunks()
        elif isinstance(data, pa.RecordBatchReader):
            data = data.read_all()
        if isinstance(data, pa.Table):
            data = data.combine_chunks()
        n = len(data)
        step = morsel_items or _rows_per_morsel(n, data.nbytes, morsel_bytes, None, max_morsels)
        for i in range(0, n, step):
            chunk = data.slice(i, step)
            if isinstance(chunk, pa.Table):
                chunk = chunk.combine_chunks()
                batches = chunk.to_batches()
                chunk = batches[0] if len(batches) == 1 else pa.concat_batches(batches)
            yield chunk
        return
    items = data if isinstance(data, list) else list(data)
    n = len(items)
    if morsel_items:
        step = morsel_items
    else:
        sample = items[:_SAMPLE]
        enc = _pack_plain(sample)
        size = len(enc) if enc is not None else len(_pickle(sample))
        step = _rows_per_morsel(len(sample), size, morsel_bytes, n, max_morsels) if sample \
            else 1
    for i in range(0, n, step):
        yield items[i:i + step]


def join(kind: str, parts: Sequence[Any]) -> Any:
    """Join decoded result morsels (in order) into the job's result."""
    if kind == "list":
        out: list[Any] = []
        for p in parts:
            out.extend(p if isinstance(p, list) else _to_list(p))
        return out
    if kind == "numpy":
        import numpy as np

        if not parts:
            return np.array([])
        return np.concatenate([np.asarray(p) for p in parts])
    if kind == "arrow-array":
        import pyarrow as pa

        arrays = [p for p in parts]
        if not arrays:
            return pa.array([])
        return pa.concat_arrays([a.combine_chunks() if isinstance(a, pa.ChunkedArray) else a
                                 for a in arrays])
    if kind == "arrow-table":
        import pyarrow as pa

        tables = [pa.Table.from_batches([p]) if isinstance(p, pa.RecordBatch) else p
                  for p in parts]
        if not tables:
            return pa.table({})
        return pa.concat_tables(tables)
    raise ProtocolError(f"unknown result kind {kind!r}; known: {', '.join(RESULT_KINDS)}")


def _to_list(value: Any) -> list[Any]:
    to_pylist = getattr(value, "to_pylist", None)
    if callable(to_pylist):
        return to_pylist()
    tolist = getattr(value, "tolist", None)
    if callable(tolist):
        out = tolist()
        return out if isinstance(out, list) else [out]
    return list(value)


def iter_items(kind: str, parts: Iterable[Any]) -> Iterator[Any]:
    for p in parts:
        yield from (p if isinstance(p, list) else _to_list(p))


__all__ = [
    "ENCODINGS",
    "PARTS",
    "RESULT_KINDS",
    "decode_value",
    "encode_items",
    "encode_parts",
    "encode_value",
    "iter_items",
    "join",
    "join_parts",
    "joined",
    "parts_size",
    "result_kind_of",
    "slice_morsel",
    "split",
    "split_parts",
    "submit_digest",
]
