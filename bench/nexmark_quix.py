"""Quix Streams' side of ``streaming_nexmark``. Kafka is its only source, so before the run
(untimed) the parent starts a local Kafka-protocol broker (Tansu, as the Kafka tests do) and
loads each event file into a topic of its own, one partition, every message keyed ``all``, its
value the file's JSON line, followed by one end marker (``{"end": true}`` with a time a day
past the last event) that closes the last windows (Quix Streams closes a window when a later
message of the same key arrives). The timed region is one ``Application`` (a fresh consumer
group, ``auto_offset_reset="earliest"``, JSON values, event time from ``date_time``) reading a
topic to its end marker, counted from its first message (the consumer group's join is not).

q0-q2: ``apply`` / ``filter``. q7: ``tumbling_window(10 s).reduce``
keeping the highest price's bids, ``.final()``, over the single key ``all``.

The joins (q3, q4, q8) read one topic holding both of the query's kinds in event-time order
(as the Nexmark project's own Kafka source does: one topic for all events), loaded the same way
from the two files merged by ``date_time`` (``merged_topic``). Each kind is a branch of it
(``filter``), re-keyed by the join key with ``group_by`` (a repartition topic per branch, written
with the event time as the message timestamp), then joined with ``join_interval``: Quix Streams
stores both sides per key and a record arriving matches the other side's stored records of times
``[t - backward_ms, t]`` (left) / ``[t - forward_ms, t]`` (right), reading the repartition
topics in timestamp order. The end marker goes down both branches and meets itself in the join
(same key, same time), so the output sees it once, after everything else.

q3: auctions of category 10 ``join_interval`` their sellers (people in OR, ID, CA), an interval
wider than the data (a regular join). q4: auctions ``join_interval`` their bids (``forward_ms``:
the longest auction), bids past ``expires`` dropped; a stateful ``apply`` per auction keeps the
highest price and emits a change (category, old, new) when it rises; ``group_by`` category and a
stateful ``apply`` keeps the sum and count: an updating average (the answer: each category's last
update). q8: people ``join_interval`` the auctions they sell within 10 s either side, kept when
both are in the same 10 s tumbling window, one row per person (stateful ``filter``).
"""

from __future__ import annotations

import uuid
from pathlib import Path
from typing import Any

SKIP: dict[str, str] = {
    "q5": "windows close per message key (final()): keyed by auction, an auction's last windows "
          "wait for a later bid of it; over one key the count-per-auction reduce re-serialises the "
          "window's whole state per message (92K bids did not finish in 300 s)",
}

END = "end"
#: the longest an auction runs (Sabot's generator: twice the time 100 auctions take to appear)
MAX_AUCTION_MS = 33_334
#: the files each join's topic is merged from
JOINED = {"q3": ("person", "auction"), "q4": ("auction", "bid"), "q8": ("person", "auction")}


def merged_topic(files: dict[str, Path], query: str) -> str:
    """The ``topics`` key of the topic merged from the files ``query`` joins."""
    return "+".join(str(files[k]) for k in JOINED[query])


def availability() -> tuple[bool, str]:
    try:
        import quixstreams
    except ImportError:
        return False, "quixstreams is not installed"
    return True, quixstreams.__version__


def version() -> str:
    return availability()[1]


def _pick(v: dict[str, Any], cols: tuple[str, ...]) -> dict[str, Any]:
    return {c: v[c] for c in cols}


