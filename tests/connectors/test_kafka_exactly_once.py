"""KafkaBatchSink exactly once against a real broker: transactions read with
isolation.level=read_committed, the epoch marker, recovery after a writer killed with SIGKILL
(before, after and during the Kafka commit), and fencing of an older producer."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import uuid
from pathlib import Path

import pyarrow as pa
import pytest
import sabot_test_kafka as kafka
from pyarrow import ipc
from sabot.connectors import KafkaBatchSink, KafkaConnectorError

CHILD = Path(__file__).with_name("kafka_sink_child.py")


def _rows(start: int, stop: int) -> pa.Table:
    ids = list(range(start, stop))
    return pa.table({"id": pa.array(ids, pa.int64()), "k": pa.array([i % 5 for i in ids])})


def _txid() -> str:
    return f"tx-{uuid.uuid4().hex[:10]}"


def _sink(broker, topic, txid, **kw) -> KafkaBatchSink:
    sink = KafkaBatchSink(topic, bootstrap_servers=broker.bootstrap_servers, exactly_once=True,
                          transactional_id=txid, **kw)
    sink.open()
    return sink


def _ids(broker, topic, isolation="read_committed") -> list[int]:
    return [json.loads(m.value())["id"]
            for m in kafka.read_all(broker.bootstrap_servers, topic, isolation=isolation)]


def test_read_committed_sees_committed_rows_exactly_once(kafka_broker, kafka_topic):
    topic = kafka_topic(1)
    sink = _sink(kafka_broker, topic, _txid())
    assert sink.last_committed_epoch() is None
    for batch in _rows(0, 1500).to_batches(max_chunksize=500):
        sink.write(batch)
    sink.commit(1)
    assert sink.staged() is None
    sink.write(_rows(1500, 2500))
    sink.commit(2)
    assert sink.last_committed_epoch() == 2
    sink.close()
    assert _ids(kafka_broker, topic) == list(range(2500))


@pytest.mark.xfail(strict=True, reason="Tansu gap: a transaction that holds only the epoch's offset "
                   "(no rows) commits without storing the offset (docs/kafka.md)")
def test_an_epoch_without_rows_is_recorded(kafka_broker, kafka_topic):
    topic = kafka_topic(1)
    sink = _sink(kafka_broker, topic, _txid())
    sink.write(_rows(0, 10))
    sink.commit(1)
    sink.commit(2)  # nothing staged
    epoch = sink.last_committed_epoch()
    sink.close()
    assert epoch == 2


def test_recovering_an_epoch_without_rows_writes_nothing(kafka_broker, kafka_topic):
    topic, txid = kafka_topic(1), _txid()
    sink = _sink(kafka_broker, topic, txid)
    sink.write(_rows(0, 300))
    sink.commit(1)
    sink.commit(2)  # nothing staged
    sink.close()
    again = _sink(kafka_broker, topic, txid)
    again.recover(2, None)
    again.recover(2, _rows(0, 0))
    again.close()
    assert _ids(kafka_broker, topic) == list(range(300))


def test_staged_rows_are_invisible_until_commit(kafka_broker, kafka_topic):
    topic = kafka_topic(1)
    sink = _sink(kafka_broker, topic, _txid())
    sink.write(_rows(0, 1000))
    sink.write(_rows(1000, 1200))
    assert sink.staged().equals(_rows(0, 1200))
    assert _ids(kafka_broker, topic, isolation="read_uncommitted") == []
    sink.commit(7)
    assert _ids(kafka_broker, topic) == list(range(1200))
    assert sink.last_committed_epoch() == 7
    sink.close()


def test_abort_drops_the_staged_rows(kafka_broker, kafka_topic):
    topic = kafka_topic(1)
    sink = _sink(kafka_broker, topic, _txid())
    sink.write(_rows(0, 500))
    sink.abort()
    assert sink.staged() is None
    sink.write(_rows(500, 900))
    sink.commit(1)
    sink.close()
    assert _ids(kafka_broker, topic) == list(range(500, 900))


def test_epochs_must_grow(kafka_broker, kafka_topic):
    sink = _sink(kafka_broker, kafka_topic(1), _txid())
    sink.commit(5)
    with pytest.raises(KafkaConnectorError, match="epoch 5 is not after epoch 5"):
        sink.commit(5)
    sink.close()


def test_the_epoch_marker_survives_the_process(kafka_broker, kafka_topic):
    topic, txid = kafka_topic(1), _txid()
    sink = _sink(kafka_broker, topic, txid)
    sink.write(_rows(0, 10))
    sink.commit(41)
    sink.close()
    again = _sink(kafka_broker, topic, txid)
    assert again.last_committed_epoch() == 41
    other = _sink(kafka_broker, topic, _txid())
    assert other.last_committed_epoch() is None  # each transactional id has its own marker
    again.close()
    other.close()


def _crash(broker, topic: str, txid: str, tmp_path: Path, point: str) -> pa.Table:
    """Run the child up to ``point``, kill it with SIGKILL, return the checkpoint it saved."""
    checkpoint = tmp_path / "staged.arrow"
    errors = tmp_path / "child.err"
    with open(errors, "wb") as err:
        child = subprocess.Popen(
            [sys.executable, str(CHILD), broker.bootstrap_servers, topic, txid, str(checkpoint),
             point], stdout=subprocess.PIPE, stderr=err, text=True)
    try:
        line = child.stdout.readline().strip()
        assert line == point, (line, errors.read_text()[-3000:])
    finally:
        os.kill(child.pid, signal.SIGKILL)
        child.wait(timeout=30)
        child.stdout.close()
    assert child.returncode == -signal.SIGKILL
    with pa.memory_map(str(checkpoint)) as f:
        return ipc.open_file(f).read_all()


def test_recover_after_a_crash_between_staging_and_commit(kafka_broker, kafka_topic, tmp_path):
    topic, txid = kafka_topic(2), _txid()
    staged = _crash(kafka_broker, topic, txid, tmp_path, "staged")
    assert staged.equals(_rows(1000, 2000))
    assert sorted(_ids(kafka_broker, topic)) == list(range(1000))  # epoch 1 only
    sink = _sink(kafka_broker, topic, txid, key="k")
    assert sink.last_committed_epoch() == 1
    sink.recover(2, staged)
    assert sink.last_committed_epoch() == 2
    sink.recover(2, staged)  # idempotent
    sink.close()
    again = _sink(kafka_broker, topic, txid, key="k")
    again.recover(2, staged)  # and so is a restart that recovers again
    again.close()
    assert sorted(_ids(kafka_broker, topic)) == list(range(2000))


def test_recover_after_a_crash_after_the_commit_writes_nothing_more(
        kafka_broker, kafka_topic, tmp_path):
    topic, txid = kafka_topic(2), _txid()
    staged = _crash(kafka_broker, topic, txid, tmp_path, "committed")
    sink = _sink(kafka_broker, topic, txid, key="k")
    assert sink.last_committed_epoch() == 2
    sink.recover(2, staged)
    sink.write(_rows(2000, 2100))  # and the sink goes on after the recovery
    sink.commit(3)
    sink.close()
    assert sorted(_ids(kafka_broker, topic)) == list(range(2100))


@pytest.mark.xfail(strict=True, reason="Tansu gap: records of an aborted transaction are visible to "
                   "isolation.level=read_committed readers (docs/kafka.md)")
def test_recover_after_a_crash_during_the_commit(kafka_broker, kafka_topic, tmp_path):
    topic, txid = kafka_topic(2), _txid()
    staged = _crash(kafka_broker, topic, txid, tmp_path, "in-transaction")
    sink = _sink(kafka_broker, topic, txid, key="k")  # fences the dead producer, aborting its rows
    assert sink.last_committed_epoch() == 1
    sink.recover(2, staged)
    sink.close()
    assert sorted(_ids(kafka_broker, topic)) == list(range(2000))


def test_the_rows_of_an_open_transaction_stay_invisible(kafka_broker, kafka_topic, tmp_path):
    """What the previous test needs and Tansu does give: before the dead writer's transaction is
    aborted, read_committed readers do not see its rows."""
    topic, txid = kafka_topic(2), _txid()
    _crash(kafka_broker, topic, txid, tmp_path, "in-transaction")
    assert sorted(_ids(kafka_broker, topic)) == list(range(1000))


def test_a_newer_producer_fences_the_older_one(kafka_broker, kafka_topic):
    topic, txid = kafka_topic(1), _txid()
    old = _sink(kafka_broker, topic, txid)
    old.write(_rows(0, 100))
    old.commit(1)
    new = _sink(kafka_broker, topic, txid)  # e.g. the restarted job, while the old one lives on
    old.write(_rows(100, 200))
    with pytest.raises(KafkaConnectorError, match="fenced") as caught:
        old.commit(2)
    assert caught.value.fenced
    with pytest.raises(KafkaConnectorError, match="fenced"):
        old.commit(3)  # and stays fenced
    new.recover(2, _rows(100, 200))
    new.close()
    old.close()
    assert _ids(kafka_broker, topic) == list(range(200))


def test_the_source_reads_a_transactional_topic_to_its_end(kafka_broker, kafka_topic):
    """The commit markers between transactions take offsets that no message has: a bounded read
    still finishes, at the end of the log, with every committed row once."""
    from sabot.connectors import KafkaBatchSource

    topic = kafka_topic(1)
    sink = _sink(kafka_broker, topic, _txid())
    for epoch in range(1, 6):
        sink.write(_rows((epoch - 1) * 300, epoch * 300))
        sink.commit(epoch)
    sink.close()
    src = KafkaBatchSource(topic, bootstrap_servers=kafka_broker.bootstrap_servers, until="end",
                           max_batch=200)
    src.open()
    ids = []
    while not src.finished:
        ids += [r["id"] for pb in src.poll() if pb.batch is not None for r in pb.batch.to_pylist()]
    positions = src.positions()
    src.close()
    assert ids == list(range(1500))
    assert positions[(topic, 0)] >= 1500 + 5  # past the five commit markers too
