"""A process that writes with an exactly-once KafkaBatchSink and is killed with SIGKILL by the
test (tests/connectors/test_kafka_exactly_once.py) at a chosen point.

    python kafka_sink_child.py SERVERS TOPIC TRANSACTIONAL_ID CHECKPOINT_FILE POINT

It commits epoch 1 (rows 0..999), then stages rows 1000..1999 for epoch 2 and saves them to
CHECKPOINT_FILE as Arrow IPC (what a checkpoint's manifest would hold). Then, by POINT:
``staged`` — stops there (the crash comes before the Kafka commit); ``committed`` — commits
epoch 2 first; ``in-transaction`` — opens the transaction and sends the rows but does not commit
(a crash during the commit; a plain confluent-kafka producer with the same transactional id plays
the sink's part there). It prints the point reached and waits to be killed.
"""

from __future__ import annotations

import os
import sys
import time

import pyarrow as pa
from pyarrow import ipc
from sabot.connectors import KafkaBatchSink


def rows(start: int, stop: int) -> pa.Table:
    ids = list(range(start, stop))
    return pa.table({"id": pa.array(ids, pa.int64()), "k": pa.array([i % 5 for i in ids])})


def main() -> None:
    servers, topic, txid, checkpoint, point = sys.argv[1:6]
    sink = KafkaBatchSink(topic, bootstrap_servers=servers, exactly_once=True,
                          transactional_id=txid, key="k")
    sink.open()
    sink.write(rows(0, 600))
    sink.write(rows(600, 1000))
    sink.commit(1)
    sink.write(rows(1000, 2000))
    staged = sink.staged()
    assert staged is not None
    with pa.OSFile(checkpoint + ".tmp", "wb") as f, ipc.new_file(f, staged.schema) as w:
        w.write_table(staged)
    os.replace(checkpoint + ".tmp", checkpoint)
    if point == "committed":
        sink.commit(2)
    elif point == "in-transaction":
        from confluent_kafka import Producer

        sink.close()
        producer = Producer({"bootstrap.servers": servers, "transactional.id": txid})
        producer.init_transactions(30)
        producer.begin_transaction()
        for i in range(1000, 2000):
            producer.produce(topic, value=b'{"id":%d,"k":%d}' % (i, i % 5), key=b"%d" % (i % 5))
        producer.flush(30)
    print(point, flush=True)
    while True:
        time.sleep(1)


if __name__ == "__main__":
    main()
