"""Morsel payloads without copies: numpy and Arrow values encoded as parts of their own memory,
decoded in place over a mapped file, and big inputs cut into few, bigger morsels."""

from __future__ import annotations

import io
import os
import zlib
from pathlib import Path

import numpy as np
import pyarrow as pa
import pytest
from sabot.cluster.protocol import payload
from sabot.cluster.spool import read_file, write_file
from sabot.errors import ProtocolError
from sabot.mapped_file import MAP_MIN_BYTES, CheckedFileError, read_checked

ARRAYS = [
    np.arange(10.0),
    np.arange(12).reshape(3, 4),
    np.arange(12).reshape(3, 4).T,  # Fortran-ordered: written in C order
    np.arange(20)[::2],  # not contiguous
    np.array([], dtype="i4"),
    np.array(["a", "bc"]),
    np.arange(5).astype("M8[s]"),
    np.zeros(3, dtype=[("x", "i4"), ("y", "f8")]),
]


@pytest.mark.parametrize("arr", ARRAYS, ids=lambda a: f"{a.dtype}-{a.shape}")
def test_numpy_parts_are_the_bytes_numpy_save_writes(arr: np.ndarray) -> None:
    enc, parts = payload.encode_parts(arr)
    assert enc == "npy"
    saved = io.BytesIO()
    np.save(saved, np.ascontiguousarray(arr), allow_pickle=False)
    assert b"".join(parts) == saved.getvalue()
    if arr.size and arr.flags.c_contiguous:
        # the values part is the array's own memory, not a copy
        assert np.shares_memory(np.frombuffer(parts[1], dtype=np.uint8), arr.view(np.uint8))
    back = payload.decode_value(enc, b"".join(parts))
    assert back.dtype == arr.dtype and back.shape == arr.shape and (back == arr).all()
    assert back.flags.writeable
    assert payload.count_items(enc, b"".join(parts)) == len(arr)


def test_an_array_decoded_over_bytes_is_a_copy_the_caller_may_write() -> None:
    blob = payload.encode_value(np.arange(4))[1]
    back = payload.decode_value("npy", blob)
    back[0] = 99  # bytes are immutable: this must be the caller's own array
    assert payload.decode_value("npy", blob)[0] == 0


def test_a_big_array_is_decoded_in_place_over_its_mapped_file(tmp_path: Path) -> None:
    arr = np.arange(MAP_MIN_BYTES // 8 * 3, dtype=np.int64)
    enc, parts = payload.encode_parts(arr)
    path = tmp_path / "m.in"
    crc = write_file(path, parts, sync=False)
    size = path.stat().st_size
    assert crc == zlib.crc32(path.read_bytes())
    data = read_file(path, size, crc, mapped=True)
    assert isinstance(data, memoryview)  # mapped, not read into a bytes object
    back = payload.decode_value(enc, data)
    assert (back == arr).all()
    assert np.shares_memory(back, np.frombuffer(data, dtype=np.uint8))
    # writable, and a write changes the caller's pages only, never the file
    back[:3] = -1
    again = payload.decode_value(enc, read_file(path, size, crc, mapped=True))
    assert again[:3].tolist() == [0, 1, 2]
    # the file may go while a value still lives over its mapping
    os.unlink(path)
    assert back[-1] == arr[-1]


def test_a_small_file_is_read_and_a_damaged_one_is_named(tmp_path: Path) -> None:
    path = tmp_path / "s.in"
    path.write_bytes(b"abc")
    assert read_checked(path, 3, zlib.crc32(b"abc"), mapped=True) == b"abc"
    with pytest.raises(CheckedFileError, match=r"s\.in is damaged: it holds 3 bytes, 4 were"):
        read_checked(path, 4, 0, mapped=True)
    big = tmp_path / "b.in"
    big.write_bytes(b"\0" * MAP_MIN_BYTES)
    with pytest.raises(CheckedFileError, match=r"b\.in is damaged: .*CRC-32 00000001"):
        read_checked(big, MAP_MIN_BYTES, 1, mapped=True)
    with pytest.raises(CheckedFileError, match=r"gone\.in is missing"):
        read_checked(tmp_path / "gone.in", 1, 0)


def test_a_cut_npy_payload_is_refused() -> None:
    blob = payload.encode_value(np.arange(100))[1]
    with pytest.raises(ProtocolError, match="needs 800 bytes of values, it has 799"):
        payload.decode_value("npy", blob[:-1])


def test_arrow_parts_decode_without_copying_their_values() -> None:
    table = pa.table({"a": np.arange(1000), "b": [str(i) for i in range(1000)]})
    enc, parts = payload.encode_parts(table)
    assert enc == "arrow" and len(parts) == 1
    buf = pa.py_buffer(parts[0])
    back = payload.decode_value(enc, parts[0])
    assert back.equals(table.to_batches()[0])
    values = back.column(0).buffers()[1]
    assert buf.address <= values.address < buf.address + buf.size


def test_a_big_input_is_cut_into_few_big_morsels_a_small_one_as_before() -> None:
    most = payload.MAX_JOB_MORSELS
    big = list(range(10_000_000))
    # 10M ints (~50 MB as msgpack): about MAX_JOB_MORSELS morsels, not 64 KiB ones
    kind, morsels = payload.split(big, 64 << 10, max_morsels=most)
    assert kind == "list"
    assert most // 2 <= len(morsels) <= most + 1
    assert sum(items for _, items, _ in morsels) == 10_000_000
    # without a cap (an HTTP submit), morsels of the morsel size as before
    assert len(payload.split(big, 64 << 10)[1]) > 2 * most
    # 800 MB of float64: morsels stop growing at MAX_MORSEL_BYTES
    n = 100_000_000
    step = payload._rows_per_morsel(n, n * 8, 64 << 10, None, most)
    assert step * 8 <= payload.MAX_MORSEL_BYTES and -(-n // step) > most
    # a small input keeps the morsel size and the MIN_MORSELS rule
    _, small = payload.split(list(range(10_000)), 1 << 10, max_morsels=most)
    assert len(small) == payload.MIN_MORSELS
    _, one = payload.split(list(range(10)), 64 << 10, max_morsels=most)
    assert len(one) == 1


def test_the_python_client_cuts_a_big_input_into_at_most_about_64_morsels() -> None:
    from sabot.distributed import _split_and_digest

    kind, morsels, _, nbytes = _split_and_digest(
        np.arange(10_000_000, dtype=np.int64), 64 << 10, None, "f", None, 0, None)
    assert kind == "numpy" and nbytes > 80_000_000
    assert payload.MAX_JOB_MORSELS // 2 <= len(morsels) <= payload.MAX_JOB_MORSELS + 1


def test_a_big_submit_writes_its_files_from_threads_in_order(tmp_path: Path) -> None:
    from sabot.cluster.spool import PARALLEL_PUT_BYTES, Spool, parse_ref

    arr = np.arange(PARALLEL_PUT_BYTES // 8 * 2, dtype=np.int64)  # twice the threshold
    _, morsels = payload.split_parts(arr, 1 << 20)
    spool = Spool(tmp_path)
    refs = spool.put_inputs("j1", morsels, sync=False)
    assert len(refs) == len(morsels) > 4
    back = []
    for i, (enc, items, ref) in enumerate(refs):
        assert enc == "spool"
        inner, size, crc = parse_ref(ref)
        data = spool.read(spool.input_path("j1", i, crc), size, crc)
        back.append(payload.decode_value(inner, data))
        assert len(back[-1]) == items
    assert np.array_equal(np.concatenate(back), arr)
