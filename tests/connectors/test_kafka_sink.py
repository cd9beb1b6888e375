"""KafkaBatchSink at least once against a real broker, and the connectors' option checks."""

from __future__ import annotations

import datetime
import json

import pyarrow as pa
import pytest
import sabot_test_kafka as kafka
from sabot.connectors import KafkaBatchSink, KafkaBatchSource, KafkaConnectorError
from sabot.errors import ConfigError


def _table(n: int, start: int = 0) -> pa.Table:
    ids = list(range(start, start + n))
    return pa.table({
        "id": pa.array(ids, pa.int64()),
        "user": pa.array([f"user \"{i % 13}\"\n" if i % 7 == 0 else f"u{i % 13}" for i in ids]),
        "price": pa.array([i * 0.5 if i % 11 else None for i in ids], pa.float64()),
        "ok": pa.array([i % 2 == 0 for i in ids]),
        "at": pa.array([1_700_000_000_000 + i for i in ids], pa.timestamp("ms", "UTC")),
    })


def _sink(broker, topic, **kw) -> KafkaBatchSink:
    sink = KafkaBatchSink(topic, bootstrap_servers=broker.bootstrap_servers, **kw)
    sink.open()
    return sink


def test_at_least_once_round_trip(kafka_broker, kafka_topic):
    topic = kafka_topic(1)
    table = _table(3000)
    sink = _sink(kafka_broker, topic)
    for batch in table.to_batches(max_chunksize=700):
        sink.write(batch)
    sink.flush()
    sink.close()
    messages = kafka.read_all(kafka_broker.bootstrap_servers, topic)
    got = [json.loads(m.value()) for m in messages]
    want = table.to_pylist()
    assert [g["id"] for g in got] == [w["id"] for w in want]
    for g, w in zip(got, want):
        assert g["user"] == w["user"] and g["price"] == w["price"] and g["ok"] == w["ok"]
        stamp = w["at"].isoformat(timespec="milliseconds").replace("+00:00", "Z")
        assert g["at"] == stamp
    # Sabot's own source reads it back into the same table.
    src = KafkaBatchSource(topic, bootstrap_servers=kafka_broker.bootstrap_servers,
                           schema=table.schema, until="end")
    src.open()
    batches = []
    while not src.finished:
        batches += [pb.batch for pb in src.poll() if pb.batch is not None]
    src.close()
    assert pa.Table.from_batches(batches).equals(table)


def test_key_column_becomes_the_message_key_and_keeps_a_key_on_one_partition(
        kafka_broker, kafka_topic):
    topic = kafka_topic(4)
    n = 2000
    table = pa.table({"k": pa.array([i % 9 for i in range(n)]), "v": pa.array(range(n))})
    sink = _sink(kafka_broker, topic, key="k")
    sink.write(table)
    sink.flush()
    sink.close()
    messages = kafka.read_all(kafka_broker.bootstrap_servers, topic)
    assert len(messages) == n
    partitions: dict[bytes, set[int]] = {}
    for m in messages:
        assert json.loads(m.value())["k"] == int(m.key())
        partitions.setdefault(m.key(), set()).add(m.partition())
    assert set(partitions) == {str(k).encode() for k in range(9)}
    assert all(len(p) == 1 for p in partitions.values())
    assert len(set().union(*partitions.values())) > 1  # the keys spread over partitions
    # Per key, the values arrive in the order written.
    for key in partitions:
        vs = [json.loads(m.value())["v"] for m in messages if m.key() == key]
        assert vs == sorted(vs)


def test_raw_format_writes_the_value_column(kafka_broker, kafka_topic):
    topic = kafka_topic(1)
    values = [bytes([i % 256, 0, 10]) * (i % 5) for i in range(1500)]
    sink = _sink(kafka_broker, topic, format="raw")
    sink.write(pa.table({"value": pa.array(values, pa.binary())}))
    sink.commit(1)  # at least once: a flush
    sink.close()
    assert [m.value() for m in kafka.read_all(kafka_broker.bootstrap_servers, topic)] == values


def test_nested_and_odd_types_are_valid_json(kafka_broker, kafka_topic):
    topic = kafka_topic(1)
    table = pa.table({
        "s": pa.array([{"a": 1, "b": "x"}, None, {"a": None, "b": "\t"}]),
        "l": pa.array([[1, 2], None, []]),
        "d": pa.array([datetime.date(2024, 5, 1)] * 3),
        "f": pa.array([float("nan"), 2.0, float("inf")]),
        "c": pa.array(["a", "b", "a"]).dictionary_encode(),
    })
    sink = _sink(kafka_broker, topic)
    sink.write(table)
    sink.flush()
    sink.close()
    got = [json.loads(m.value()) for m in kafka.read_all(kafka_broker.bootstrap_servers, topic)]
    assert got == [
        {"s": {"a": 1, "b": "x"}, "l": [1, 2], "d": "2024-05-01", "f": None, "c": "a"},
        {"s": None, "l": None, "d": "2024-05-01", "f": 2.0, "c": "b"},
        {"s": {"a": None, "b": "\t"}, "l": [], "d": "2024-05-01", "f": None, "c": "a"},
    ]


