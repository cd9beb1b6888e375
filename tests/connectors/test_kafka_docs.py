"""docs/kafka.md's example runs as written, against the test session's broker."""

from __future__ import annotations

import ast
import re
from pathlib import Path

DOC = Path(__file__).resolve().parents[2] / "docs" / "kafka.md"
BLOCKS = re.findall(r"```python\n(.*?)```", DOC.read_text(), re.DOTALL)


def test_the_example_runs(kafka_broker, kafka_topic):
    assert len(BLOCKS) == 1
    code = BLOCKS[0].replace('"127.0.0.1:9092"', repr(kafka_broker.bootstrap_servers))
    code = code.replace('"payments"', repr(kafka_topic(1)))
    exec(compile(code, str(DOC), "exec"), {"__name__": "__doc_example__"})  # noqa: S102


def test_the_doc_names_every_xfail_of_the_kafka_tests():
    """Each known broker gap (a strict xfail in tests/connectors) is listed in the doc's gaps."""
    gaps = DOC.read_text().split("## Tests and the Tansu broker", 1)[1]
    xfails = []
    for path in sorted(DOC.parents[1].joinpath("tests", "connectors").glob("test_*.py")):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.FunctionDef) and any(
                    "xfail" in ast.unparse(d) for d in node.decorator_list):
                xfails.append(node.name)
    assert len(xfails) >= 3
    assert [x for x in xfails if x not in gaps] == []
