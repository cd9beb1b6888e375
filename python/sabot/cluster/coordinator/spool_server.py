"""The data port: the spool served to peers that do not share the coordinator's data dir.

A client or worker on another host (or in a container with another mount) cannot read the
spool's files, and before this sent every byte of its morsels and results through the control
socket: CURVE-encrypted, through the core thread, and an input written into SQLite's WAL. Here
it puts and gets the same files through a port of their own (SABOT_DATA_PORT), on a thread of
its own: the core thread sees only the references, as it does for a peer that shares the
directory, and the files are where the same-host data plane keeps them, on the same terms
(written under a temporary name, checked against their size and CRC-32, renamed into place,
fsynced when the journal is). So an acknowledged input is durable for the same reason: its
file is in the data dir before the submit that names it is accepted.

The frames are :mod:`sabot.cluster.protocol.data_port`'s; the names a request may touch are
:mod:`sabot.cluster.spool_names`'. Each request is answered on its own, so a request sent again
after a lost reply (a put writes the same bytes at the same offset) does no harm.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import zmq

from ...durable import fsync_dir
from ...mapped_file import CheckedFileError, read_checked
from .. import spool_names, transport
from ..protocol import data_port as dp
from ..security import ClusterKeys

log = logging.getLogger(__name__)

#: An upload that has not moved for this long is given up (its temporary file removed).
UPLOAD_IDLE_S = 120.0
_TMP = ".up-{}.tmp"


@dataclass
class _Upload:
    fd: int
    tmp: Path
    last: float = field(default_factory=time.monotonic)


class SpoolServer(threading.Thread):
    """The data port's thread: bind with the constructor, then :meth:`start`; :meth:`stop`."""

    def __init__(self, ctx: zmq.Context, keys: ClusterKeys, data_dir: Path, host: str,
                 port: int, *, sync: bool) -> None:
        super().__init__(name="sabot-data-port", daemon=True)
        self.data_dir = Path(data_dir)
        self.sync = sync
        self.sock, self.port = transport.server_socket(ctx, keys, host, port)
        self._uploads: dict[tuple[str, str], _Upload] = {}
        self._running = True
        #: Bytes of file data that came in and went out, and requests refused (not counting
        #: "missing" answers: a client asks whether an input is there before it puts it).
        self.bytes_in = 0
        self.bytes_out = 0
        self.refused = 0

    def stop(self) -> None:
        self._running = False

    def run(self) -> None:
        sock = self.sock
        try:
            while self._running:
                if sock.poll(200):
                    for _ in range(64):
                        try:
                            frames = sock.recv_multipart(zmq.NOBLOCK, copy=False)
                        except zmq.Again:
                            break
                        self._serve(frames)
                self._drop_idle(time.monotonic())
        finally:
            for upload in self._uploads.values():
                self._abandon(upload)
            self._uploads.clear()
            sock.close(0)

    # -- one request ---------------------------------------------------------------------
    def _serve(self, frames: list[Any]) -> None:
        peer, body = frames[0].bytes, frames[1:]
        try:
            op, name, meta, data = dp.parse_request(body)
            reply = getattr(self, "_" + op.decode())(peer, name, meta, data)
        except dp.DataPortError as exc:
            self.refused += exc.code != dp.MISSING
            reply = dp.err(exc.code, str(exc))
        except OSError as exc:
            reply = dp.err(dp.IO, f"the coordinator's data dir refused it: {exc}")
        except Exception as exc:  # (one bad request must not stop the port)
            log.exception("the data port failed a request")
            reply = dp.err(dp.IO, f"the data port failed: {type(exc).__name__}: {exc}")
        try:
            self.sock.send_multipart([peer, *reply], copy=False)
        except zmq.ZMQError:
            pass  # (the peer went away: it asks again)

    def _path(self, name: str, accepted: tuple[Any, ...], op: str) -> Path:
        problem = spool_names.name_problem(name, accepted, op)
        if problem is not None:
            raise dp.DataPortError(dp.REFUSED, problem)
        return self.data_dir / name

    def _stat(self, peer: bytes, name: str, meta: dict[str, Any], data: list[Any]) -> list[Any]:
        path = self._path(name, spool_names.STATABLE, "stat")
        try:
            size = path.stat().st_size
        except FileNotFoundError:
            raise dp.DataPortError(dp.MISSING, f"{name} is not there") from None
        return dp.ok({"size": size})

    def _get(self, peer: bytes, name: str, meta: dict[str, Any], data: list[Any]) -> list[Any]:
        path = self._path(name, spool_names.GETTABLE, "get")
        offset = dp.int_field(meta, "offset")
        length = dp.int_field(meta, "length", 0, dp.CHUNK_BYTES)
        try:
            fd = os.open(path, os.O_RDONLY)
        except FileNotFoundError:
            raise dp.DataPortError(dp.MISSING, f"{name} is not there (its job may be over "
                                   "or its results past retention)") from None
        try:
            size = os.fstat(fd).st_size
            chunk = os.pread(fd, min(length, max(0, size - offset)), offset)
        finally:
            os.close(fd)
        self.bytes_out += len(chunk)
        return dp.ok({"size": size}, chunk)

    def _put(self, peer: bytes, name: str, meta: dict[str, Any], data: list[Any]) -> list[Any]:
        path = self._path(name, spool_names.PUTTABLE, "put")
        upload_id = meta.get("upload")
        if not isinstance(upload_id, str) or not upload_id.isalnum() or len(upload_id) > 32:
            raise dp.DataPortError(dp.REFUSED, "a put's meta 'upload' must be an id of up to "
                                   "32 letters and digits")
        offset = dp.int_field(meta, "offset")
        key = (name, upload_id)
        upload = self._uploads.get(key)
        if upload is None and meta.get("last") and self._already_put(path, meta):
            # (the last request again: its reply was lost, the file is in place)
            return dp.ok({"size": meta["size"]})
        if upload is None:
            path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
            tmp = path.with_name(path.name + _TMP.format(upload_id))
            upload = _Upload(os.open(tmp, os.O_WRONLY | os.O_CREAT, 0o600), tmp)
            self._uploads[key] = upload
        upload.last = time.monotonic()
        at = offset
        for frame in data:
            buf = frame.buffer if isinstance(frame, zmq.Frame) else memoryview(frame)
            done = 0
            while done < len(buf):
                done += os.pwrite(upload.fd, buf[done:], at + done)
            at += len(buf)
            self.bytes_in += len(buf)
        if not meta.get("last"):
            return dp.ok({"size": at})
        size = dp.int_field(meta, "size")
        crc = dp.int_field(meta, "crc", 0, (1 << 32) - 1)
        del self._uploads[key]
        try:
            os.ftruncate(upload.fd, size)
            if self.sync:
                os.fsync(upload.fd)
        finally:
            os.close(upload.fd)
        try:
            read_checked(upload.tmp, size, crc, mapped=True)
        except CheckedFileError as exc:
            upload.tmp.unlink(missing_ok=True)
            raise dp.DataPortError(dp.DAMAGED, f"{name}: what came is not the file its sender "
                                   f"described ({exc.why})") from None
        os.replace(upload.tmp, path)
        if self.sync:
            fsync_dir(path.parent)
        return dp.ok({"size": size})

    @staticmethod
    def _already_put(path: Path, meta: dict[str, Any]) -> bool:
        size, crc = meta.get("size"), meta.get("crc")
        if not isinstance(size, int) or not isinstance(crc, int):
            return False
        try:
            read_checked(path, size, crc, mapped=True)
        except (CheckedFileError, ValueError):
            return False
        return True

    # -- uploads that stopped --------------------------------------------------------------
    def _drop_idle(self, now: float) -> None:
        for key, upload in list(self._uploads.items()):
            if now - upload.last >= UPLOAD_IDLE_S:
                del self._uploads[key]
                self._abandon(upload)

    @staticmethod
    def _abandon(upload: _Upload) -> None:
        try:
            os.close(upload.fd)
        except OSError:
            pass
        upload.tmp.unlink(missing_ok=True)


__all__ = ["UPLOAD_IDLE_S", "SpoolServer"]
