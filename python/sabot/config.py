"""The one configuration object (DESIGN §5).

Values come from explicit arguments, then the environment, then defaults; every value is
validated once, here, and the frozen :class:`Config` is passed down. Nothing else in Sabot reads
``os.environ`` for its settings.
"""

from __future__ import annotations

import dataclasses
import logging
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Mapping

from .errors import ConfigError
from .system import usable_cores

MODES = ("auto", "single-node", "coordinator", "worker")
JOURNAL_SYNC = ("normal", "full")
LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL")


def _int(var: str, raw: str, lo: int | None = None, hi: int | None = None) -> int:
    rng = _range_text(lo, hi)
    try:
        value = int(str(raw).strip())
    except (TypeError, ValueError):
        raise ConfigError(var, raw, f"an integer{rng}") from None
    if (lo is not None and value < lo) or (hi is not None and value > hi):
        raise ConfigError(var, raw, f"an integer{rng}")
    return value


def _float(var: str, raw: str, lo: float, hi: float | None, lo_open: bool = False) -> float:
    desc = f"a number {'>' if lo_open else '>='} {lo:g}" + (f" and <= {hi:g}" if hi is not None else "")
    try:
        value = float(str(raw).strip())
    except (TypeError, ValueError):
        raise ConfigError(var, raw, desc) from None
    if value != value or (value <= lo if lo_open else value < lo) or (hi is not None and value > hi):
        raise ConfigError(var, raw, desc)
    return value


def _range_text(lo: int | None, hi: int | None) -> str:
    if lo is not None and hi is not None:
        return f" from {lo} to {hi}"
    if lo is not None:
        return f" >= {lo}"
    return ""


def _choice(var: str, raw: str, choices: tuple[str, ...], normalize: Callable[[str], str]) -> str:
    value = normalize(str(raw).strip())
    if value not in choices:
        raise ConfigError(var, raw, "one of " + ", ".join(choices))
    return value


def _bool(var: str, raw: str) -> bool:
    value = str(raw).strip().lower()
    if value in ("1", "true", "yes", "on"):
        return True
    if value in ("0", "false", "no", "off", ""):
        return False
    raise ConfigError(var, raw, "1/0, true/false, yes/no or on/off")


def _host(var: str, raw: str) -> str:
    value = str(raw).strip()
    if not value or any(c.isspace() for c in value) or "/" in value:
        raise ConfigError(var, raw, "a host name or IP address")
    return value


def _name(var: str, raw: str) -> str:
    value = str(raw).strip()
    if not value or len(value) > 128 or not all(c.isalnum() or c in "-_." for c in value):
        raise ConfigError(var, raw, "1-128 characters of letters, digits, '-', '_' or '.'")
    return value


def _node_name(var: str, raw: str) -> str:
    # A node name is a Prometheus label value, a log word and part of URLs on the status page:
    # it starts with a letter or digit and holds no spaces.
    value = str(raw).strip()
    if (not value or len(value) > 63 or not value[0].isalnum()
            or not all(c.isascii() and (c.isalnum() or c in "-_.") for c in value)):
        raise ConfigError(var, raw, "1-63 ASCII letters, digits, '-', '_' or '.', starting with "
                          "a letter or digit (unset: a name made from the host name)")
    return value


def _max_workers(var: str, raw: str) -> int:
    value = str(raw).strip().lower()
    if value in ("auto", "0", ""):
        return 0
    return _int(var, raw, 1, 4096)


def _worker_slots(var: str, raw: str) -> int:
    value = str(raw).strip().lower()
    if value in ("auto", "0", ""):
        return 0
    try:
        return _int(var, raw, 1, 65536)
    except ConfigError:
        raise ConfigError(var, raw, "auto, or an integer from 1 to 65536") from None


def _modules(var: str, raw: str) -> tuple[str, ...]:
    mods = tuple(m.strip() for m in str(raw).split(",") if m.strip())
    for m in mods:
        if not all(part.isidentifier() for part in m.split(".")):
            raise ConfigError(var, raw, "comma-separated importable module names (pkg.module,...)")
    return mods


def _secret(var: str, raw: str) -> str:
    value = str(raw).strip()
    if not value:
        raise ConfigError(var, "<empty>", "a non-empty value")
    return value


