"""Each single-node example runs as a user would run it, as a subprocess, and says what it did."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]

EXAMPLES = {
    "basic_processing.py": ["Processed 1000 items"],
    "single_node.py": ["mode: single-node", "processed 2,000 items twice"],
    "simple_dbos_demo.py": ["cheap per-item (square)", "why:", "streamed 10,000 results",
                            '"errors": 0'],
}


@pytest.mark.parametrize("name", sorted(EXAMPLES))
def test_example_runs(name, tmp_path):
    env = {k: v for k, v in os.environ.items() if not k.startswith(("SABOT_", "COORDINATOR_"))}
    env["PYTHONPATH"] = os.pathsep.join([str(REPO / "python"), env.get("PYTHONPATH", "")])
    proc = subprocess.run([sys.executable, str(REPO / "examples" / name), "--quick"], check=False,
                          capture_output=True, text=True, timeout=240, cwd=tmp_path, env=env)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    for needle in EXAMPLES[name]:
        assert needle in proc.stdout, proc.stdout
