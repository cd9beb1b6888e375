"""How other threads reach the coordinator's core thread: a queue of requests, each with a
future for its answer, and a pipe whose readable end wakes the core's poller."""

from __future__ import annotations

import concurrent.futures
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

    def put(self, item: Any) -> concurrent.futures.Future[Any]:
        fut: concurrent.futures.Future[Any] = concurrent.futures.Future()
        self._queue.put((item, fut))
        self.wake()
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
        while True:
            try:
                item, fut = self._queue.get_nowait()
            except queue.Empty:
                return
            if fut.set_running_or_notify_cancel():
                yield item, fut

    def close(self) -> None:
        """The core stops: callers still waiting get an answer rather than a hang."""
        while True:
            try:
                _, fut = self._queue.get_nowait()
            except queue.Empty:
                break
            if not fut.done():
                fut.set_exception(CoordinatorUnavailableError("the coordinator stopped"))
        os.close(self.wake_fd)
        os.close(self._wake_w)


__all__ = ["Inbox"]
