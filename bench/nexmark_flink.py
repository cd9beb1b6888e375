"""Flink's side of ``streaming_nexmark``: Flink SQL on PyFlink's local mini-cluster (streaming
mode), the query texts of the Nexmark project (github.com/nexmark/nexmark,
``nexmark-flink/src/main/resources/queries``) over ``filesystem`` tables in the ``json`` format.

Event time is ``dt = TO_TIMESTAMP_LTZ(date_time, 3)`` with a watermark equal to it (the files
are in event-time order), windows in UTC. Departures from the Nexmark texts, so that every
engine computes the same answer:

- q4 averages ``CAST(final AS DOUBLE)`` (Flink's AVG of a BIGINT is an integer division);
- q7 keeps a bid when it is in the same 10 s window as the maximum (``B.dt`` in
  ``(window_time - 10 s, window_time]``, i.e. ``[window_start, window_end)``), where the Nexmark
  text's ``BETWEEN window_end - 10 s AND window_end`` also takes a bid at the next window's first
  millisecond;
- the output keeps ``window_start`` (q5, q8) and the time columns as epoch ms.

The sink is a ``filesystem`` table in ``debezium-json`` (a changelog format, as q4 and q5 update
their results); the answer is that changelog replayed, read after the timed region. The timed
figure is the job's own net runtime (JobExecutionResult.getNetRuntime: from the job running to
finished, without the client's planning and the mini-cluster's start); the wall time of
``execute_sql(...).wait()`` is kept beside it. CPU seconds are counted from the job's
submission (``execute_sql`` returned) to its end, over the Python process and its JVM.
"""

from __future__ import annotations

import datetime as _dt
import json
import os
import shutil
from pathlib import Path
from typing import Any

SKIP: dict[str, str] = {}

_COLUMNS = {
    "person": "id BIGINT, name STRING, email_address STRING, credit_card STRING, city STRING, "
              "state STRING, date_time BIGINT, extra STRING",
    "auction": "id BIGINT, item_name STRING, description STRING, initial_bid BIGINT, "
               "reserve BIGINT, date_time BIGINT, expires BIGINT, seller BIGINT, "
               "category BIGINT, extra STRING",
    "bid": "auction BIGINT, bidder BIGINT, price BIGINT, channel STRING, url STRING, "
           "date_time BIGINT, extra STRING",
}

_HOP = "TABLE(HOP(TABLE bid, DESCRIPTOR(dt), INTERVAL '2' SECOND, INTERVAL '10' SECOND))"

