"""The spool's files and references (sabot.cluster.spool), on a real directory."""

from __future__ import annotations

import os
import time
from pathlib import Path

import pytest
from sabot.cluster.protocol import payload
from sabot.cluster.result_files import ResultFileError
from sabot.cluster.spool import SPOOL, SPOOL_MIN_BYTES, Spool, parse_ref, ref_bytes
from sabot.errors import ProtocolError


def test_the_token_is_the_data_dirs_and_only_its(tmp_path: Path) -> None:
    coordinator = Spool(tmp_path / "a")
    token = coordinator.create_token()
    assert coordinator.create_token() == token  # written once, kept
    assert Spool(tmp_path / "a").read_token() == token  # a peer on the same directory
    assert Spool(tmp_path / "b").read_token() is None  # a peer elsewhere finds none
    (tmp_path / "a" / "spool" / ".token").write_text("not a token")
    assert Spool(tmp_path / "a").read_token() is None
    assert oct((tmp_path / "a" / "spool").stat().st_mode & 0o777) == "0o700"


def test_big_morsels_go_to_files_small_ones_stay_inline(tmp_path: Path) -> None:
    spool = Spool(tmp_path)
    big = payload.encode_value(list(range(20_000)))
    small = payload.encode_value([1, 2, 3])
    assert len(big[1]) >= SPOOL_MIN_BYTES > len(small[1])
    sent = spool.put_inputs("job-1", [[big[0], 20_000, big[1]], [small[0], 3, small[1]]],
                            sync=True)
    assert sent[1] == [small[0], 3, small[1]]
    enc, items, ref = sent[0]
    assert (enc, items) == (SPOOL, 20_000)
    inner, size, crc = parse_ref(ref)
    path = spool.input_path("job-1", 0, crc)
    assert path.name == f"0.{crc:08x}.in"
    assert (inner, size) == (big[0], len(big[1])) and path.stat().st_size == size
    assert oct(path.stat().st_mode & 0o777) == "0o600"
    assert payload.decode_value(inner, spool.read(path, size, crc)) == list(range(20_000))
    assert spool.check(path, size) is None
    assert "holds" in (spool.check(path, size + 1) or "")
    assert not list(path.parent.glob("*.tmp"))


def test_a_conflicting_submit_never_overwrites_a_jobs_input(tmp_path: Path) -> None:
    spool = Spool(tmp_path)
    first = payload.encode_value(list(range(20_000)))
    other = payload.encode_value(list(range(1, 20_001)))
    (_, _, ref1), = spool.put_inputs("taken", [[first[0], 20_000, first[1]]], sync=False)
    (_, _, ref2), = spool.put_inputs("taken", [[other[0], 20_000, other[1]]], sync=False)
    _, size1, crc1 = parse_ref(ref1)
    _, _, crc2 = parse_ref(ref2)
    assert crc1 != crc2
    # The first job's input is as it was written (the second is a file of its own).
    assert spool.read(spool.input_path("taken", 0, crc1), size1, crc1) == first[1]
    # The same content again (a resubmit) finds its file and writes nothing new.
    mtime = spool.input_path("taken", 0, crc1).stat().st_mtime_ns
    spool.put_inputs("taken", [[first[0], 20_000, first[1]]], sync=False)
    assert spool.input_path("taken", 0, crc1).stat().st_mtime_ns == mtime


def test_a_damaged_or_missing_file_is_an_error_naming_it(tmp_path: Path) -> None:
    spool = Spool(tmp_path)
    path = spool.input_path("j", 0, 7)
    crc = spool.write(path, b"x" * 100, sync=False)
    path.write_bytes(b"y" * 100)
    with pytest.raises(ResultFileError, match=r"0\.00000007\.in is damaged.*CRC-32"):
        spool.read(path, 100, crc)
    path.unlink()
    with pytest.raises(ResultFileError, match=r"0\.00000007\.in is missing"):
        spool.read(path, 100, crc)


def test_references_are_checked(tmp_path: Path) -> None:
    assert parse_ref(ref_bytes("npy", 10, 7)) == ("npy", 10, 7)
    for bad in (b"\x01", ref_bytes(SPOOL, 1, 1), ref_bytes("npy", -1, 0),
                ref_bytes("npy", 1, 1 << 33)):
        with pytest.raises(ProtocolError, match="spool reference"):
            parse_ref(bad)


def test_a_job_of_dots_names_no_parent_directory(tmp_path: Path) -> None:
    spool = Spool(tmp_path / "data")
    assert spool.input_path("..", 0, 0).parent == tmp_path / "data" / "spool" / "j-.."


def test_the_sweep_keeps_claimed_and_young_directories(tmp_path: Path) -> None:
    spool = Spool(tmp_path)
    for job in ("claimed", "young", "orphan"):
        spool.write(spool.input_path(job, 0, 0), b"data", sync=False)
    old = time.time() - 100
    for job in ("claimed", "orphan"):
        os.utime(spool.job_dir(job), (old, old))
    assert spool.sweep({"claimed"}, older_than_s=50) == 1
    assert spool.job_dir("claimed").exists() and spool.job_dir("young").exists()
    assert not spool.job_dir("orphan").exists()
    spool.remove_job("young")
    assert not spool.job_dir("young").exists()
