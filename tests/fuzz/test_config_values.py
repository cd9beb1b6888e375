"""Wrong configuration values: every variable of the configuration table (DESIGN §5) is refused
with a ConfigError naming the variable, the value and what is accepted — by ``load_config`` and by
the daemon, which exits non-zero with one clear line instead of a traceback.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

import sabot_test_nodes as nodes
from sabot.config import ENVIRONMENT_VARIABLES, load_config
from sabot.errors import ConfigError

#: Per variable, values that must be refused. Every variable of the table has an entry (checked
#: below), so a variable added without a test here fails the suite.
BAD_VALUES: dict[str, list[str]] = {
    "SABOT_MODE": ["master", "single_node", "1", ""],
    "SABOT_HOST": ["", "a b", "http://x/", "host/path"],
    "SABOT_PORT": ["-1", "65536", "80a", "8080.5", "", "0x50"],
    "SABOT_ZMQ_PORT": ["-1", "70000", "zmq", ""],
    "SABOT_DATA_PORT": ["-1", "70000", "data", ""],
    "COORDINATOR_HOST": ["", "two words", "tcp://host/"],
    "COORDINATOR_PORT": ["0", "65536", "port", "-8080"],
    "SABOT_WORKER_PORT": ["-1", "99999", "auto"],
    "SABOT_ADVERTISE_HOST": ["", "a b", "pod/ip"],
    "CLUSTER_NAME": ["", "a b", "a/b", "x" * 129, "caf\u00e9;rm"],
    "SABOT_NODE_NAME": ["", "two words", "-lead", "w/1", "x" * 64, "caf\u00e9"],
    "MAX_WORKERS": ["-1", "many", "1.5", "5000"],
    "SABOT_WORKER_SLOTS": ["-1", "many", "1.5", "70000"],
    "MORSEL_SIZE_KB": ["0", "-64", "64k", "2000000"],
    "TARGET_UTILIZATION": ["0", "-0.5", "1.01", "nan", "80%", "inf"],
    "LOG_LEVEL": ["LOUD", "verbose", "10", ""],
    "SABOT_DATA_DIR": ["", "   "],
    "SABOT_JOURNAL_SYNC": ["off", "extra", "0"],
    "SABOT_CLUSTER_KEY": ["", "  "],
    "SABOT_CLUSTER_KEY_FILE": ["", " "],
    "SABOT_AUTH_TOKEN": ["", "   "],
    "SABOT_AUTH_TOKEN_FILE": ["", " ", "/nonexistent/sabot-token"],
    "SABOT_HEARTBEAT_S": ["0", "-1", "nan", "inf", "1s", "3601"],
    "SABOT_NODE_TIMEOUT_S": ["0", "-5", "nan", "5m"],
    "SABOT_MAX_ATTEMPTS": ["0", "-1", "three", "1001", "2.5"],
    "SABOT_MORSEL_TIMEOUT_S": ["-1", "nan", "10s"],
    "SABOT_MORSEL_TARGET_S": ["-0.5", "nan", "1s", "3601"],
    "SABOT_SPOOL": ["maybe", "2", "on-ish"],
    "SABOT_SPOOL_ORPHAN_S": ["0", "-1", "nan", "1h", "1e9"],
    "SABOT_RESULT_TTL_S": ["-1", "nan", "1d"],
    "SABOT_RESULT_MEMORY_MB": ["-1", "nan", "256MB", "inf", "2e9"],
    "SABOT_RESULT_RETENTION_MB": ["-5", "nan", "4GB", "inf"],
    "SABOT_MAX_REQUEST_MB": ["0", "-1", "nan", "64MB", "70000"],
    "SABOT_PROCESSORS": ["my-module", "a..b", "1abc", "pkg.mod,bad name"],
    "SABOT_DISABLE_NATIVE": ["maybe", "2", "enable"],
}


def test_every_variable_has_bad_values() -> None:
    assert set(BAD_VALUES) == set(ENVIRONMENT_VARIABLES.values())


@pytest.mark.parametrize("variable, value", [
    (var, value) for var, values in BAD_VALUES.items() for value in values])
def test_load_config_refuses(variable: str, value: str) -> None:
    with pytest.raises(ConfigError) as err:
        load_config(env={variable: value})
    assert err.value.variable == variable
    assert err.value.accepted  # says what is accepted
    message = str(err.value)
    assert message.startswith(variable) and "expected" in message
    if variable not in ("SABOT_CLUSTER_KEY", "SABOT_AUTH_TOKEN") and value.strip():
        assert repr(value) in message or value in message


def test_load_config_refuses_bad_arguments_like_variables() -> None:
    """Explicit arguments (CLI flags) are checked like the environment."""
    with pytest.raises(ConfigError) as err:
        load_config(env={}, port=70000)
    assert err.value.variable == "SABOT_PORT"
    with pytest.raises(ConfigError):
        load_config(env={}, mode="leader")


def run_daemon(env: dict[str, str], tmp_path: Path) -> subprocess.Popen[str]:
    base = {"SABOT_HOST": "127.0.0.1", "SABOT_PORT": "0", "SABOT_DATA_DIR": str(tmp_path / "d"),
            "SABOT_CLUSTER_KEY_FILE": str(tmp_path / "cluster.key")}
    base.update(env)
    return subprocess.Popen([sys.executable, "-m", "sabot.composable_launcher"],
                            env=nodes.child_env(base), stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, stdin=subprocess.DEVNULL)


def assert_one_clear_line(proc: subprocess.Popen[str], needles: list[str], hidden: str = ""
                          ) -> None:
    try:
        out, err = proc.communicate(timeout=60)
    except subprocess.TimeoutExpired:
        proc.kill()
        out, err = proc.communicate()
        raise AssertionError(f"the daemon kept running with a bad value: {needles}")
    text = out + err
    assert proc.returncode not in (0, None), text
    assert "Traceback" not in text, text
    lines = [ln for ln in err.splitlines() if ln.strip()]
    assert lines, f"nothing on stderr: {text}"
    line = next((ln for ln in lines if needles[0] in ln), None)
    assert line is not None, text
    for needle in needles:
        assert needle in line, (needle, line)
    if hidden:
        assert hidden not in text


def test_daemon_refuses_each_bad_variable_with_one_line(tmp_path: Path) -> None:
    """One bad value per variable: each daemon exits non-zero naming it. (Started together, so the
    whole table costs one start-up time.)"""
    procs = []
    for i, (variable, values) in enumerate(BAD_VALUES.items()):
        value = next((v for v in values if v.strip()), values[0])  # visible ones can be named
        procs.append((variable, value, run_daemon({variable: value}, tmp_path / str(i))))
    for variable, value, proc in procs:
        needles = [variable]
        if variable not in ("SABOT_CLUSTER_KEY", "SABOT_AUTH_TOKEN") and value.strip():
            needles.append(value)
        assert_one_clear_line(proc, needles)


@pytest.mark.parametrize("mode", ["coordinator", "worker"])
def test_daemon_refuses_a_malformed_cluster_key_without_showing_it(tmp_path: Path,
                                                                   mode: str) -> None:
    secret = "not-a-real-key-but-still-secret-7b3e1f"
    env = {"SABOT_MODE": mode, "SABOT_CLUSTER_KEY": secret,
           "COORDINATOR_HOST": "127.0.0.1", "COORDINATOR_PORT": str(nodes.free_port())}
    assert_one_clear_line(run_daemon(env, tmp_path), ["SABOT_CLUSTER_KEY"], hidden=secret)


def test_daemon_refuses_an_unimportable_processor_module(tmp_path: Path) -> None:
    proc = run_daemon({"SABOT_MODE": "single-node",
                       "SABOT_PROCESSORS": "no_such_sabot_module_xyz"}, tmp_path)
    assert_one_clear_line(proc, ["SABOT_PROCESSORS", "no_such_sabot_module_xyz"])


def test_daemon_refuses_a_data_dir_that_is_a_file(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("not a directory")
    proc = run_daemon({"SABOT_MODE": "coordinator", "SABOT_DATA_DIR": str(blocker),
                       "SABOT_ZMQ_PORT": "0"}, tmp_path)
    assert_one_clear_line(proc, ["SABOT_DATA_DIR"])


def test_daemon_refuses_a_data_port_it_cannot_bind(tmp_path: Path) -> None:
    """An explicit SABOT_DATA_PORT that another process holds: the coordinator does not start
    without the port it was told to open (the default one, taken, is only logged)."""
    import socket

    with socket.socket() as holder:
        holder.bind(("127.0.0.1", 0))
        holder.listen()
        port = holder.getsockname()[1]
        proc = run_daemon({"SABOT_MODE": "coordinator", "SABOT_ZMQ_PORT": "0",
                           "SABOT_DATA_PORT": str(port)}, tmp_path)
        assert_one_clear_line(proc, ["SABOT_DATA_PORT", str(port)])
