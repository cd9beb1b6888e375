"""The same-host data plane: morsel inputs and results as files in the coordinator's data dir.

A client or worker on the coordinator's host (the README's three terminals) shares its data
dir. It proves so in its hello: ``spool_token`` is the token found in
``<SABOT_DATA_DIR>/spool/.token`` of its own data dir, which the coordinator wrote in its own
at start; the same token means the same directory (a container on the same host with another
mount, or another host, sees none or another). The welcome then says ``spool`` (1: shared; 2:
shared and files are fsynced, as ``SABOT_JOURNAL_SYNC=full`` asks), and from then on bulk bytes
skip the ZeroMQ hops (and their CURVE encryption) and SQLite:

- a client writes each big input morsel to ``spool/<job dir>/<morsel>.<crc32>.in`` before it
  submits,
  and the submit carries a reference (encoding :data:`SPOOL`: its inner encoding, size and
  CRC-32) in place of the bytes; the coordinator checks the file is there and that big, and
  journals the reference. The file is what makes the acknowledged input durable: it is in the
  data dir, beside the journal, on the same terms (fsynced when the journal is);
- a worker that shares the spool reads an assigned morsel from its file (one that does not
  gets the bytes from the coordinator, which reads the file for it), and writes a big result
  to ``spool/<job dir>/<morsel>.<attempt>.out`` (fsynced when the welcome said so), sending
  a reference; the coordinator moves the file into place among its result files
  (:mod:`sabot.cluster.result_files`) and journals where it is;
- a client that shares the spool asks for results by reference (``fetch-results`` ``files``)
  and reads the result files itself.

A job's spool directory goes when the job is over; one no job claims (a client that died
mid-upload, a result that came too late) goes once it is ``SABOT_SPOOL_ORPHAN_S`` old.
"""

from __future__ import annotations

import os
import re
import secrets
import shutil
import time
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from functools import partial
from pathlib import Path
from typing import Any

import msgpack

from ..crc import crc32
from ..durable import fsync_dir, write_replacing
from ..errors import ProtocolError
from ..mapped_file import CheckedFileError, read_checked
from .protocol import payload
from .result_files import ResultFileError, read_result, result_path

#: The encoding of a morsel or result that travels as a reference to its spool file.
SPOOL = "spool"
#: Morsels and results of at least this many bytes go through the spool (smaller ones cost
#: less inline than a file each).
SPOOL_MIN_BYTES = 32 << 10
#: A submit with this many bytes of input or more writes its files from PUT_THREADS threads.
PARALLEL_PUT_BYTES = 16 << 20
PUT_THREADS = 4
DIR_NAME = "spool"
TOKEN_FILE = ".token"
#: ``welcome.spool``: not shared, shared, shared and fsynced, reached through the data port.
NOT_SHARED, SHARED, SHARED_SYNCED, REMOTE = 0, 1, 2, 3
_TOKEN = re.compile(r"[0-9a-f]{32}")
_TMP = ".tmp"


def job_dir_name(job_id: str) -> str:
    """The spool directory of a job (prefixed: a job id of dots alone names no parent)."""
    return "j-" + job_id


def ref_bytes(encoding: str, size: int, crc: int) -> bytes:
    """The ``data`` of a :data:`SPOOL` morsel or result: [inner encoding, size, CRC-32]."""
    return msgpack.packb([encoding, size, crc], use_bin_type=True)


def parse_ref(data: bytes) -> tuple[str, int, int]:
    """(inner encoding, size, CRC-32) of a spool reference; ProtocolError when it is none."""
    try:
        enc, size, crc = msgpack.unpackb(bytes(data), raw=False)
    except Exception:  # noqa: BLE001 - any malformed reference is the same error
        raise ProtocolError("a spool reference must be a msgpack array [encoding, size, "
                            "crc32]") from None
    if not isinstance(enc, str) or enc == SPOOL or not isinstance(size, int) or size < 0 \
            or not isinstance(crc, int) or not 0 <= crc < 1 << 32:
        raise ProtocolError(f"bad spool reference [{enc!r}, {size!r}, {crc!r}]: expected "
                            "[encoding, size >= 0, crc32]")
    return enc, size, crc


