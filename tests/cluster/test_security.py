"""The cluster secret: formats, the 0600 key file, deterministic CURVE keys."""

from __future__ import annotations

import binascii
import os
import stat

import pytest
from sabot.cluster.security import ClusterKeys, generate_secret, load_secret, parse_secret
from sabot.config import load_config
from sabot.errors import ConfigError


def test_generated_secrets_parse_as_z85_and_hex():
    text = generate_secret()
    assert len(text) == 40
    raw = parse_secret(text, "X")
    assert len(raw) == 32
    assert parse_secret(binascii.hexlify(raw).decode(), "X") == raw
    assert generate_secret() != text


@pytest.mark.parametrize("bad", ["short", "z" * 41, "g" * 64, " "])
def test_bad_secrets_are_refused_without_echoing_them(bad):
    with pytest.raises(ConfigError) as err:
        parse_secret(bad, "SABOT_CLUSTER_KEY")
    assert "SABOT_CLUSTER_KEY" in str(err.value) and "Z85" in str(err.value)
    if bad.strip():
        assert bad not in str(err.value)


def test_key_file_is_created_0600_once_and_reused(tmp_path):
    path = tmp_path / "sub" / "cluster.key"
    cfg = load_config(env={"SABOT_CLUSTER_KEY_FILE": str(path)})
    first = load_secret(cfg)
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
    assert load_secret(cfg) == first


def test_env_secret_wins_and_keys_are_deterministic(tmp_path):
    secret = generate_secret()
    cfg = load_config(env={"SABOT_CLUSTER_KEY": secret,
                           "SABOT_CLUSTER_KEY_FILE": str(tmp_path / "unused")})
    a, b = ClusterKeys.from_config(cfg), ClusterKeys.from_config(cfg)
    assert a == b and not (tmp_path / "unused").exists()
    other = ClusterKeys.from_secret(parse_secret(generate_secret(), "X"))
    assert other.server_public != a.server_public and other.client_public != a.client_public
    assert a.server_public != a.client_public
    assert secret not in repr(a) and a.server_secret.decode() not in repr(a)