def test_undelivered_messages_make_flush_raise(kafka_broker):
    port = kafka.free_port()  # nothing listens there
    sink = KafkaBatchSink("t", bootstrap_servers=f"127.0.0.1:{port}",
                          config={"message.timeout.ms": 1500})
    sink.open()
    sink.write(_table(50))
    with pytest.raises(KafkaConnectorError, match=r"50 message\(s\) to topic 't' were not delivered"):
        sink.flush()
    sink.flush()  # the failures were reported once
    sink.abort()


def test_unknown_key_column_is_a_config_error(kafka_broker, kafka_topic):
    sink = _sink(kafka_broker, kafka_topic(1), key="nope")
    with pytest.raises(ConfigError, match=r"key='nope' is invalid: expected a column of the batch: id, user"):
        sink.write(_table(3))
    sink.close()


@pytest.mark.parametrize("kwargs, match", [
    ({"format": "avro"}, r"format='avro' is invalid: expected one of 'json', 'raw'"),
    ({"start": "beginning"}, r"start='beginning' is invalid: expected one of 'earliest', 'latest', 'committed'"),
    ({"until": "now"}, r"until='now' is invalid: expected one of None, 'end'"),
    ({"max_batch": 0}, r"max_batch=0 is invalid: expected an integer >= 1"),
    ({"poll_timeout": 0}, r"poll_timeout=0 is invalid"),
    ({"start": "committed"}, r"group_id=None is invalid: expected a consumer group name"),
    ({"format": "raw", "schema": pa.schema([("a", pa.int64())])}, r"schema=.* with format='raw'"),
    ({"schema": {"a": "int"}}, r"expected a pyarrow.Schema"),
    ({"with_metadata": True, "schema": pa.schema([("_offset", pa.int64())])}, r"clashing: _offset"),
    ({"config": {"enable.auto.commit": True}}, r"config\['enable.auto.commit'\]=True is invalid"),
    ({"config": {"group.id": "x"}}, r"the group_id argument"),
    ({"config": {"fetch.wait.max.ms": [1]}}, r"a str, int, float or bool"),
])
def test_source_options_are_checked(kwargs, match):
    with pytest.raises(ConfigError, match=match):
        KafkaBatchSource("t", bootstrap_servers="127.0.0.1:9092", **kwargs)


@pytest.mark.parametrize("topics", ["", [], ["a", ""], ["a", "a"], 7])
def test_source_topics_are_checked(topics):
    with pytest.raises(ConfigError, match="topics="):
        KafkaBatchSource(topics, bootstrap_servers="127.0.0.1:9092")


@pytest.mark.parametrize("kwargs, match", [
    ({"format": "avro"}, r"format='avro' is invalid: expected one of 'json', 'raw'"),
    ({"exactly_once": True}, r"transactional_id=None is invalid: expected a name with exactly_once=True"),
    ({"transactional_id": "x"}, r"transactional_id='x' is invalid: expected None with exactly_once=False"),
    ({"exactly_once": True, "transactional_id": "x", "config": {"enable.idempotence": False}},
     r"exactly_once=True needs the idempotent producer"),
    ({"config": {"transactional.id": "x"}}, r"the transactional_id argument"),
    ({"key": ""}, r"key='' is invalid"),
])
def test_sink_options_are_checked(kwargs, match):
    with pytest.raises(ConfigError, match=match):
        KafkaBatchSink("t", bootstrap_servers="127.0.0.1:9092", **kwargs)


def test_unknown_librdkafka_settings_are_config_errors(kafka_broker, kafka_topic):
    src = KafkaBatchSource(kafka_topic(1), bootstrap_servers=kafka_broker.bootstrap_servers,
                           config={"fetch.wait.maximum": 5})
    with pytest.raises(ConfigError, match=r"config\['fetch.wait.maximum'\]=5 is invalid: expected "
                                          r"a setting librdkafka accepts \(No such configuration"):
        src.open()
    sink = KafkaBatchSink("t", bootstrap_servers=kafka_broker.bootstrap_servers,
                          config={"acks": "several"})
    with pytest.raises(ConfigError, match=r"config=\{'acks': 'several'\} is invalid: expected a "
                       r"setting librdkafka accepts \(Invalid value .*request.required.acks"):
        sink.open()


def test_using_a_closed_sink_or_source_is_a_clear_error(kafka_broker):
    sink = KafkaBatchSink("t", bootstrap_servers=kafka_broker.bootstrap_servers)
    with pytest.raises(KafkaConnectorError, match="not open: call open"):
        sink.write(_table(1))
    src = KafkaBatchSource("t", bootstrap_servers=kafka_broker.bootstrap_servers)
    with pytest.raises(KafkaConnectorError, match="not open: call open"):
        src.poll()


def test_at_least_once_sink_has_no_epochs(kafka_broker, kafka_topic):
    sink = _sink(kafka_broker, kafka_topic(1))
    assert sink.last_committed_epoch() is None
    assert sink.staged() is None
    sink.recover(3, None)  # nothing to do at least once
    sink.close()


def test_a_group_name_is_made_when_none_is_given(kafka_broker, kafka_topic):
    topic = kafka_topic(1)
    kafka.produce(kafka_broker.bootstrap_servers, topic, [b'{"a":1}'], partition=0)
    src = KafkaBatchSource(topic, bootstrap_servers=kafka_broker.bootstrap_servers, until="end")
    src.open()
    rows = []
    while not src.finished:
        rows += [r for pb in src.poll() for r in pb.batch.to_pylist()]
    with pytest.raises(ConfigError, match="group_id=None"):
        src.commit_positions()
    src.close()
    assert rows == [{"a": 1}]
