"""How other threads reach the coordinator's core thread: a queue of requests, each with a
future for its answer, and a pipe whose readable end wakes the core's poller."""

from __future__ import annotations

import concurrent.futures
import contextlib
import os
import queue
from collections.abc import Iterator
from typing import Any

from ...errors import CoordinatorUnavailableError


class Inbox:
    """Requests (a message to handle, or a function to run) for the core thread."""

    def __init__(self) -> None:
        self._queue: queue.SimpleQueue[tuple[Any, concurrent.futures.Future[Any]]] = \
            queue.SimpleQueue()
        #: Readable when requests wait (register it with the core's poller).
        self.wake_fd, self._wake_w = os.pipe()
        os.set_blocking(self.wake_fd, False)
        self._closed = False
        self._closed_reason = "the coordinator stopped"
        # Requests taken by the core whose answer has not been given yet (it may wait for a
        # commit): failed too if the core stops before answering them.
        self._taken: list[concurrent.futures.Future[Any]] = []

    def put(self, item: Any) -> concurrent.futures.Future[Any]:
        """A future for ``item``'s answer; failed at once when the core has stopped (a caller
        must never wait for a core that will not answer)."""
        fut: concurrent.futures.Future[Any] = concurrent.futures.Future()
        if self._closed:
            fut.set_exception(CoordinatorUnavailableError(self._closed_reason))
            return fut
        self._queue.put((item, fut))
        self.wake()
        if self._closed:  # closed while this was put: answer what close() did not see
            self._fail_waiting()
        return fut

    def wake(self) -> None:
        try:
            os.write(self._wake_w, b"x")
        except BlockingIOError:  # the pipe is full: the core is awake anyway
            pass
        except OSError:
            pass

    def take(self) -> Iterator[tuple[Any, concurrent.futures.Future[Any]]]:
        """The waiting requests whose callers still want an answer (core thread)."""
        try:
            while os.read(self.wake_fd, 4096):
                pass
        except BlockingIOError:
            pass
        self._taken = [f for f in self._taken if not f.done()]
        while True:
            try:
                item, fut = self._queue.get_nowait()
            except queue.Empty:
                return
            if fut.set_running_or_notify_cancel():
                self._taken.append(fut)
                yield item, fut

    def close(self, reason: str | None = None) -> None:
        """The core stops (``reason``: why, when it failed): callers still waiting, and any
        that come later, get an answer rather than a hang."""
        if reason:
            self._closed_reason = f"the coordinator stopped: {reason}"
        self._closed = True
        self._fail_waiting()
        os.close(self.wake_fd)
        os.close(self._wake_w)

    def _fail_waiting(self) -> None:
        for fut in self._taken:
            if not fut.done():
                with contextlib.suppress(concurrent.futures.InvalidStateError):
                    fut.set_exception(CoordinatorUnavailableError(self._closed_reason))
        self._taken.clear()
        while True:
            try:
                _, fut = self._queue.get_nowait()
            except queue.Empty:
                break
            if not fut.done():
                with contextlib.suppress(concurrent.futures.InvalidStateError):
                    fut.set_exception(CoordinatorUnavailableError(self._closed_reason))


__all__ = ["Inbox"]
