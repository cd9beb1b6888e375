"""Checking the options of the Kafka source and sink, and building their librdkafka settings.

Every refusal is a :class:`~sabot.errors.ConfigError` naming the option, the value and what is
accepted. Settings the connectors own (the servers, the group, auto-commit, the transactional id)
cannot be overridden through ``config``: they are arguments, or they are what makes the
delivery guarantees hold.
"""

from __future__ import annotations

import numbers
from collections.abc import Mapping
from typing import Any

import pyarrow as pa

from ..errors import ConfigError

SOURCE_FORMATS = ("json", "raw")
SINK_FORMATS = ("json", "raw")
STARTS = ("earliest", "latest", "committed")
UNTILS = (None, "end")

#: The columns ``with_metadata=True`` adds to a source's batches.
METADATA_COLUMNS = ("_topic", "_partition", "_offset", "_timestamp", "_key")

# librdkafka settings that are arguments of the connectors or that their guarantees rest on.
_SOURCE_OWNED = {
    "bootstrap.servers": "the bootstrap_servers argument",
    "metadata.broker.list": "the bootstrap_servers argument",
    "group.id": "the group_id argument",
    "enable.auto.commit": "positions are committed only by commit_positions() (never automatically)",
    "enable.auto.offset.store": "positions are tracked by the source",
    "enable.partition.eof": "the source needs end-of-partition events for until='end'",
}
_SINK_OWNED = {
    "bootstrap.servers": "the bootstrap_servers argument",
    "metadata.broker.list": "the bootstrap_servers argument",
    "transactional.id": "the transactional_id argument",
}
_SINK_EXACTLY_ONCE_OWNED = {
    "enable.idempotence": "exactly_once=True needs the idempotent producer",
    "acks": "exactly_once=True needs acks=all",
}


def check_topics(topics: Any) -> list[str]:
    names = [topics] if isinstance(topics, str) else topics
    if (
        not isinstance(names, (list, tuple))
        or not names
        or not all(isinstance(t, str) and t for t in names)
    ):
        raise ConfigError("topics", topics, "a topic name or a non-empty list of topic names")
    if len(set(names)) != len(names):
        raise ConfigError("topics", topics, "each topic named once")
    return list(names)


def check_topic(topic: Any) -> str:
    if not isinstance(topic, str) or not topic:
        raise ConfigError("topic", topic, "a topic name (a non-empty string)")
    return topic


def check_servers(servers: Any) -> str:
    if not isinstance(servers, str) or not servers.strip():
        raise ConfigError("bootstrap_servers", servers, "'host:port' or a comma-separated list of them")
    return servers


def check_choice(name: str, value: Any, accepted: tuple[Any, ...]) -> Any:
    if value not in accepted:
        raise ConfigError(name, value, "one of " + ", ".join(repr(a) for a in accepted))
    return value


def check_schema(schema: Any, fmt: str) -> pa.Schema | None:
    if schema is None:
        return None
    if not isinstance(schema, pa.Schema):
        raise ConfigError("schema", schema, "a pyarrow.Schema or None (types inferred per batch)")
    if fmt != "json":
        raise ConfigError("schema", schema, f"None with format={fmt!r} (a schema is for format='json')")
    if len(set(schema.names)) != len(schema.names):
        raise ConfigError("schema", schema, "each field named once")
    return schema


def check_metadata_names(schema: pa.Schema | None, with_metadata: bool) -> None:
    if schema is None or not with_metadata:
        return
    clash = [n for n in schema.names if n in METADATA_COLUMNS]
    if clash:
        raise ConfigError(
            "schema", schema,
            f"no field named like a metadata column ({', '.join(METADATA_COLUMNS)}) with "
            f"with_metadata=True; clashing: {', '.join(clash)}")


def check_positive_int(name: str, value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or int(value) < 1:
        raise ConfigError(name, value, "an integer >= 1")
    return int(value)


def check_timeout(name: str, value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, numbers.Real) or not float(value) > 0:
        raise ConfigError(name, value, "a number of seconds > 0")
    return float(value)


def check_bool(name: str, value: Any) -> bool:
    if not isinstance(value, bool):
        raise ConfigError(name, value, "True or False")
    return value


def check_optional_name(name: str, value: Any) -> str | None:
    if value is not None and (not isinstance(value, str) or not value):
        raise ConfigError(name, value, "None or a non-empty string")
    return value


def check_extra(config: Any, owned: Mapping[str, str], what: str) -> dict[str, Any]:
    """The user's extra librdkafka settings: a dict of setting name -> str, int, float or bool,
    none of them a setting the connector owns. librdkafka itself checks names and values when
    the client is made (see :func:`client_refusal`)."""
    if config is None:
        return {}
    if not isinstance(config, Mapping):
        raise ConfigError("config", config, f"a dict of librdkafka {what} settings or None")
    out: dict[str, Any] = {}
    for key, value in config.items():
        if not isinstance(key, str) or not key:
            raise ConfigError("config", config, "setting names that are non-empty strings")
        if key in owned:
            raise ConfigError(f"config[{key!r}]", value, f"not set through config: {owned[key]}")
        if not isinstance(value, (str, int, float)):  # bool is an int
            raise ConfigError(f"config[{key!r}]", value, "a str, int, float or bool")
        out[key] = value
    return out


def source_settings(
    servers: str, group_id: str, extra: Mapping[str, Any]
) -> dict[str, Any]:
    settings: dict[str, Any] = {
        # Defaults a user may change through config.
        "isolation.level": "read_committed",
        "auto.offset.reset": "earliest",
        "fetch.wait.max.ms": 100,
    }
    settings.update(extra)
    settings.update({
        "bootstrap.servers": servers,
        "group.id": group_id,
        "enable.auto.commit": False,
        "enable.auto.offset.store": False,
        "enable.partition.eof": True,
    })
    return settings


def sink_settings(
    servers: str, extra: Mapping[str, Any], transactional_id: str | None
) -> dict[str, Any]:
    settings: dict[str, Any] = {
        "acks": "all",
        "enable.idempotence": True,
        "linger.ms": 5,
        # Only failed deliveries call back into Python.
        "delivery.report.only.error": True,
        # Keys land on the partitions the Java client would choose for them.
        "partitioner": "murmur2_random",
    }
    settings.update(extra)
    settings["bootstrap.servers"] = servers
    if transactional_id is not None:
        settings.update({"transactional.id": transactional_id, "enable.idempotence": True,
                         "acks": "all"})
    return settings


def source_owned() -> Mapping[str, str]:
    return _SOURCE_OWNED


def sink_owned(exactly_once: bool) -> Mapping[str, str]:
    return {**_SINK_OWNED, **_SINK_EXACTLY_ONCE_OWNED} if exactly_once else _SINK_OWNED


def client_refusal(exc: BaseException, extra: Mapping[str, Any]) -> ConfigError | None:
    """librdkafka's refusal of a setting (an unknown name or a bad value) as a ConfigError that
    names it (or shows the user's ``config`` when librdkafka names it by an alias), or None when
    ``exc`` is not such a refusal."""
    settings = extra
    err: Any = exc.args[0] if exc.args else exc
    text = err.str() if callable(getattr(err, "str", None)) else str(err)
    for marker in ("No such configuration property:", "Invalid value", "Configuration property"):
        if marker in text:
            name = next((k for k in settings if f'"{k}"' in text), None)
            variable = f"config[{name!r}]" if name else "config"
            value = settings.get(name) if name else dict(settings)
            return ConfigError(variable, value, f"a setting librdkafka accepts ({text.strip()})")
    return None
