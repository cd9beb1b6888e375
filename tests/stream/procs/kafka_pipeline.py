"""A checkpointed pipeline from Kafka to Kafka, for the kill -9 tests:
``python kafka_pipeline.py SERVERS IN_TOPIC OUT_PREFIX STATE_DIR eo|alo``. It reads IN_TOPIC to
its end (bounded), writes per-key tumbling-window counts to OUT_PREFIX-windows and every bid
above 50 to OUT_PREFIX-rows, exactly once ("eo") or at least once ("alo"), checkpointing every
100 ms."""

from __future__ import annotations

import sys

import pyarrow as pa
import pyarrow.compute as pc
from sabot import stream as st

SCHEMA = pa.schema([("key", pa.int64()), ("price", pa.int64()), ("t", pa.int64())])


def main() -> None:
    servers, in_topic, out, state_dir, mode = sys.argv[1:6]
    env = st.StreamEnv(checkpoint_interval="100ms", state_dir=state_dir)
    bids = env.from_kafka(in_topic, bootstrap_servers=servers, schema=SCHEMA, until="end",
                          timestamp="t", watermark=st.bounded_out_of_orderness("1s"),
                          max_batch=200)
    eo = mode == "eo"
    (bids.key_by("key").window(st.tumbling("5s")).agg(n=st.count(), top=st.max("price"))
         .to_kafka(f"{out}-windows", bootstrap_servers=servers, key="key", exactly_once=eo))
    (bids.filter(pc.field("price") > 50)
         .to_kafka(f"{out}-rows", bootstrap_servers=servers, exactly_once=eo))
    env.execute("kafka-pipeline")


if __name__ == "__main__":
    main()
