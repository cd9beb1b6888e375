"""One engine running one Nexmark query, in a process of its own: ``python -m bench.nexmark_child
SPEC_JSON`` prints one JSON line with the measurement.

The spec names the engine module (``bench.nexmark_<engine>``), the query, the event files (a
small warm-up set and the measured set), the parallelism and the checkpoint interval. The child
opens the engine (untimed: starting a JVM, a broker client), runs the query once over the warm-up
files (untimed), then once over the measured files (timed), then turns the output into the
canonical answer (untimed). Measured beside the wall time: the CPU seconds the process and its
descendants (a JVM) used in the timed region, and their peak resident memory (sampled every
20 ms, and the child's own ``ru_maxrss``).

This module imports neither Sabot nor pyarrow itself: peers whose pins clash with Sabot's
(pyarrow, confluent-kafka) run it from their own virtual environment.
"""

from __future__ import annotations

import importlib
import json
import os
import resource
import sys
import threading
import time
import traceback
from pathlib import Path
from typing import Any

try:
    import psutil
except ImportError:  # pragma: no cover - psutil is a Sabot dependency and in every peer venv
    psutil = None


def _tree() -> list[Any]:
    me = psutil.Process()
    try:
        return [me] + me.children(recursive=True)
    except psutil.Error:
        return [me]


def cpu_seconds() -> float:
    """CPU seconds (user + system) of this process and its descendants so far."""
    total = 0.0
    for p in _tree():
        try:
            t = p.cpu_times()
            total += t.user + t.system
        except psutil.Error:
            pass
    return total


class PeakRss:
    """The largest resident memory of this process and its descendants, sampled."""

    def __init__(self, every_s: float = 0.02) -> None:
        self.peak = 0
        self._every = every_s
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, daemon=True)

    def _loop(self) -> None:
        while not self._stop.is_set():
            total = 0
            for p in _tree():
                try:
                    total += p.memory_info().rss
                except psutil.Error:
                    pass
            self.peak = max(self.peak, total)
            self._stop.wait(self._every)

    def __enter__(self) -> PeakRss:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()


def measure(spec: dict[str, Any]) -> dict[str, Any]:
    from . import nexmark_data as nd

    engine = importlib.import_module(f"bench.nexmark_{spec['engine']}")
    query = spec["query"]
    work = Path(spec["workdir"])
    runner = engine.start(parallelism=spec["parallelism"], checkpoint_s=spec.get("checkpoint_s"),
                         workdir=work, **spec.get("options", {}))
    try:
        warm = {k: Path(v) for k, v in spec["warmup_files"].items()}
        files = {k: Path(v) for k, v in spec["files"].items()}
        out = runner.run(query, warm)
        if callable(out):
            out = out()
        del out
        cpu0 = cpu_seconds()
        with PeakRss() as rss:
            t0 = time.perf_counter()
            out = runner.run(query, files)
            seconds = time.perf_counter() - t0
            cpu = cpu_seconds() - cpu0
        if callable(out):  # output kept in files by the engine: read back outside the timing
            out = out()
        answer = nd.answer(query, out)
        info = dict(getattr(runner, "info", {}) or {})
        # an engine that measures its own job (Flink's net runtime) reports that figure
        seconds = info.get("net_runtime_s") or seconds
        cpu = info.get("net_cpu_s") or cpu
    finally:
        runner.close()
    own = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    return {"seconds": seconds, "cpu_seconds": cpu, "peak_rss_bytes": max(rss.peak, own),
            "answer": answer, "info": info, "version": getattr(engine, "version", lambda: "")()}


def main() -> int:
    spec = json.loads(sys.argv[1])
    try:
        result = {"ok": True, **measure(spec)}
    except BaseException as exc:  # noqa: BLE001 - the parent reports it as this run's error
        tb = traceback.format_exc()
        text = f"{exc.__class__.__name__}: {exc}"
        result = {"ok": False, "error": text[:600], "traceback": tb[-3000:]}
    sys.stdout.flush()
    print("\n@@nexmark-result " + json.dumps(result, default=str), flush=True)
    return 0


if __name__ == "__main__":
    os.environ.setdefault("PYTHONHASHSEED", "0")
    sys.exit(main())
