"""Where work runs: on the event loop, on a helper thread of this process, or on the process
pool. The rules are written once, here, and asked by the engine (an inline call's slices, a
stream's morsels, a batch call's rest) and by a cluster worker (each morsel it receives).

The adaptive controller (:mod:`sabot.engine.controller`) weighs inline against processes from
a timed sample of a call; what is decided here needs no sample, or only a short one: whether
work is short enough not to be worth a thread hop, and where a worker's morsel goes before any
engine call is made.
"""

from __future__ import annotations

from enum import StrEnum

#: Inline work estimated shorter than this runs directly on the event loop when it is all that
#: is left of a call (a thread hop costs more than the work).
LOOP_CALL_S = 0.01
#: One slice of longer inline work estimated shorter than this runs on the event loop too.
LOOP_SLICE_S = 0.001
#: Inline work runs on a helper thread (the event loop stays responsive: HTTP, heartbeats) in
#: slices of about this long, so a cancelled call stops between slices.
INLINE_SLICE_S = 0.25

#: Wire encodings of a morsel that decode to a list of Python items.
LIST_ENCODINGS = ("msgpack", "pickle")
#: A morsel of a trusted per-item function (a built-in processor) up to this size runs right
#: on the event loop: for a few items, any hop or engine planning costs more than the work. At
#: most CHEAP_ITEM_S per item, such a morsel takes well under LOOP_SLICE_S.
LOOP_MAX_ITEMS = 64
LOOP_MAX_BYTES = 4096
#: A trusted per-item function cheaper than this per item runs in this process (on a helper
#: thread, in one hop with decoding and encoding): at this cost worker processes never win back
#: the pickling of items and results (the controller's ship cost: about 0.3 µs each way for a
#: small item, times its SHIP_OVERHEAD_FACTOR), so the engine's planning would be overhead.
CHEAP_ITEM_S = 2e-6
#: A morsel of an untrusted function this big is not decoded in this process: one pool process
#: decodes it, runs it and encodes its results, so this process only moves bytes.
POOL_ENCODED_BYTES = 32 << 10
#: The first morsel of a trusted function whose cost is unknown times the function on its
#: first items (at most SAMPLE_ITEMS, for at most SAMPLE_S) ...
SAMPLE_ITEMS = 256
SAMPLE_S = 0.002
#: ... and this many sampled items settle the function's cost.
VERDICT_ITEMS = 8


class Placement(StrEnum):
    """Where a morsel of a long-lived service (a cluster worker) runs."""

    #: Right here on the event loop (a tiny morsel of a cheap trusted function).
    LOOP = "loop"
    #: On a helper thread of this process, decoded, run and encoded in one hop; sampled first
    #: when the function's cost is unknown, and handed to the engine if it is costly.
    THREAD = "thread"
    #: On the isolated process pool, coalesced with other morsels of the same function.
    POOL = "pool"
    #: On the isolated process pool as its bytes: a pool process decodes and encodes it.
    POOL_ENCODED = "pool-encoded"
    #: A call of its own to the engine, which plans it (other kinds of functions and data,
    #: and trusted functions seen to be costly).
    ENGINE = "engine"


# (members as module constants: an Enum class attribute costs ~0.1 µs to look up, and this runs
# for every morsel a worker receives)
_LOOP, _THREAD, _POOL = Placement.LOOP, Placement.THREAD, Placement.POOL
_POOL_ENCODED, _ENGINE = Placement.POOL_ENCODED, Placement.ENGINE


def place_morsel(*, per_item: bool, trusted: bool, encoding: str, nbytes: int,
                 items: int | None, per_item_s: float | None) -> Placement:
    """Where a morsel runs. ``per_item``: the function is a plain per-item callable;
    ``trusted``: it may run in this process (Sabot's built-in processors; user code runs only
    in pool processes, where a crash takes down a pool process, not the service); ``nbytes``:
    the encoded size; ``items``: the item count when known without decoding; ``per_item_s``:
    the function's measured seconds per item, when known."""
    if not per_item or encoding not in LIST_ENCODINGS:
        return _ENGINE
    if not trusted:
        return _POOL_ENCODED if nbytes >= POOL_ENCODED_BYTES else _POOL
    if per_item_s is not None and per_item_s > CHEAP_ITEM_S:
        return _ENGINE
    if items is not None and items <= LOOP_MAX_ITEMS and nbytes <= LOOP_MAX_BYTES:
        return _LOOP
    return _THREAD


def median(values: list[float]) -> float:
    """The middle value (0.0 for none)."""
    return sorted(values)[len(values) // 2] if values else 0.0


def sampled_costly(times: list[float], sampled_s: float) -> bool:
    """Whether the items timed in a sample (seconds each; ``sampled_s`` in all) show a costly
    function. The median item decides: on a busy machine a preemption lengthens one item, not
    most of them (a function that sleeps or computes for long lengthens them all). A handful of
    items decide only when they alone used up the sampling time."""
    return median(times) > CHEAP_ITEM_S and (len(times) >= VERDICT_ITEMS
                                             or sampled_s > SAMPLE_S)


__all__ = [
    "CHEAP_ITEM_S", "INLINE_SLICE_S", "LIST_ENCODINGS", "LOOP_CALL_S", "LOOP_MAX_BYTES",
    "LOOP_MAX_ITEMS", "LOOP_SLICE_S", "POOL_ENCODED_BYTES", "SAMPLE_ITEMS", "SAMPLE_S",
    "VERDICT_ITEMS", "Placement", "median", "place_morsel", "sampled_costly",
]