#: query -> (sink columns, SELECT)
QUERIES: dict[str, tuple[str, str]] = {
    "q0": ("auction BIGINT, bidder BIGINT, price BIGINT, date_time BIGINT, extra STRING",
           "SELECT auction, bidder, price, date_time, extra FROM bid"),
    "q1": ("auction BIGINT, bidder BIGINT, price DECIMAL(23, 3), date_time BIGINT, extra STRING",
           "SELECT auction, bidder, 0.908 * price AS price, date_time, extra FROM bid"),
    "q2": ("auction BIGINT, price BIGINT",
           "SELECT auction, price FROM bid WHERE MOD(auction, 123) = 0"),
    "q3": ("name STRING, city STRING, state STRING, id BIGINT",
           "SELECT P.name, P.city, P.state, A.id FROM auction AS A INNER JOIN person AS P "
           "ON A.seller = P.id WHERE A.category = 10 AND "
           "(P.state = 'OR' OR P.state = 'ID' OR P.state = 'CA')"),
    "q4": ("category BIGINT, avg_final DOUBLE",
           "SELECT Q.category, AVG(CAST(Q.final AS DOUBLE)) AS avg_final FROM ("
           " SELECT MAX(B.price) AS final, A.category FROM auction A, bid B"
           " WHERE A.id = B.auction AND B.date_time BETWEEN A.date_time AND A.expires"
           " GROUP BY A.id, A.category) Q GROUP BY Q.category"),
    "q5": ("auction BIGINT, num BIGINT, window_start TIMESTAMP(3)",
           "SELECT AuctionBids.auction, AuctionBids.num, AuctionBids.starttime FROM ("
           f" SELECT auction, count(*) AS num, window_start AS starttime, window_end AS endtime"
           f" FROM {_HOP} GROUP BY auction, window_start, window_end) AS AuctionBids"
           " JOIN ("
           "  SELECT max(CountBids.num) AS maxn, CountBids.starttime, CountBids.endtime FROM ("
           f"   SELECT count(*) AS num, window_start AS starttime, window_end AS endtime"
           f"   FROM {_HOP} GROUP BY auction, window_start, window_end) AS CountBids"
           "  GROUP BY CountBids.starttime, CountBids.endtime) AS MaxBids"
           " ON AuctionBids.starttime = MaxBids.starttime AND"
           " AuctionBids.endtime = MaxBids.endtime AND AuctionBids.num >= MaxBids.maxn"),
    "q7": ("auction BIGINT, price BIGINT, bidder BIGINT, date_time BIGINT, extra STRING",
           "SELECT B.auction, B.price, B.bidder, B.date_time, B.extra FROM bid B JOIN ("
           " SELECT MAX(price) AS maxprice, window_time AS wt"
           " FROM TABLE(TUMBLE(TABLE bid, DESCRIPTOR(dt), INTERVAL '10' SECOND))"
           " GROUP BY window_start, window_end, window_time) B1"
           " ON B.price = B1.maxprice"
           " WHERE B.dt > B1.wt - INTERVAL '10' SECOND AND B.dt <= B1.wt"),
    "q8": ("id BIGINT, name STRING, window_start TIMESTAMP(3)",
           "SELECT P.id, P.name, P.starttime FROM ("
           " SELECT id, name, window_start AS starttime, window_end AS endtime"
           " FROM TABLE(TUMBLE(TABLE person, DESCRIPTOR(dt), INTERVAL '10' SECOND))"
           " GROUP BY id, name, window_start, window_end) P"
           " JOIN ("
           " SELECT seller, window_start AS starttime, window_end AS endtime"
           " FROM TABLE(TUMBLE(TABLE auction, DESCRIPTOR(dt), INTERVAL '10' SECOND))"
           " GROUP BY seller, window_start, window_end) A"
           " ON P.id = A.seller AND P.starttime = A.starttime AND P.endtime = A.endtime"),
}

_READS = {"q0": ("bid",), "q1": ("bid",), "q2": ("bid",), "q3": ("person", "auction"),
          "q4": ("auction", "bid"), "q5": ("bid",), "q7": ("bid",), "q8": ("person", "auction")}


def availability() -> tuple[bool, str]:
    try:
        import pyflink  # noqa: F401
        from pyflink.version import __version__
    except ImportError:
        return False, "apache-flink is not installed"
    if shutil.which("java") is None and not os.environ.get("JAVA_HOME"):
        return False, "no Java runtime (apt-get install openjdk-17-jre-headless)"
    return True, __version__


def version() -> str:
    return availability()[1]