def _build(app: Any, query: str, topic: Any, out: list[Any], on_end: Any, on_first: Any) -> None:
    sdf = app.dataframe(topic)

    def watch(v: dict[str, Any]) -> None:
        on_first(v)
        if v.get(END):
            on_end()

    sdf = sdf.update(watch)
    if query in ("q0", "q1", "q2"):
        sdf = sdf.filter(lambda v: not v.get(END))
    if query == "q0":
        sdf = sdf.apply(lambda v: _pick(v, ("auction", "bidder", "price", "date_time", "extra")))
    elif query == "q1":
        sdf = sdf.apply(lambda v: {"auction": v["auction"], "bidder": v["bidder"],
                                   "price": 0.908 * v["price"], "date_time": v["date_time"],
                                   "extra": v["extra"]})
    elif query == "q2":
        sdf = sdf.filter(lambda v: v["auction"] % 123 == 0).apply(
            lambda v: {"auction": v["auction"], "price": v["price"]})
    elif query == "q5":
        def count(acc: dict[int, int], v: dict[str, Any]) -> dict[int, int]:
            if not v.get(END):
                a = str(v["auction"])
                acc[a] = acc.get(a, 0) + 1
            return acc

        sdf = sdf.hopping_window(duration_ms=10_000, step_ms=2_000).reduce(
            count, lambda v: count({}, v)).final()

        def top(w: dict[str, Any]) -> list[dict[str, Any]]:
            counts = w["value"]
            if not counts:
                return []
            mx = max(counts.values())
            return [{"auction": int(a), "num": n, "window_start": w["start"]}
                    for a, n in counts.items() if n >= mx]

        sdf = sdf.apply(top, expand=True)
    elif query == "q7":
        cols = ("auction", "price", "bidder", "date_time", "extra")

        def highest(acc: list[Any], v: dict[str, Any]) -> list[Any]:
            if v.get(END):
                return acc
            best, rows = acc
            if best is None or v["price"] > best:
                return [v["price"], [_pick(v, cols)]]
            if v["price"] == best:
                rows.append(_pick(v, cols))
            return acc

        sdf = sdf.tumbling_window(duration_ms=10_000).reduce(
            highest, lambda v: highest([None, []], v)).final()
        sdf = sdf.apply(lambda w: w["value"][1], expand=True)
    else:
        raise ValueError(f"quix streams: {query} is not written ({SKIP.get(query)})")
    sdf.update(out.append)


def _kind(v: dict[str, Any]) -> str:
    return "end" if v.get(END) else "bid" if "bidder" in v else \
        "auction" if "seller" in v else "person"