def _parts(data: Any) -> Sequence[bytes | memoryview]:
    return data if isinstance(data, (list, tuple)) else (data,)


def crc_of(parts: Sequence[bytes | memoryview]) -> int:
    """The CRC-32 of the bytes ``parts`` make in order."""
    crc = 0
    for part in parts:
        crc = crc32(part, crc)
    return crc


def write_file(path: Path, data: bytes | memoryview | Sequence[bytes | memoryview], *,
               sync: bool, crc: int | None = None) -> int:
    """Write ``data`` (bytes, or the parts they are made of: written one after another, never
    joined) to the spool file ``path`` (a temporary name, renamed into place; fsynced with
    ``sync``, the directory too); returns its CRC-32 (``crc`` when the caller has it)."""
    folder = path.parent
    if not folder.is_dir():
        folder.mkdir(mode=0o700, parents=True, exist_ok=True)
    if crc is None:
        crc = crc_of(_parts(data))
    write_replacing(path.with_name(path.name + _TMP), path, data, sync=sync)
    if sync:
        fsync_dir(folder)
    return crc


def read_file(path: Path, size: int, crc: int, *, mapped: bool = False) -> bytes | memoryview:
    """The bytes of a spool file, checked against its reference (ResultFileError naming the
    file when it is missing, cut short or damaged); ``mapped``: a big one is mapped, not
    copied (:func:`sabot.mapped_file.read_checked`), for a value decoded in place."""
    try:
        return read_checked(path, size, crc, mapped=mapped)
    except CheckedFileError as exc:
        raise ResultFileError(f"spool file {exc}") from None