class Runner:
    def __init__(self, parallelism: int, checkpoint_s: float | None, workdir: Path) -> None:
        from pyflink.common import Configuration
        from pyflink.table import EnvironmentSettings, TableEnvironment

        self.workdir = workdir
        self.info: dict[str, Any] = {}
        conf = Configuration()
        conf.set_string("parallelism.default", str(parallelism))
        conf.set_string("table.local-time-zone", "UTC")
        conf.set_string("table.exec.resource.default-parallelism", str(parallelism))
        if checkpoint_s:
            ck = (workdir / "flink-checkpoints").resolve()
            conf.set_string("execution.checkpointing.interval", f"{int(checkpoint_s)} s")
            conf.set_string("state.backend.type", "hashmap")
            conf.set_string("execution.checkpointing.storage", "filesystem")
            conf.set_string("execution.checkpointing.dir", ck.as_uri())
            conf.set_string("state.checkpoints.dir", ck.as_uri())
        settings = EnvironmentSettings.new_instance().in_streaming_mode() \
            .with_configuration(conf).build()
        self.t_env = TableEnvironment.create(settings)
        self._n = 0

    def run(self, query: str, files: dict[str, Path]) -> Any:
        import time

        self._n += 1
        sink_dir = self.workdir / f"flink-out-{self._n}"
        shutil.rmtree(sink_dir, ignore_errors=True)
        t = self.t_env
        for kind in _READS[query]:
            t.execute_sql(f"DROP TEMPORARY TABLE IF EXISTS {kind}")
            t.execute_sql(
                f"CREATE TEMPORARY TABLE {kind} ({_COLUMNS[kind]}, "
                "dt AS TO_TIMESTAMP_LTZ(date_time, 3), WATERMARK FOR dt AS dt) WITH ("
                f"'connector' = 'filesystem', 'path' = '{files[kind].resolve().as_uri()}', "
                "'format' = 'json')")
        cols, select = QUERIES[query]
        t.execute_sql("DROP TEMPORARY TABLE IF EXISTS nexmark_sink")
        t.execute_sql(f"CREATE TEMPORARY TABLE nexmark_sink ({cols}) WITH ("
                      f"'connector' = 'filesystem', 'path' = '{sink_dir.resolve().as_uri()}', "
                      "'format' = 'debezium-json')")
        from .nexmark_child import cpu_seconds

        t0 = time.perf_counter()
        result = t.execute_sql(f"INSERT INTO nexmark_sink {select}")
        cpu0 = cpu_seconds()  # planned and submitted: from here on the job runs
        result.wait()
        wall = time.perf_counter() - t0
        cpu = cpu_seconds() - cpu0
        client = result.get_job_client()
        net = None
        if client is not None:
            net = client.get_job_execution_result().result().get_net_runtime() / 1000
        self.info = {"wall_s": round(wall, 3), "net_runtime_s": net, "net_cpu_s": cpu,
                     "checkpoints": _checkpoints(self.workdir / "flink-checkpoints")}
        return lambda: _replay(sink_dir)

    def close(self) -> None:
        shutil.rmtree(self.workdir, ignore_errors=True)


def _checkpoints(folder: Path) -> int:
    """The number of the newest completed checkpoint (Flink keeps ``chk-N`` folders)."""
    nums = [int(p.name[4:]) for p in folder.glob("*/chk-*") if p.name[4:].isdigit()]
    return max(nums, default=0)


def _value(name: str, v: Any) -> Any:
    if name == "window_start" and isinstance(v, str):  # TIMESTAMP(3) written as SQL text, UTC
        d = _dt.datetime.fromisoformat(v.replace("Z", "")).replace(tzinfo=_dt.timezone.utc)
        return int(round(d.timestamp() * 1000))
    return v


def _replay(sink_dir: Path) -> list[dict[str, Any]]:
    """The final rows of a debezium-json changelog: inserts ("c", "r", the after of "u") minus
    retractions ("d", the before of "u")."""
    live: dict[str, int] = {}
    for root, _, names in os.walk(sink_dir):
        for name in sorted(names):
            if name.endswith(".crc"):
                continue
            with open(os.path.join(root, name)) as f:
                for line in f:
                    if not line.strip():
                        continue
                    ev = json.loads(line)
                    if ev.get("before") is not None and ev.get("op") in ("d", "u"):
                        k = json.dumps(ev["before"], sort_keys=True)
                        live[k] = live.get(k, 0) - 1
                    if ev.get("after") is not None and ev.get("op") in ("c", "r", "u"):
                        k = json.dumps(ev["after"], sort_keys=True)
                        live[k] = live.get(k, 0) + 1
    out = []
    for k, n in live.items():
        row = {c: _value(c, v) for c, v in json.loads(k).items()}
        out.extend([row] * max(n, 0))
    return out


def start(parallelism: int, checkpoint_s: float | None, workdir: Path) -> Runner:
    return Runner(parallelism, checkpoint_s, workdir)
