"""Bytewax's side of ``streaming_nexmark``: a dataflow per query in Bytewax's operators
(``FileSource`` lines, ``json.loads`` per line, ``map``/``filter``, the windowing operators with
an ``EventClock`` on ``date_time``), one worker (``bytewax.testing.run_main``), into a
``TestingSink`` list.

q5: ``count_window`` per auction over 10 s windows sliding by 2 s, then the top auctions of each
window with ``fold_final`` keyed by window (which emits at the end of the input: Bytewax has no
operator that closes a group when the upstream window closes). q7: ``collect_window`` of 10 s
tumbling windows, the bids at the window's highest price.

The joins read both files as two ``FileSource`` inputs, ``key_on`` the join key, and merge them
(each value labelled with its side, as ``op.join`` itself does). One worker reads the inputs at
their own paces (a batch of 1,000 lines of each per turn), so in event time the sparser file runs
ahead: people ahead of auctions, auctions ahead of bids.

q3: an incremental inner join in ``stateful_flat_map`` keyed by person id (``op.join``'s modes
either emit the product only at the end of the input, ``final``, or re-emit the whole product on
every item, ``running``): the person once known, the auctions that came before it; each (auction,
seller) pair is emitted once, when its second side arrives. q4: ``op.stateful`` keyed by auction
id over its auction and its bids (bids ahead of their auction wait for it): the highest price
among bids in ``[date_time, expires]``, emitted when a later bid of the auction is past
``expires`` (the bids file is in time order) or at the end of the input (``on_eof``); then
``stateful_map`` per category, an updating average (sink: the updates; the answer: each
category's last update, taken after the timed region). q8: ``windowing.join_window`` of people
(by id) and auctions (by seller) in 10 s tumbling windows, ``insert_mode="first"``,
``emit_mode="complete"`` (one row per person and window that has an auction of theirs). Its
``EventClock`` is driven by event time only (``now_getter`` fixed, no system-time wake-ups), the
clock is kept per key and waits 10 s of event time (the window's length) for late items; items
the clock calls late are counted (``info.late``).
"""

from __future__ import annotations

import datetime as _dt
import functools
import json
from pathlib import Path
from typing import Any

SKIP: dict[str, str] = {}

UTC = _dt.UTC
EPOCH = _dt.datetime(1970, 1, 1, tzinfo=UTC)


def availability() -> tuple[bool, str]:
    try:
        from importlib.metadata import version as v

        import bytewax  # noqa: F401
    except ImportError:
        return False, "bytewax is not installed (pip install .[bench-stream])"
    return True, v("bytewax")


def version() -> str:
    return availability()[1]


def _ts(e: dict[str, Any]) -> _dt.datetime:
    return EPOCH + _dt.timedelta(milliseconds=e["date_time"])


def _event_time_clock(wait: _dt.timedelta) -> Any:
    """An ``EventClock`` that advances with event time only: its "system" time never moves and
    it asks for no wake-ups, so windows close when a later item of the key (or the end of the
    input) moves the watermark past them, the same on every run."""
    import bytewax.operators.windowing as win

    return win.EventClock(_ts, wait_for_system_duration=wait, now_getter=lambda: EPOCH,
                          to_system_utc=lambda _t: None)