def _token_from_file(token: str | None, path: Path) -> str:
    # The token read once, here: a file keeps it out of the process's environment
    # (/proc/<pid>/environ, `kubectl describe`), e.g. a mounted Kubernetes Secret.
    if token is not None:
        raise ConfigError("SABOT_AUTH_TOKEN_FILE", str(path),
                          "either SABOT_AUTH_TOKEN or SABOT_AUTH_TOKEN_FILE, not both")
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError("SABOT_AUTH_TOKEN_FILE", str(path),
                          f"a readable file holding the token ({exc.__class__.__name__})") from None
    value = text.strip()
    if not value or "\n" in value:
        raise ConfigError("SABOT_AUTH_TOKEN_FILE", str(path),
                          "a file holding the token on one line (it is empty or has several)")
    return value


def _path(var: str, raw: str) -> Path:
    value = str(raw).strip()
    if not value:
        raise ConfigError(var, raw, "a file system path")
    return Path(value).expanduser()


@dataclass(frozen=True)
class _Var:
    env: str
    default: Any
    parse: Callable[[str, str], Any]


# field name -> (environment variable, default (raw, before parsing), parser)
_VARS: dict[str, _Var] = {
    "mode": _Var("SABOT_MODE", "auto", lambda v, r: _choice(v, r, MODES, str.lower)),
    "host": _Var("SABOT_HOST", "0.0.0.0", _host),
    "port": _Var("SABOT_PORT", "8080", lambda v, r: _int(v, r, 0, 65535)),
    "zmq_port": _Var("SABOT_ZMQ_PORT", None, lambda v, r: _int(v, r, 0, 65535)),
    "data_port": _Var("SABOT_DATA_PORT", None, lambda v, r: _int(v, r, 0, 65535)),
    "coordinator_host": _Var("COORDINATOR_HOST", "localhost", _host),
    "coordinator_port": _Var("COORDINATOR_PORT", "8080", lambda v, r: _int(v, r, 1, 65535)),
    "worker_port": _Var("SABOT_WORKER_PORT", "0", lambda v, r: _int(v, r, 0, 65535)),
    "advertise_host": _Var("SABOT_ADVERTISE_HOST", None, _host),
    "cluster_name": _Var("CLUSTER_NAME", "sabot-cluster", _name),
    "node_name": _Var("SABOT_NODE_NAME", None, _node_name),
    "max_workers": _Var("MAX_WORKERS", "auto", _max_workers),
    "morsel_size_kb": _Var("MORSEL_SIZE_KB", "64", lambda v, r: _int(v, r, 1, 1048576)),
    "target_utilization": _Var(
        "TARGET_UTILIZATION", "0.8", lambda v, r: _float(v, r, 0.0, 1.0, lo_open=True)
    ),
    "log_level": _Var("LOG_LEVEL", "INFO", lambda v, r: _choice(v, r, LOG_LEVELS, str.upper)),
    "data_dir": _Var("SABOT_DATA_DIR", "~/.sabot/data", _path),
    "journal_sync": _Var(
        "SABOT_JOURNAL_SYNC", "normal", lambda v, r: _choice(v, r, JOURNAL_SYNC, str.lower)
    ),
    "cluster_key": _Var("SABOT_CLUSTER_KEY", None, _secret),
    "cluster_key_file": _Var("SABOT_CLUSTER_KEY_FILE", "~/.sabot/cluster.key", _path),
    "auth_token": _Var("SABOT_AUTH_TOKEN", None, _secret),
    "auth_token_file": _Var("SABOT_AUTH_TOKEN_FILE", None, _path),
    "heartbeat_s": _Var("SABOT_HEARTBEAT_S", "1", lambda v, r: _float(v, r, 0.0, 3600, lo_open=True)),
    "node_timeout_s": _Var(
        "SABOT_NODE_TIMEOUT_S", "5", lambda v, r: _float(v, r, 0.0, 86400, lo_open=True)
    ),
    "max_attempts": _Var("SABOT_MAX_ATTEMPTS", "3", lambda v, r: _int(v, r, 1, 1000)),
    "morsel_timeout_s": _Var("SABOT_MORSEL_TIMEOUT_S", "0", lambda v, r: _float(v, r, 0.0, None)),
    "morsel_target_s": _Var(
        "SABOT_MORSEL_TARGET_S", "0.5", lambda v, r: _float(v, r, 0.0, 3600)
    ),
    "spool": _Var("SABOT_SPOOL", "1", _bool),
    "spool_orphan_s": _Var(
        "SABOT_SPOOL_ORPHAN_S", "3600", lambda v, r: _float(v, r, 0.0, 30 * 86400, lo_open=True)
    ),
    "worker_slots": _Var("SABOT_WORKER_SLOTS", "auto", _worker_slots),
    "result_ttl_s": _Var("SABOT_RESULT_TTL_S", "86400", lambda v, r: _float(v, r, 0.0, None)),
    "result_memory_mb": _Var(
        "SABOT_RESULT_MEMORY_MB", "256", lambda v, r: _float(v, r, 0.0, 1e9)
    ),
    "result_retention_mb": _Var(
        "SABOT_RESULT_RETENTION_MB", "4096", lambda v, r: _float(v, r, 0.0, 1e9)
    ),
    "max_request_mb": _Var(
        "SABOT_MAX_REQUEST_MB", "64", lambda v, r: _float(v, r, 0.0, 65536, lo_open=True)
    ),
    "processors": _Var("SABOT_PROCESSORS", "", _modules),
    "disable_native": _Var("SABOT_DISABLE_NATIVE", "0", _bool),
}

