"""docs/streaming.md's examples run as written (each python block on its own)."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

DOC = Path(__file__).resolve().parents[2] / "docs" / "streaming.md"
BLOCKS = re.findall(r"```python\n(.*?)```", DOC.read_text(), re.DOTALL)


def test_the_doc_has_an_example_per_operator():
    text = "\n".join(BLOCKS)
    for name in ("filter(", "select(", ".map(", "flat_map(", "union(", "key_by(", "tumbling(",
                 "sliding(", "session(", "st.count(10)", "allowed_lateness", ".late()", "emit(",
                 "process(", "interval_join(", "window_join(", "lookup_join(", "from_files(",
                 "dead_letters()", "to_files(", "to_callable(", "nexmark("):
        assert name in text, name


@pytest.mark.parametrize("code", BLOCKS, ids=[f"block{i}" for i in range(len(BLOCKS))])
def test_example_runs(code):
    exec(compile(code, str(DOC), "exec"), {"__name__": "__doc_example__"})