@functools.cache
def _winning_bid() -> Any:
    """q4's ``StatefulLogic`` class (defined here, not at module import, so that
    ``availability`` works without Bytewax)."""
    from bytewax.operators import StatefulLogic

    class WinningBid(StatefulLogic):
        """q4's per-auction logic (``op.stateful``, keyed by auction id) over ``("a", auction)`` and
        ``("b", bid)``: the highest price of the bids in ``[date_time, expires]``, emitted as
        ``(category, price)`` once the auction is over (a later bid of it is past ``expires``) or at
        the end of the input."""

        def __init__(self) -> None:
            self.auction: tuple[int, int, int] | None = None  # date_time, expires, category
            self.best: int | None = None
            self.waiting: list[tuple[int, int]] = []  # bids that came before their auction
            self.done = False

        def _bid(self, t: int, price: int) -> list[tuple[int, int]]:
            assert self.auction is not None
            start, expires, category = self.auction
            if t > expires:  # later bids of this auction are later still: the winner is known
                self.done = True
                return [(category, self.best)] if self.best is not None else []
            if t >= start and (self.best is None or price > self.best):
                self.best = price
            return []

        def on_item(self, value: tuple[str, dict[str, Any]]) -> tuple[list[Any], bool]:
            side, e = value
            out: list[tuple[int, int]] = []
            if self.done:
                pass
            elif side == "a":
                self.auction = (e["date_time"], e["expires"], e["category"])
                waiting, self.waiting = self.waiting, []
                for t, price in waiting:
                    out += self._bid(t, price)
                    if self.done:
                        break
            elif self.auction is None:
                self.waiting.append((e["date_time"], e["price"]))
            else:
                out = self._bid(e["date_time"], e["price"])
            # a finished auction keeps a small marker: its later bids are ignored, not waited on
            return out, StatefulLogic.RETAIN

        def on_notify(self) -> tuple[list[Any], bool]:
            return [], StatefulLogic.RETAIN

        def on_eof(self) -> tuple[list[Any], bool]:
            if self.done or self.auction is None or self.best is None:
                return [], StatefulLogic.DISCARD
            self.done = True
            return [(self.auction[2], self.best)], StatefulLogic.DISCARD

        def notify_at(self) -> None:
            return None

        def snapshot(self) -> tuple[Any, ...]:
            return (self.auction, self.best, list(self.waiting), self.done)

    return WinningBid