def _build_join(app: Any, query: str, topic: Any, out: list[Any], on_end: Any,
                on_first: Any) -> None:
    from datetime import timedelta

    sdf = app.dataframe(topic).update(on_first)

    def branch(kind: str, keep: Any, key: str) -> Any:
        side = sdf.filter(lambda v: v.get(END) or (_kind(v) == kind and keep(v)))
        return side.group_by(lambda v: END if v.get(END) else v[key], name=f"{kind}_by_{key}")

    def merge(make: Any) -> Any:
        return lambda left, right: left if left.get(END) else make(left, right)

    day = timedelta(days=1)
    if query == "q3":
        auctions = branch("auction", lambda a: a["category"] == 10, "seller")
        sellers = branch("person", lambda p: p["state"] in ("OR", "ID", "CA"), "id")
        res = auctions.join_interval(
            sellers, how="inner", grace_ms=day, backward_ms=day, forward_ms=day,
            on_merge=merge(lambda a, p: {"name": p["name"], "city": p["city"],
                                         "state": p["state"], "id": a["id"]}))
    elif query == "q4":
        auctions = branch("auction", lambda a: True, "id")
        bids = branch("bid", lambda b: True, "auction")
        pairs = auctions.join_interval(
            bids, how="inner", grace_ms=day, backward_ms=0, forward_ms=MAX_AUCTION_MS,
            on_merge=merge(lambda a, b: {"category": a["category"], "expires": a["expires"],
                                         "price": b["price"], "bid_time": b["date_time"]}))
        pairs = pairs.filter(lambda v: v.get(END) or v["bid_time"] <= v["expires"])

        def highest(v: dict[str, Any], state: Any) -> dict[str, Any] | None:
            if v.get(END):
                return v
            old = state.get("best")
            if old is not None and v["price"] <= old:
                return None
            state.set("best", v["price"])
            return {"category": v["category"], "old": old, "new": v["price"]}

        changes = pairs.apply(highest, stateful=True).filter(lambda v: v is not None)
        by_category = changes.group_by(lambda v: END if v.get(END) else v["category"],
                                       name="winner_by_category")

        def average(v: dict[str, Any], state: Any) -> dict[str, Any]:
            if v.get(END):
                return v
            total, n = state.get("sum", 0), state.get("n", 0)
            total += v["new"] - (v["old"] or 0)
            n += v["old"] is None
            state.set("sum", total)
            state.set("n", n)
            return {"category": v["category"], "avg_final": total / n}

        res = by_category.apply(average, stateful=True)
    elif query == "q8":
        people = branch("person", lambda p: True, "id")
        auctions = branch("auction", lambda a: True, "seller")
        near = 10_000 - 1
        pairs = people.join_interval(
            auctions, how="inner", grace_ms=day, backward_ms=near, forward_ms=near,
            on_merge=merge(lambda p, a: {"id": p["id"], "name": p["name"],
                                         "window_start": p["date_time"] // 10_000 * 10_000,
                                         "same": p["date_time"] // 10_000
                                         == a["date_time"] // 10_000}))

        def first(v: dict[str, Any], state: Any) -> bool:
            if v.get(END):
                return True
            if not v["same"] or state.get("seen"):
                return False
            state.set("seen", True)
            return True

        res = pairs.filter(first, stateful=True).apply(
            lambda v: v if v.get(END) else {k: v[k] for k in ("id", "name", "window_start")})
    else:
        raise ValueError(f"quix streams: {query} is not a join")

    def collect(v: dict[str, Any]) -> None:
        if v.get(END):
            on_end()
        else:
            out.append(v)

    res.update(collect)


def _latest(query: str, out: list[Any]) -> list[Any]:
    """An updating result's final rows: each key's last update (q4: per category)."""
    if query != "q4":
        return out
    return list({r["category"]: r for r in out}.values())


class Runner:
    def __init__(self, workdir: Path, servers: str, topics: dict[str, str]) -> None:
        self.workdir, self.servers, self.topics = workdir, servers, topics
        self.info: dict[str, Any] = {}

    def run(self, query: str, files: dict[str, Path]) -> Any:
        import time

        from quixstreams import Application
        from quixstreams.models.topics import TopicConfig

        app = Application(broker_address=self.servers, consumer_group=f"nx-{uuid.uuid4().hex}",
                          auto_offset_reset="earliest", state_dir=str(self.workdir / "quix-state"),
                          loglevel="WARNING", use_changelog_topics=False,
                          auto_create_topics=True)
        # Tansu reports no retention.ms, which Quix Streams' window stores derive theirs from
        config = TopicConfig(num_partitions=1, replication_factor=1,
                             extra_config={"retention.ms": "-1", "retention.bytes": "-1"})
        name = self.topics[merged_topic(files, query) if query in JOINED else str(files["bid"])]
        topic = app.topic(name, value_deserializer="json",
                          config=config,
                          timestamp_extractor=lambda v, headers, ts, kind: v["date_time"])
        topic.broker_config = config
        out: list[Any] = []
        from .nexmark_child import cpu_seconds

        span = [0.0, 0.0]
        cpu = [0.0, 0.0]

        def first(v: Any) -> None:
            if not span[0]:
                span[0], cpu[0] = time.perf_counter(), cpu_seconds()

        def end() -> None:
            span[1], cpu[1] = time.perf_counter(), cpu_seconds()
            app.stop()

        (_build_join if query in JOINED else _build)(app, query, topic, out, end, first)
        app.run()
        # from the first message to the end marker: the consumer group's join is not counted
        self.info = {"net_runtime_s": span[1] - span[0], "net_cpu_s": cpu[1] - cpu[0]}
        return lambda: _latest(query, out)

    def close(self) -> None:
        pass


def start(parallelism: int, checkpoint_s: float | None, workdir: Path, *, servers: str = "",
          topics: dict[str, str] | None = None) -> Runner:
    if not servers or not topics:
        raise ValueError("quix streams needs the broker (servers=) and the topics of the files")
    return Runner(workdir, servers, topics)
