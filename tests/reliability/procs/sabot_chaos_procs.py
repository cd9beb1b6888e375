"""Named processors for the reliability tests, loaded by every node with
SABOT_PROCESSORS=sabot_chaos_procs (this directory is put on the nodes' PYTHONPATH).

Items are strings ``"<n>:<kind>:<padding>"``: ``n`` is the item's number, ``kind`` what the
function does with it. The answer is a pure function of the item, so a serial run in the test
process gives the expected result to compare with, item by item.
"""

from __future__ import annotations

import ctypes
import os
import time

import sabot

#: Seconds each item sleeps in ``chaos_slow`` (keeps a job running while nodes are killed).
SLOW_ITEM_S = 0.02


def make_items(count: int, pad: int = 80, kind: str = "ok") -> list[str]:
    """``count`` items of about ``pad`` bytes each (bytes, not items, size a morsel)."""
    return [f"{n}:{kind}:" + "x" * pad for n in range(count)]


def answer(item: str) -> str:
    n = int(item.split(":", 1)[0])
    return f"{n}:{n * n}"


@sabot.processor("chaos_slow", replace=True)
def chaos_slow(item: str) -> str:
    time.sleep(SLOW_ITEM_S)
    return answer(item)


@sabot.processor("chaos_ms", replace=True)
def chaos_ms(item: str) -> str:
    """About a millisecond or two of work per item (many short items: a job of thousands)."""
    time.sleep(0.002)
    return answer(item)


@sabot.processor("chaos_fault", replace=True)
def chaos_fault(item: str) -> str:
    """Fails as the item's kind says: raise, exit (os._exit), segv (NULL read), hang."""
    kind = item.split(":", 2)[1]
    if kind == "raise":
        raise ValueError(f"poison item {item.split(':', 1)[0]} refused on purpose")
    if kind == "exit":
        os._exit(17)
    if kind == "segv":
        ctypes.string_at(0)
    if kind == "hang":
        time.sleep(3600)
    return answer(item)


@sabot.processor("chaos_fast", replace=True)
def chaos_fast(item: str) -> str:
    return answer(item)


#: The file ``chaos_counted`` appends one line per call to (set in the node's environment).
CALLS_FILE_VAR = "SABOT_TEST_CALLS_FILE"


@sabot.processor("chaos_counted", replace=True)
def chaos_counted(item: str) -> str:
    """``chaos_fast``, counting its calls: one line per item in $SABOT_TEST_CALLS_FILE
    (O_APPEND, so the lines of concurrent processes never mix)."""
    fd = os.open(os.environ[CALLS_FILE_VAR], os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
    try:
        os.write(fd, (item.split(":", 1)[0] + "\n").encode())
    finally:
        os.close(fd)
    return answer(item)


@sabot.processor("chaos_slow_counted", replace=True)
def chaos_slow_counted(item: str) -> str:
    """``chaos_slow``, counting its calls as ``chaos_counted`` does (work run twice shows)."""
    time.sleep(SLOW_ITEM_S)
    return chaos_counted(item)


def make_big_items(count: int, result_bytes: int, pad: int = 1000) -> list[str]:
    """``count`` items whose ``chaos_big`` answer is ``result_bytes`` long each (small inputs,
    big results: ``pad`` bytes of input each, so MORSEL_SIZE_KB sets the items per morsel)."""
    return [f"{n}:big:{result_bytes}:" + "x" * pad for n in range(count)]


def big_answer(item: str) -> str:
    """What ``chaos_big`` answers for ``item``: its number, then one letter repeated."""
    n, _, size, _ = item.split(":", 3)
    head = f"{n}:"
    return head + chr(97 + int(n) % 26) * (int(size) - len(head))


@sabot.processor("chaos_big", replace=True)
def chaos_big(item: str) -> str:
    return big_answer(item)


@sabot.processor("chaos_big_ms", replace=True)
def chaos_big_ms(item: str) -> str:
    """``chaos_big`` with ``chaos_ms``'s millisecond or two of work: a job of big inputs and
    results that runs for seconds."""
    time.sleep(0.002)
    return big_answer(item)


def affine_block(block: Any) -> Any:
    """A vectorized function for ``sabot.batch``: ``3x + 1`` over a whole numpy morsel."""
    return block * 3 + 1


def affine_record_batch(batch: Any) -> Any:
    """``affine_block`` for an Arrow RecordBatch morsel: ``3x + 1`` over every column."""
    import pyarrow as pa
    import pyarrow.compute as pc

    return pa.RecordBatch.from_arrays(
        [pc.add(pc.multiply(col, 3), 1) for col in batch.columns], names=batch.schema.names)
