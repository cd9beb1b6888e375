"""Large buffers go back to the operating system when freed.

glibc's malloc serves a request from its heap unless it is larger than a threshold, which it
raises on its own up to 32 MB each time a big mapped block is freed. The coordinator's results
(megabytes each, freed once they are on disk) then stay in the heap when freed, and its RSS
stays near the most it ever held instead of its result budget (SABOT_RESULT_MEMORY_MB): with
four 4 MB results at a time it kept ~55 MB more than it held. A fixed threshold makes every
block of :data:`MMAP_THRESHOLD_BYTES` or more a mapping of its own, returned when freed.
Elsewhere than on glibc this does nothing.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import logging

log = logging.getLogger(__name__)

MMAP_THRESHOLD_BYTES = 1 << 20
_M_MMAP_THRESHOLD = -3  # glibc's malloc.h


def return_large_buffers_to_os() -> bool:
    """Fix glibc's mmap threshold (see the module's text); True where it was set."""
    name = ctypes.util.find_library("c")
    if not name:
        return False
    try:
        libc = ctypes.CDLL(name)
        mallopt = libc.mallopt
    except (OSError, AttributeError):
        return False
    mallopt.argtypes = [ctypes.c_int, ctypes.c_int]
    mallopt.restype = ctypes.c_int
    ok = bool(mallopt(_M_MMAP_THRESHOLD, MMAP_THRESHOLD_BYTES))
    if not ok:
        log.debug("mallopt(M_MMAP_THRESHOLD) was refused; large buffers may stay in the heap")
    return ok


__all__ = ["MMAP_THRESHOLD_BYTES", "return_large_buffers_to_os"]
