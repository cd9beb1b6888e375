"""Pathway's side of ``streaming_nexmark``: each query in Pathway's table operators
(``select``, ``filter``, ``join``, ``groupby().reduce()``, ``windowby`` with
``pw.temporal.sliding`` / ``tumbling`` on ``date_time``), over ``pw.io.jsonlines.read`` of the
files in ``mode="static"`` (Pathway's streaming mode watches the files forever; static ingests
them and ends), into ``pw.io.subscribe`` callbacks that keep the output's final rows; one thread.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

SKIP: dict[str, str] = {}


def availability() -> tuple[bool, str]:
    try:
        import pathway as pw
    except ImportError:
        return False, "pathway is not installed"
    return True, pw.__version__


def version() -> str:
    return availability()[1]


def _schemas() -> dict[str, Any]:
    import pathway as pw

    # "id" is Pathway's row key: the files' id columns are read as pid / aid
    class Person(pw.Schema):
        pid: int
        name: str
        email_address: str
        credit_card: str
        city: str
        state: str
        date_time: int
        extra: str

    class Auction(pw.Schema):
        aid: int
        item_name: str
        description: str
        initial_bid: int
        reserve: int
        date_time: int
        expires: int
        seller: int
        category: int
        extra: str

    class Bid(pw.Schema):
        auction: int
        bidder: int
        price: int
        channel: str
        url: str
        date_time: int
        extra: str

    return {"person": Person, "auction": Auction, "bid": Bid}


def _query(query: str, t: dict[str, Any]) -> Any:
    import pathway as pw

    bid = t.get("bid")
    if query == "q0":
        return bid.select(pw.this.auction, pw.this.bidder, pw.this.price, pw.this.date_time,
                          pw.this.extra)
    if query == "q1":
        return bid.select(pw.this.auction, pw.this.bidder, price=0.908 * pw.this.price,
                          date_time=pw.this.date_time, extra=pw.this.extra)
    if query == "q2":
        return bid.filter(pw.this.auction % 123 == 0).select(pw.this.auction, pw.this.price)
    if query == "q3":
        a = t["auction"].filter(pw.this.category == 10)
        p = t["person"].filter((pw.this.state == "OR") | (pw.this.state == "ID")
                               | (pw.this.state == "CA"))
        return a.join(p, pw.left.seller == pw.right.pid).select(
            pw.right.name, pw.right.city, pw.right.state, id_=pw.left.aid)
    if query == "q4":
        a, b = t["auction"], t["bid"]
        pairs = a.join(b, pw.left.aid == pw.right.auction).select(
            aid=pw.left.aid, category=pw.left.category, start=pw.left.date_time,
            expires=pw.left.expires, at=pw.right.date_time, price=pw.right.price)
        valid = pairs.filter((pw.this.at >= pw.this.start) & (pw.this.at <= pw.this.expires))
        final = valid.groupby(pw.this.aid, pw.this.category).reduce(
            pw.this.category, final=pw.reducers.max(pw.this.price))
        return final.groupby(pw.this.category).reduce(
            pw.this.category, avg_final=pw.reducers.avg(pw.this.final))
    if query == "q5":
        counts = bid.windowby(pw.this.date_time,
                              window=pw.temporal.sliding(hop=2000, duration=10000),
                              instance=pw.this.auction).reduce(
            auction=pw.this._pw_instance, window_start=pw.this._pw_window_start,
            num=pw.reducers.count())
        top = counts.groupby(pw.this.window_start).reduce(
            pw.this.window_start, maxn=pw.reducers.max(pw.this.num))
        j = counts.join(top, pw.left.window_start == pw.right.window_start).select(
            pw.left.auction, pw.left.num, pw.left.window_start, maxn=pw.right.maxn)
        return j.filter(pw.this.num >= pw.this.maxn).select(
            pw.this.auction, pw.this.num, pw.this.window_start)
    if query == "q7":
        mx = bid.windowby(pw.this.date_time, window=pw.temporal.tumbling(duration=10000)).reduce(
            w=pw.this._pw_window_start, maxprice=pw.reducers.max(pw.this.price))
        b = bid.select(*pw.this, w=pw.this.date_time - pw.this.date_time % 10000)
        return b.join(mx, pw.left.w == pw.right.w, pw.left.price == pw.right.maxprice).select(
            pw.left.auction, pw.left.price, pw.left.bidder, pw.left.date_time, pw.left.extra)
    if query == "q8":
        p = t["person"].select(pw.this.pid, pw.this.name,
                               w=pw.this.date_time - pw.this.date_time % 10000)
        a = t["auction"].select(pw.this.seller, w=pw.this.date_time - pw.this.date_time % 10000)
        j = p.join(a, pw.left.pid == pw.right.seller, pw.left.w == pw.right.w).select(
            pw.left.pid, pw.left.name, window_start=pw.left.w)
        return j.groupby(pw.this.pid, pw.this.name, pw.this.window_start).reduce(
            id_=pw.this.pid, name=pw.this.name, window_start=pw.this.window_start)
    raise ValueError(f"pathway: unknown query {query}")


_READS = {"q0": ("bid",), "q1": ("bid",), "q2": ("bid",), "q3": ("person", "auction"),
          "q4": ("auction", "bid"), "q5": ("bid",), "q7": ("bid",), "q8": ("person", "auction")}


class Runner:
    def __init__(self, parallelism: int) -> None:
        self.info: dict[str, Any] = {}

    def run(self, query: str, files: dict[str, Path]) -> Any:
        import pathway as pw
        from pathway.internals.parse_graph import G

        G.clear()  # a fresh dataflow per run (the warm-up's is gone)
        schemas = _schemas()
        paths = {"person": {"pid": "/id"}, "auction": {"aid": "/id"}, "bid": None}
        tables = {k: pw.io.jsonlines.read(str(files[k]), schema=schemas[k], mode="static",
                                          json_field_paths=paths[k])
                  for k in _READS[query]}
        live: dict[Any, dict[str, Any]] = {}

        def on_change(key: Any, row: dict[str, Any], time: int, is_addition: bool) -> None:
            if is_addition:
                live[key] = row
            else:
                live.pop(key, None)

        pw.io.subscribe(_query(query, tables), on_change=on_change)
        pw.run(monitoring_level=pw.MonitoringLevel.NONE)
        return [{("id" if c == "id_" else c): v for c, v in r.items()} for r in live.values()]

    def close(self) -> None:
        pass


def start(parallelism: int, checkpoint_s: float | None, workdir: Path) -> Runner:
    return Runner(parallelism)
