# cython: language_level=3, boundscheck=False, wraparound=False, initializedcheck=False
"""Compiled per-item loop: apply a Python callable to every element of a list slice.

The loop itself is C: no Python-level iteration, index bookkeeping or bound-method lookups per
item, which is what dominates ``[f(x) for x in items]`` for cheap functions. The callable still
runs under the GIL, as any Python code must.
"""

from cpython.list cimport PyList_New, PyList_SET_ITEM, PyList_GET_ITEM, PyList_GET_SIZE
from cpython.ref cimport Py_INCREF


def apply_list(object func, list items, Py_ssize_t start, Py_ssize_t stop):
    """Return ``[func(items[i]) for i in range(start, stop)]``.

    On the first exception, stop and raise ``ItemFailed(i, exc)`` (``i`` relative to ``start``)
    so the caller can name the failing item; the original exception is chained.
    """
    cdef Py_ssize_t n = PyList_GET_SIZE(items)
    if start < 0 or stop > n or start > stop:
        raise IndexError(f"slice [{start}, {stop}) is outside a list of {n} items")
    cdef list out = PyList_New(stop - start)
    cdef Py_ssize_t i, j
    cdef object result
    for i in range(start, stop):
        try:
            result = func(<object>PyList_GET_ITEM(items, i))
        except Exception as exc:
            # The slots not filled yet are NULL; give them None so the list can be freed safely.
            for j in range(i - start, stop - start):
                Py_INCREF(None)
                PyList_SET_ITEM(out, j, None)
            raise ItemFailed(i - start, exc) from exc
        Py_INCREF(result)
        PyList_SET_ITEM(out, i - start, result)
    return out


class ItemFailed(Exception):
    """Internal: item ``position`` of the slice raised ``original``."""

    def __init__(self, Py_ssize_t position, BaseException original):
        super().__init__(position, original)
        self.position = position
        self.original = original