ENVIRONMENT_VARIABLES: dict[str, str] = {name: var.env for name, var in _VARS.items()}


@dataclass(frozen=True)
class Config:
    """Validated settings of one Sabot process. Build it with :func:`load_config`."""

    mode: str = "auto"
    host: str = "0.0.0.0"
    port: int = 8080
    zmq_port: int | None = None
    #: The coordinator's data port: spool files for peers that do not share its data dir.
    data_port: int | None = None
    coordinator_host: str = "localhost"
    coordinator_port: int = 8080
    worker_port: int = 0
    advertise_host: str | None = None
    cluster_name: str = "sabot-cluster"
    node_name: str | None = None
    max_workers: int = 0
    morsel_size_kb: int = 64
    target_utilization: float = 0.8
    log_level: str = "INFO"
    data_dir: Path = Path("~/.sabot/data").expanduser()
    journal_sync: str = "normal"
    cluster_key: str | None = field(default=None, repr=False)
    cluster_key_file: Path = Path("~/.sabot/cluster.key").expanduser()
    auth_token: str | None = field(default=None, repr=False)
    #: Where the token was read from (SABOT_AUTH_TOKEN_FILE), when it came from a file.
    auth_token_file: Path | None = None
    heartbeat_s: float = 1.0
    node_timeout_s: float = 5.0
    max_attempts: int = 3
    morsel_timeout_s: float = 0.0
    #: Seconds of work a cluster morsel's piece aims at, by the job's measured cost per item
    #: (0: morsels run whole, sized by bytes only).
    morsel_target_s: float = 0.5
    #: Peers on the coordinator's host pass bulk data as files in its data dir (the spool,
    #: sabot.cluster.spool) instead of over ZeroMQ.
    spool: bool = True
    #: A spool directory no job claims goes once it is this old (seconds).
    spool_orphan_s: float = 3600.0
    #: Morsels a worker holds at once (credit flow control); 0 = auto, see effective_worker_slots.
    worker_slots: int = 0
    result_ttl_s: float = 86400.0
    #: Results the coordinator holds in memory (MB); past it they are read from disk.
    result_memory_mb: float = 256.0
    #: Disk the finished jobs' results may take (MB; 0: no limit, the TTL alone).
    result_retention_mb: float = 4096.0
    max_request_mb: float = 64.0
    processors: tuple[str, ...] = ()
    disable_native: bool = False
    #: True when COORDINATOR_HOST was given explicitly (environment or argument).
    coordinator_host_set: bool = False

    # -- derived values -------------------------------------------------------------------
    @property
    def resolved_mode(self) -> str:
        """The mode this node runs in: SABOT_MODE, or for ``auto`` the detected one."""
        return self.mode_and_reason[0]

    @property
    def mode_and_reason(self) -> tuple[str, str]:
        if self.mode != "auto":
            return self.mode, f"SABOT_MODE={self.mode}"
        if self.coordinator_host_set:
            return "worker", "SABOT_MODE=auto and COORDINATOR_HOST is set"
        return "single-node", "SABOT_MODE=auto and no COORDINATOR_HOST is set"

    @property
    def effective_zmq_port(self) -> int:
        """The coordinator's ZeroMQ port: SABOT_ZMQ_PORT, else SABOT_PORT + 1 (0 stays ephemeral)."""
        if self.zmq_port is not None:
            return self.zmq_port
        return self.port + 1 if self.port else 0

    @property
    def effective_data_port(self) -> int:
        """The coordinator's data port: SABOT_DATA_PORT, else the ZeroMQ port + 1 (0 stays
        ephemeral)."""
        if self.data_port is not None:
            return self.data_port
        zmq_port = self.effective_zmq_port
        return zmq_port + 1 if zmq_port and zmq_port < 65535 else 0

    @property
    def effective_max_workers(self) -> int:
        """MAX_WORKERS, or the usable cores (affinity and cgroup quota) when it is auto."""
        return self.max_workers or usable_cores()

    @property
    def effective_worker_slots(self) -> int:
        """SABOT_WORKER_SLOTS, or for auto two per core (one running, one ready) plus two in
        transit, so neither the cores nor the link idle between morsels."""
        return self.worker_slots or 2 * self.effective_max_workers + 2

    @property
    def result_memory_bytes(self) -> int:
        return int(self.result_memory_mb * (1 << 20))

    @property
    def result_retention_bytes(self) -> int:
        return int(self.result_retention_mb * (1 << 20))

    @property
    def morsel_size_bytes(self) -> int:
        return self.morsel_size_kb * 1024

    @property
    def log_level_number(self) -> int:
        return getattr(logging, self.log_level)

    def replace(self, **changes: Any) -> "Config":
        """A copy with some fields changed; the changed values are validated like arguments."""
        return load_config(env=self.as_env(), **changes)

    def as_env(self) -> dict[str, str]:
        """This configuration as environment variables (for child processes)."""
        env: dict[str, str] = {}
        for name, var in _VARS.items():
            value = getattr(self, name)
            if value is None:
                continue
            if name == "coordinator_host" and not self.coordinator_host_set:
                continue
            if isinstance(value, bool):
                env[var.env] = "1" if value else "0"
            elif isinstance(value, tuple):
                env[var.env] = ",".join(value)
            elif name in ("max_workers", "worker_slots") and value == 0:
                env[var.env] = "auto"
            else:
                env[var.env] = str(value)
        return env

    def public_dict(self) -> dict[str, Any]:
        """Settings safe to show (stats, logs): secrets are replaced by whether they are set."""
        out: dict[str, Any] = {}
        for f in dataclasses.fields(self):
            value = getattr(self, f.name)
            if f.name in ("cluster_key", "auth_token"):
                out[f.name + "_set"] = value is not None
                continue
            out[f.name] = str(value) if isinstance(value, Path) else value
        out["resolved_mode"] = self.resolved_mode
        return out


