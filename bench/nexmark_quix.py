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
"""

from __future__ import annotations

import uuid
from pathlib import Path
from typing import Any

SKIP: dict[str, str] = {
    "q5": "windows close per message key (final()): keyed by auction, an auction's last windows "
          "wait for a later bid of it; over one key the count-per-auction reduce re-serialises the "
          "window's whole state per message (92K bids did not finish in 300 s)",
    "q3": "not written yet: needs co-partitioned person/auction topics and join_asof/join_interval",
    "q4": "not written yet: a join with an expiry per auction, then an updating average",
    "q8": "not written yet: needs a windowed join of two topics (join_interval)",
}

END = "end"


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
        topic = app.topic(self.topics[str(files["bid"])], value_deserializer="json",
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

        _build(app, query, topic, out, end, first)
        app.run()
        # from the first message to the end marker: the consumer group's join is not counted
        self.info = {"net_runtime_s": span[1] - span[0], "net_cpu_s": cpu[1] - cpu[0]}
        return out

    def close(self) -> None:
        pass


def start(parallelism: int, checkpoint_s: float | None, workdir: Path, *, servers: str = "",
          topics: dict[str, str] | None = None) -> Runner:
    if not servers or not topics:
        raise ValueError("quix streams needs the broker (servers=) and the topics of the files")
    return Runner(workdir, servers, topics)