def _flow(query: str, files: dict[str, Path], out: list[Any], late: list[Any]) -> Any:
    import bytewax.operators as op
    import bytewax.operators.windowing as win
    from bytewax.connectors.files import FileSource
    from bytewax.dataflow import Dataflow
    from bytewax.testing import TestingSink

    flow = Dataflow(f"nexmark-{query}")

    def read(kind: str) -> Any:
        return op.map(f"parse_{kind}", op.input(kind, flow, FileSource(files[kind])), json.loads)

    def labelled(kind: str, stream: Any, key: str) -> Any:
        keyed = op.key_on(f"key_{kind}", stream, lambda e: str(e[key]))
        return op.map_value(f"label_{kind}", keyed, lambda e: (kind[0], e))

    if query in ("q3", "q8"):
        persons, auctions = read("person"), read("auction")
        bids = None
    elif query == "q4":
        auctions, bids = read("auction"), read("bid")
    else:
        bids = read("bid")
    # the wait is wall-clock slack after the newest event: the files replay faster than
    # event time, so with none every later event would be late
    clock = win.EventClock(_ts, wait_for_system_duration=_dt.timedelta(seconds=10))
    if query == "q0":
        res = op.map("q0", bids, lambda b: {k: b[k] for k in
                                            ("auction", "bidder", "price", "date_time", "extra")})
    elif query == "q1":
        res = op.map("q1", bids, lambda b: {"auction": b["auction"], "bidder": b["bidder"],
                                            "price": 0.908 * b["price"],
                                            "date_time": b["date_time"], "extra": b["extra"]})
    elif query == "q2":
        res = op.map("q2", op.filter("sel", bids, lambda b: b["auction"] % 123 == 0),
                     lambda b: {"auction": b["auction"], "price": b["price"]})
    elif query == "q5":
        windower = win.SlidingWindower(length=_dt.timedelta(seconds=10),
                                       offset=_dt.timedelta(seconds=2), align_to=EPOCH)
        counts = win.count_window("count", bids, clock, windower, lambda b: str(b["auction"]))

        def by_window(kv: tuple[str, tuple[int, int]]) -> tuple[str, tuple[int, int]]:
            auction, (wid, n) = kv
            return str(wid), (int(auction), n)

        def top(acc: tuple[int, list[int]], item: tuple[int, int]) -> tuple[int, list[int]]:
            best, who = acc
            auction, n = item
            if n > best:
                return n, [auction]
            if n == best:
                who.append(auction)
            return best, who

        tops = op.fold_final("top", op.map("by_window", counts.down, by_window),
                             lambda: (0, []), top)
        res = op.flat_map("rows", tops, lambda kv: [
            {"auction": a, "num": kv[1][0], "window_start": int(kv[0]) * 2000}
            for a in kv[1][1]])
    elif query == "q7":
        windower = win.TumblingWindower(length=_dt.timedelta(seconds=10), align_to=EPOCH)
        keyed = op.key_on("all", bids, lambda b: "all")
        groups = win.collect_window("collect", keyed, clock, windower)

        def highest(kv: tuple[str, tuple[int, list[dict[str, Any]]]]) -> list[dict[str, Any]]:
            rows = kv[1][1]
            mx = max(b["price"] for b in rows)
            return [{k: b[k] for k in ("auction", "price", "bidder", "date_time", "extra")}
                    for b in rows if b["price"] == mx]

        res = op.flat_map("highest", groups.down, highest)
    elif query == "q3":
        sellers = op.filter("sel_person", persons, lambda p: p["state"] in ("OR", "ID", "CA"))
        items = op.filter("sel_auction", auctions, lambda a: a["category"] == 10)
        both = op.merge("merge", labelled("person", sellers, "id"),
                        labelled("auction", items, "seller"))

        def row(p: dict[str, Any], a: dict[str, Any]) -> dict[str, Any]:
            return {"name": p["name"], "city": p["city"], "state": p["state"], "id": a["id"]}

        def join(state: tuple[Any, list[Any]] | None, item: tuple[str, dict[str, Any]]
                 ) -> tuple[tuple[Any, list[Any]], list[dict[str, Any]]]:
            person, waiting = state or (None, [])
            side, e = item
            if side == "p":
                return (e, []), [row(e, a) for a in waiting]
            if person is not None:
                return (person, waiting), [row(person, e)]
            waiting.append(e)
            return (person, waiting), []

        res = op.key_rm("unkey", op.stateful_flat_map("join", both, join))
    elif query == "q4":
        both = op.merge("merge", labelled("auction", auctions, "id"),
                        labelled("bid", bids, "auction"))
        logic = _winning_bid()
        winners = op.stateful("winning_bid", both, lambda _resume: logic())
        by_category = op.key_on("by_category", op.key_rm("unkey_auction", winners),
                                lambda cw: str(cw[0]))

        def average(acc: tuple[int, int] | None, cw: tuple[int, int]
                    ) -> tuple[tuple[int, int], dict[str, Any]]:
            s, n = acc or (0, 0)
            s, n = s + cw[1], n + 1
            return (s, n), {"category": cw[0], "avg_final": s / n}

        res = op.key_rm("unkey", op.stateful_map("average", by_category, average))
    elif query == "q8":
        windower = win.TumblingWindower(length=_dt.timedelta(seconds=10), align_to=EPOCH)
        joined = win.join_window("same_window", _event_time_clock(_dt.timedelta(seconds=10)),
                                 windower, op.key_on("key_person", persons, lambda p: str(p["id"])),
                                 op.key_on("key_auction", auctions, lambda a: str(a["seller"])),
                                 insert_mode="first", emit_mode="complete")
        op.output("late", joined.late, TestingSink(late))
        res = op.map("rows", joined.down, lambda kv: {
            "id": kv[1][1][0]["id"], "name": kv[1][1][0]["name"],
            "window_start": kv[1][0] * 10_000})
    else:
        raise ValueError(f"bytewax: {query} is not written ({SKIP.get(query)})")
    op.output("out", res, TestingSink(out))
    return flow


def _latest(query: str, out: list[Any]) -> list[Any]:
    """An updating result's final rows: each key's last update (q4: per category)."""
    if query != "q4":
        return out
    last = {r["category"]: r for r in out}
    return list(last.values())


class Runner:
    def __init__(self, parallelism: int) -> None:
        self.info: dict[str, Any] = {}

    def run(self, query: str, files: dict[str, Path]) -> Any:
        from bytewax.testing import run_main

        out: list[Any] = []
        late: list[Any] = []
        run_main(_flow(query, files, out, late))
        self.info = {"late": len(late)} if query == "q8" else {}
        # the sink holds the updates (q4); the final rows are taken outside the timed region
        return lambda: _latest(query, out)

    def close(self) -> None:
        pass


def start(parallelism: int, checkpoint_s: float | None, workdir: Path) -> Runner:
    return Runner(parallelism)
