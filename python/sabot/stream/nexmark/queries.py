"""Nexmark queries as Sabot pipelines: each a function of the streams (``env.nexmark(...)``)
returning the query's output stream. ``SQL`` holds each query's batch answer over the
persons / auctions / bids tables (DuckDB dialect), which the tests compare with.

- q0 pass-through; q1 currency conversion; q2 selection (auction % 123 = 0);
- q3 local item suggestion (a regular join of auctions and sellers, state kept);
- q4 average winning price per category (a bid counts between its auction's start and expiry;
  the winner is each auction's highest bid, emitted when the watermark passes its expiry; then
  a running average per category: both native keyed aggregations, no Python per key);
- q5 hot items (bids per auction in 10 s windows every 2 s, the top auctions of each window);
- q7 highest bid (the bids at the highest price of each 10 s window);
- q8 new users (people who opened an auction in the same 10 s window they registered in).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc

from .. import aggregates as agg
from ..keyed_aggregate import agg_until, keyed_agg
from ..windows import sliding, tumbling

WINDOW = "10s"


def q0(nx: Any) -> Any:
    return nx.bids


def q1(nx: Any) -> Any:
    return nx.bids.select("auction", "bidder", "date_time", "extra",
                          price=pc.field("price").cast(pa.float64()) * 0.908)


def q2(nx: Any) -> Any:
    a = pc.field("auction")
    # only the columns the query reads (what a SQL planner prunes: the source decodes no more)
    return nx.bids.select("auction", "price", "date_time").filter(pc.subtract(a, pc.multiply(pc.divide(a, 123), 123)) == 0).select("auction", "price")


def q3(nx: Any) -> Any:
    auctions = nx.auctions.select("id", "seller", "category", "date_time").filter(
        pc.field("category") == 10)
    persons = nx.persons.select("id", "name", "city", "state", "date_time").filter(pc.is_in(pc.field("state"), pa.array(["OR", "ID", "CA"])))
    joined = auctions.interval_join(persons, on=("seller", "id"), lower=None, upper=None)
    return joined.select("name", "city", "state", "id")


def _winning_bids(nx: Any) -> Any:
    """(auction id, category, final price) once each auction expires."""
    # only the columns the query reads go through the join (what a SQL planner prunes)
    auctions = nx.auctions.select("id", "category", "date_time", "expires")
    bids = nx.bids.select("auction", "price", "date_time")
    pairs = auctions.interval_join(bids, on=("id", "auction"), lower=0,
                                   upper=nx.max_auction_length_ms)
    valid = pairs.filter(pc.field("date_time_right") <= pc.field("expires"))
    return agg_until(valid.key_by("id", "category"), "expires", final=agg.max("price"),
                     name="q4.winners")


def q4(nx: Any) -> Any:
    return keyed_agg(_winning_bids(nx).key_by("category"), avg_final=agg.mean("final"),
                     name="q4.average")


def _keep_top(key: Any, batch: pa.RecordBatch, ctx: Any) -> None:
    """The rows of one sliding window (``key``: its start) with the most bids so far, kept
    until the watermark passes the window's end (then every instance's counts of it are in)."""
    best = ctx.state("top")
    kept: pa.Table | None = best.value()
    nums = batch.column("num")
    most = pc.max(nums).as_py()
    end = pc.max(batch.column("window_end").cast(pa.int64())).as_py()  # (epoch ms)
    ctx.timers.register_event_time_timer(end)
    if kept is not None and kept.column("num")[0].as_py() > most:
        return
    rows = pa.Table.from_batches([batch.filter(pc.equal(nums, most))])
    if kept is not None and kept.column("num")[0].as_py() == most:
        rows = pa.concat_tables([kept, rows])
    best.update(rows)


def _emit_top(key: Any, timestamp: int, ctx: Any) -> Any:
    best = ctx.state("top")
    rows = best.value()
    best.clear()
    return rows


def q5(nx: Any) -> Any:
    from ..state import ValueState

    counts = nx.bids.key_by("auction").window(sliding(WINDOW, slide="2s")).agg(num=agg.count())
    top = counts.key_by("window_start").process(_keep_top, state={"top": ValueState()},
                                                on_timer=_emit_top, name="q5.top")
    return top.select("auction", "num", "window_start", "window_end")


def q7(nx: Any) -> Any:
    highest = nx.bids.window(tumbling(WINDOW)).agg(maxprice=agg.max("price"))
    joined = nx.bids.window_join(highest, on=("price", "maxprice"), window=tumbling(WINDOW))
    return joined.select("auction", "price", "bidder", "date_time", "extra")


def q8(nx: Any) -> Any:
    joined = nx.persons.window_join(nx.auctions, on=("id", "seller"), window=tumbling(WINDOW))
    return (joined.key_by("id", "name").window(tumbling(WINDOW)).agg(n=agg.count())
            .select("id", "name", "window_start"))


QUERIES: dict[str, Callable[[Any], Any]] = {
    "q0": q0, "q1": q1, "q2": q2, "q3": q3, "q4": q4, "q5": q5, "q7": q7, "q8": q8}

#: Each query's batch answer (DuckDB SQL over tables person, auction, bid; times as epoch ms).
SQL: dict[str, str] = {
    "q0": "SELECT auction, bidder, price, channel, url, date_time, extra FROM bid",
    "q1": "SELECT auction, bidder, 0.908 * CAST(price AS DOUBLE) AS price, date_time, extra FROM bid",
    "q2": "SELECT auction, price FROM bid WHERE auction % 123 = 0",
    "q3": """SELECT P.name, P.city, P.state, A.id FROM auction A JOIN person P ON A.seller = P.id
             WHERE A.category = 10 AND P.state IN ('OR', 'ID', 'CA')""",
    "q4": """SELECT category, avg(final) AS avg_final FROM (
               SELECT A.id, A.category, max(B.price) AS final FROM auction A JOIN bid B
               ON A.id = B.auction AND B.date_time BETWEEN A.date_time AND A.expires
               GROUP BY A.id, A.category) GROUP BY category""",
    "q5": """WITH c AS (SELECT auction, ws AS window_start, count(*) AS num FROM (
                 SELECT auction, unnest(generate_series(date_time - date_time % 2000 - 8000,
                                                        date_time - date_time % 2000, 2000)) AS ws
                 FROM bid) GROUP BY auction, ws),
             m AS (SELECT window_start, max(num) AS maxn FROM c GROUP BY window_start)
             SELECT c.auction, c.num, c.window_start FROM c JOIN m USING (window_start)
             WHERE c.num >= m.maxn""",
    "q7": """WITH m AS (SELECT date_time // 10000 AS w, max(price) AS maxprice FROM bid GROUP BY w)
             SELECT B.auction, B.price, B.bidder, B.date_time, B.extra FROM bid B
             JOIN m ON B.date_time // 10000 = m.w AND B.price = m.maxprice""",
    "q8": """SELECT DISTINCT P.id, P.name, (P.date_time // 10000) * 10000 AS window_start
             FROM person P JOIN auction A ON P.id = A.seller
             AND P.date_time // 10000 = A.date_time // 10000""",
}
