"""Schemathesis over the node's own /openapi.json: generated requests, valid and invalid, to
every documented operation of a real HTTP API and engine. No request may get a 5xx, and the node
must still serve (health, and a real job with the right result) afterwards.

The default run sends a bounded number of cases; ``-m slow`` sends thousands.
"""

from __future__ import annotations

import collections
import json
from pathlib import Path
from typing import Any, Iterator

import pytest
import requests
import schemathesis
from hypothesis import HealthCheck, given, settings
from schemathesis import GenerationMode

import sabot_test_nodes as nodes

TOKEN = "fuzz-token-3f9a1c"


@pytest.fixture(scope="module")
def fuzz_node(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    node = nodes.InProcessNode(tmp_path_factory.mktemp("fuzz") / "node")
    yield node
    node.stop()


@pytest.fixture(scope="module")
def fuzz_node_with_token(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    node = nodes.InProcessNode(tmp_path_factory.mktemp("fuzz-auth") / "node", auth_token=TOKEN)
    yield node
    node.stop()


def fuzz(node: Any, mode: GenerationMode, examples: int, headers: dict[str, str] | None = None
         ) -> collections.Counter[int]:
    """Send ``examples`` generated cases; fail on the first 5xx or dropped connection."""
    schema = schemathesis.openapi.from_url(node.url + "/openapi.json", timeout=30)
    strategy = schema.as_strategy(generation_mode=mode)
    statuses: collections.Counter[int] = collections.Counter()
    with requests.Session() as session:

        @settings(max_examples=examples, deadline=None, database=None, derandomize=True,
                  suppress_health_check=list(HealthCheck))
        @given(case=strategy)
        def one(case: Any) -> None:
            if headers:
                case.headers = {**(case.headers or {}), **headers}
            resp = case.call(base_url=node.url, session=session, timeout=30)
            statuses[resp.status_code] += 1
            assert resp.status_code < 500, (
                f"{case.method} {case.formatted_path} -> {resp.status_code}: {resp.text[:500]}\n"
                f"reproduce: {case.as_curl_command()}")

        one()
    return statuses


def assert_still_serving(node: Any) -> None:
    assert node.alive(), "the node stopped answering /health after the fuzz run"
    job_id = node.submit(list(range(100)), "square")
    job = node.wait_job(job_id, timeout=60)
    assert job["status"] == "completed", job
    assert job["result"] == [i * i for i in range(100)]


@pytest.mark.parametrize("mode", [GenerationMode.POSITIVE, GenerationMode.NEGATIVE],
                         ids=["valid", "invalid"])
def test_schemathesis_no_server_errors(fuzz_node: Any, mode: GenerationMode) -> None:
    statuses = fuzz(fuzz_node, mode, 150)
    # The run exercised the API, not only one status.
    assert sum(statuses.values()) >= 100
    assert_still_serving(fuzz_node)


def test_schemathesis_with_token_no_server_errors(fuzz_node_with_token: Any) -> None:
    """With SABOT_AUTH_TOKEN set, generated requests without a token are refused, never 5xx."""
    statuses = fuzz(fuzz_node_with_token, GenerationMode.NEGATIVE, 100)
    assert statuses[401] > 0, statuses
    statuses = fuzz(fuzz_node_with_token, GenerationMode.POSITIVE, 60,
                    headers={"Authorization": f"Bearer {TOKEN}"})
    assert sum(statuses[s] for s in statuses if s != 401) > 0, statuses
    assert_still_serving(fuzz_node_with_token)


@pytest.mark.slow
@pytest.mark.parametrize("mode", [GenerationMode.POSITIVE, GenerationMode.NEGATIVE],
                         ids=["valid", "invalid"])
def test_schemathesis_thousands_of_cases(fuzz_node: Any, mode: GenerationMode,
                                         tmp_path: Path) -> None:
    statuses = fuzz(fuzz_node, mode, 3000)
    assert sum(statuses.values()) >= 2000
    assert_still_serving(fuzz_node)
    (tmp_path / "statuses.json").write_text(json.dumps(statuses))
