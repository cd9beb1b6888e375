"""How much of a morsel one assignment runs: morsels sized by their measured cost.

A client cuts a job's input into morsels by bytes (MORSEL_SIZE_KB), so a morsel of a costly
function can be seconds or hours of work, all of it lost with the worker running it. Each job
learns its cost per item (and result bytes per item) from what its workers report with each
result, seeded by the last job of the same function; from then on a morsel whose items would
take more than about SABOT_MORSEL_TARGET_S runs in pieces of about that many seconds. The
pieces of one morsel run one after the other (one worker holds a morsel at a time, so the
dispatcher's bookkeeping stays per morsel); the coordinator keeps each piece's result until the
last comes and stores them as the morsel's one result (encoding ``parts``), so paging, files
and the journal see whole morsels only. A worker lost mid-morsel costs the piece it held.

While a job's cost is not known yet, a morsel of at least PROBE_MIN_ITEMS items starts with a
piece of 1/PROBE_PARTS of it, which measures the cost. A morsel runs whole when its results are
predicted to be too big to hold in memory (over CHUNK_BYTES: a whole morsel's big result is
streamed to its file in chunks instead), when a piece's result came in chunks all the same, on
a worker that cannot run pieces (no ``morsel-ranges`` capability), and with
SABOT_MORSEL_TARGET_S=0.
"""

from __future__ import annotations

from dataclasses import dataclass

from ...bounded_cache import BoundedCache
from ..protocol import messages as m
from .job_table import Job, Morsel

#: While the cost is unknown, a morsel's first piece is this share of it...
PROBE_PARTS = 8
#: ... for morsels of at least this many items (smaller ones run whole).
PROBE_MIN_ITEMS = 32
#: A piece that would leave less than this share of its own size behind takes the rest too.
TAIL_SHARE = 0.5
#: Weight of the newest measurement in a job's running cost.
SMOOTHING = 0.3
#: Functions whose last cost is remembered for the next job of the same function.
KNOWN_FUNCTIONS = 1024


@dataclass(slots=True)
class Cost:
    """A job's measured cost: seconds of work and bytes of result per item."""

    per_item_s: float
    result_bytes_per_item: float


class PieceSizer:
    """Picks each assignment's piece and learns jobs' costs."""

    def __init__(self, target_s: float) -> None:
        self._target = target_s
        self._by_function: BoundedCache[tuple[str, int], Cost] = BoundedCache(KNOWN_FUNCTIONS)

    def piece(self, job: Job, mo: Morsel, capabilities: list[str]) -> tuple[int, int]:
        """(start, count) of the items of morsel ``mo`` the next assignment runs (``assign``'s
        fields: (0, 0) is the whole morsel, a count of -1 its rest from ``start``). A morsel already partly done goes on where it stopped, except on a worker
        that cannot run pieces, where it starts again whole (its pieces' results dropped)."""
        carved = mo.carved
        if not self._target or mo.whole or m.RANGES not in capabilities:
            if carved:
                mo.carved, mo.parts = 0, None
            return 0, 0
        items = mo.items
        remaining = items - carved
        cost = self.cost(job)
        if cost is None:
            if carved or items < PROBE_MIN_ITEMS:
                return (carved, -1) if carved else (0, 0)
            return 0, max(1, items // PROBE_PARTS)
        if not carved and cost.result_bytes_per_item * items > m.CHUNK_BYTES:
            return 0, 0
        step = max(1, int(self._target / max(cost.per_item_s, 1e-12)))
        job.piece_items = step
        if remaining - step < step * TAIL_SHARE:
            return (carved, -1) if carved else (0, 0)
        return carved, step

    def cost(self, job: Job) -> Cost | None:
        """The job's measured cost, else its function's last one, else None."""
        cost = job.cost
        if cost is None:
            key = _function_key(job)
            cost = self._by_function.get(key)
            if cost is not None:
                # A copy of its own, which its function then remembers (see learn).
                cost = job.cost = Cost(cost.per_item_s, cost.result_bytes_per_item)
                self._by_function.put(key, cost)
        return cost

    def learn(self, job: Job, items: int, elapsed_s: float, result_bytes: int) -> None:
        """A result of ``items`` items took ``elapsed_s`` s of work and ``result_bytes`` bytes
        (workers that do not measure send 0 s: nothing is learnt)."""
        if items <= 0 or elapsed_s <= 0:
            return
        per_item, per_item_bytes = elapsed_s / items, result_bytes / items
        cost = job.cost
        if cost is None:
            # (the job's function remembers this very object, which later results update:
            # one cache write per job, not per result)
            cost = job.cost = Cost(per_item, per_item_bytes)
            self._by_function.put(_function_key(job), cost)
            return
        cost.per_item_s += SMOOTHING * (per_item - cost.per_item_s)
        cost.result_bytes_per_item += SMOOTHING * (per_item_bytes - cost.result_bytes_per_item)


def _function_key(job: Job) -> tuple[str, int]:
    """A job's function: its name and its pickle (a lambda's name says little)."""
    key = job.function_key
    if key is None:
        pickled = job.func_pickle
        key = job.function_key = (job.func_name,
                                  hash(pickled) if pickled is not None else 0)
    return key


__all__ = ["KNOWN_FUNCTIONS", "PROBE_MIN_ITEMS", "PROBE_PARTS", "Cost", "PieceSizer"]
