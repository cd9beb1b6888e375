"""Running a pipeline script as a child process that a test may kill with SIGKILL."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path


def run(script: Path, args: list[str], env: dict[str, str] | None = None,
        kill_after: float | None = None, timeout: float = 300) -> int:
    """Run ``script`` with ``args``: its exit code, or -9 when it was killed — by itself at a
    crash point (``SABOT_STREAM_CRASH`` in ``env``) or by this after ``kill_after`` seconds.
    Any other failure raises with the end of its output."""
    proc = subprocess.Popen([sys.executable, str(script), *args], env={**os.environ, **(env or {})},
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    try:
        out, _ = proc.communicate(timeout=kill_after if kill_after is not None else timeout)
    except subprocess.TimeoutExpired:
        proc.send_signal(signal.SIGKILL)
        proc.communicate()
        return -9
    if proc.returncode not in (0, -9):
        raise AssertionError(f"{script.name} failed ({proc.returncode}): {out.decode()[-3000:]}")
    return proc.returncode