def load_config(env: Mapping[str, str] | None = None, **overrides: Any) -> Config:
    """Read and validate the configuration.

    ``overrides`` are field names of :class:`Config` (``port=9000``, ``mode="worker"``); a value
    of ``None`` means "not given". They win over ``env`` (default ``os.environ``), which wins over
    the defaults. Raises :class:`~sabot.errors.ConfigError` naming the variable, the bad value and
    what is accepted.
    """
    if env is None:
        env = os.environ
    unknown = set(overrides) - set(_VARS) - {"coordinator_host_set"}
    if unknown:
        raise TypeError(
            f"unknown configuration argument(s) {sorted(unknown)}; accepted: {sorted(_VARS)}"
        )
    values: dict[str, Any] = {}
    for name, var in _VARS.items():
        given = overrides.get(name)
        if given is not None:
            if isinstance(given, (tuple, list)) and name == "processors":
                given = ",".join(given)
            if isinstance(given, bool):
                given = "1" if given else "0"
            raw: Any = given
        elif var.env in env:
            raw = env[var.env]
        else:
            raw = var.default
        values[name] = None if raw is None else var.parse(var.env, raw)
    if values["auth_token_file"] is not None:
        values["auth_token"] = _token_from_file(values["auth_token"], values["auth_token_file"])
    values["coordinator_host_set"] = bool(
        overrides.get("coordinator_host_set")
        or overrides.get("coordinator_host") is not None
        or "COORDINATOR_HOST" in env
    )
    return Config(**values)


__all__ = ["Config", "load_config", "ENVIRONMENT_VARIABLES", "MODES"]