class Spool:
    """The spool directory of one data dir, as its coordinator or a peer sharing it sees it."""

    #: Its files are reached over the network (sabot.cluster.remote_spool): a read blocks
    #: for a transfer, so callers on an event loop make it in a thread.
    remote = False
    #: Morsels and results of at least this many bytes go through it.
    min_bytes = SPOOL_MIN_BYTES
    #: Whether a client asks if an input file is there before it writes it (a resubmit finds
    #: it written); over the network that is a round trip per file, and a put is idempotent.
    check_before_put = True

    def __init__(self, data_dir: Path) -> None:
        self.data_dir = Path(data_dir)
        self.root = self.data_dir / DIR_NAME

    # -- identity ------------------------------------------------------------------------
    def create_token(self) -> str:
        """(The coordinator, at start) the token of this data dir, written once if absent."""
        self.root.mkdir(mode=0o700, parents=True, exist_ok=True)
        token = self.read_token()
        if token is None:
            token = secrets.token_hex(16)
            tmp = self.root / (TOKEN_FILE + _TMP)
            tmp.write_text(token, encoding="ascii")
            os.replace(tmp, self.root / TOKEN_FILE)
            fsync_dir(self.root)
        return token

    def read_token(self) -> str | None:
        """The token this data dir holds; None when there is none (no coordinator uses it)."""
        try:
            text = (self.root / TOKEN_FILE).read_text(encoding="ascii").strip()
        except (OSError, UnicodeDecodeError):
            return None
        return text if _TOKEN.fullmatch(text) else None

    # -- paths ---------------------------------------------------------------------------
    def job_dir(self, job_id: str) -> Path:
        return self.root / job_dir_name(job_id)

    def input_path(self, job_id: str, idx: int, crc: int) -> Path:
        """Where input morsel ``idx`` with CRC-32 ``crc`` is: named by its content too, so a
        submit under a taken job id with other data (refused as a conflict) never overwrites
        the input of the job that has it."""
        return self.job_dir(job_id) / f"{idx}.{crc:08x}.in"

    def output_path(self, job_id: str, idx: int, attempt: int) -> Path:
        return self.job_dir(job_id) / f"{idx}.{attempt}.out"

    def result_path(self, job_id: str, idx: int) -> Path:
        """Where the coordinator keeps a morsel's result file (read by a sharing client)."""
        return result_path(self.data_dir, job_id, idx)

    # -- writing and reading -------------------------------------------------------------
    def write(self, path: Path, data: bytes | memoryview | Sequence[bytes | memoryview], *,
              sync: bool, crc: int | None = None) -> int:
        """Write ``data`` to ``path``: :func:`write_file`."""
        return write_file(path, data, sync=sync, crc=crc)

    def read(self, path: Path, size: int, crc: int) -> bytes:
        """The bytes of a spool file: :func:`read_file`."""
        return read_file(path, size, crc)  # type: ignore[return-value]

    def check(self, path: Path, size: int) -> str | None:
        """Why ``path`` cannot be the file a reference names (None: it can)."""
        try:
            held = path.stat().st_size
        except OSError as exc:
            return f"{path} cannot be read ({exc.strerror or exc})"
        if held != size:
            return f"{path} holds {held} bytes, the reference says {size}"
        return None

    def put_inputs(self, job_id: str, morsels: list[Any], *, sync: bool) -> list[Any]:
        """(A client) write the big ones of a submit's ``[encoding, items, data]`` morsels to
        their spool files (``data``: bytes, or the parts they are made of, written as they
        are); returns the morsels to submit, references in their place and small ones as
        bytes. A big submit's files are written by a few threads at once (checksumming and
        copying into the page cache both run without the GIL): the workers wait for it."""
        sizes = [payload.parts_size(_parts(data)) for _, _, data in morsels]
        put = partial(self._put_input, job_id, sync)
        if sum(sizes) >= PARALLEL_PUT_BYTES and len(morsels) > 1:
            with ThreadPoolExecutor(min(PUT_THREADS, len(morsels)),
                                    thread_name_prefix="sabot-spool-put") as pool:
                out = list(pool.map(put, range(len(morsels)), morsels, sizes))
        else:
            out = list(map(put, range(len(morsels)), morsels, sizes))
        if sync and any(part[0] == SPOOL for part in out):
            fsync_dir(self.root)
        return out

    def _put_input(self, job_id: str, sync: bool, i: int, morsel: list[Any],
                   size: int) -> list[Any]:
        enc, items, data = morsel
        parts = _parts(data)
        if size < self.min_bytes:
            return [enc, items, payload.joined(parts)]
        crc = crc_of(parts)
        path = self.input_path(job_id, i, crc)
        if not self.check_before_put or self.check(path, size) is not None:
            self.write(path, parts, sync=sync, crc=crc)
        return [SPOOL, items, ref_bytes(enc, size, crc)]

    def take_result(self, job_id: str, idx: int, ref: bytes) -> tuple[str, bytes | memoryview]:
        """(A client) (encoding, bytes; a big file mapped) of result ``idx`` that came as a
        reference to its result file (ResultFileError naming the file when it is gone or
        damaged)."""
        try:
            enc, size, crc = parse_ref(ref)
        except ProtocolError as exc:
            raise ResultFileError(f"result {idx} of job {job_id}: {exc}") from None
        return enc, read_result(self.result_path(job_id, idx), size, crc, mapped=True)

    # -- cleaning up ---------------------------------------------------------------------
    def remove_job(self, job_id: str) -> None:
        shutil.rmtree(self.job_dir(job_id), ignore_errors=True)

    def sweep(self, claimed: Any, older_than_s: float, now: float | None = None) -> int:
        """Remove the job directories no job in ``claimed`` (a container of job ids) holds
        and untouched for ``older_than_s``; returns how many went."""
        now = time.time() if now is None else now
        removed = 0
        try:
            entries = list(os.scandir(self.root))
        except OSError:
            return 0
        for entry in entries:
            if not entry.name.startswith("j-") or not entry.is_dir(follow_symlinks=False):
                continue
            if entry.name[2:] in claimed:
                continue
            try:
                age = now - entry.stat(follow_symlinks=False).st_mtime
            except OSError:
                continue
            if age >= older_than_s:
                shutil.rmtree(entry.path, ignore_errors=True)
                removed += 1
        return removed


__all__ = [
    "NOT_SHARED",
    "REMOTE",
    "SHARED",
    "SHARED_SYNCED",
    "SPOOL",
    "SPOOL_MIN_BYTES",
    "ResultFileError",
    "Spool",
    "job_dir_name",
    "parse_ref",
    "read_file",
    "ref_bytes",
    "write_file",
]
