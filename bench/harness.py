"""The harness: runs engines in alternation, repeats, checks answers, writes raw rows and the summary.

A benchmark module builds ``Engine`` objects and calls ``run_case``; the suite (``run_suite``)
calls every benchmark module, completes and checks the rows, and writes:

- ``raw.jsonl``: one JSON object per row, with versions, machine and parameters;
- ``summary.md``: medians, min-max and the ratio against Sabot per case;
- ``*.png``: the plots (``bench.report``), when matplotlib is installed.
"""

from __future__ import annotations

import contextlib
import datetime as _dt
import hashlib
import importlib
import importlib.metadata
import importlib.util
import inspect
import json
import math
import os
import platform
import signal
import statistics
import subprocess
import sys
import time
import traceback
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterator, Sequence

from . import BENCHMARKS

REPO_ROOT = Path(__file__).resolve().parent.parent

OK = "ok"
NOT_AVAILABLE = "not available"
ERROR = "error"

# A single timed run longer than this is abandoned (the engine gets an error row, the suite goes on).
DEFAULT_RUN_TIMEOUT_S = 300.0


# --------------------------------------------------------------------------- environment

def usable_cores() -> int:
    """Sabot's own notion of usable cores (affinity and cgroup quota) when Sabot imports."""
    try:
        from sabot.system import usable_cores as _uc

        return int(_uc())
    except Exception:  # Sabot missing: the affinity mask is the next best answer
        try:
            return len(os.sched_getaffinity(0))
        except (AttributeError, OSError):
            return os.cpu_count() or 1


def dist_version(dist: str) -> str | None:
    """The installed version of a distribution, or None when it is not installed."""
    try:
        return importlib.metadata.version(dist)
    except importlib.metadata.PackageNotFoundError:
        return None


def peer_status(module: str, dist: str | None = None) -> tuple[bool, str]:
    """(available, version-or-reason) for a peer, found without importing it."""
    try:
        found = importlib.util.find_spec(module.split(".")[0]) is not None and \
            importlib.util.find_spec(module) is not None
    except (ImportError, ValueError):
        found = False
    if not found:
        return False, f"{dist or module} is not installed (pip install .[bench])"
    return True, dist_version(dist or module.split(".")[0]) or "unknown"


def sabot_status(*names: str) -> tuple[bool, str]:
    """(available, version-or-reason): Sabot imports and exposes every public name asked for."""
    try:
        import sabot
    except Exception as exc:  # broken or missing install
        return False, f"import sabot failed: {exc.__class__.__name__}: {exc}"
    for name in names:
        try:
            getattr(sabot, name)
        except Exception as exc:
            return False, f"sabot.{name} is not available ({exc.__class__.__name__}: {exc})"
    return True, getattr(sabot, "__version__", "unknown")


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def loadavg() -> list[float]:
    try:
        return [round(x, 2) for x in os.getloadavg()]
    except OSError:
        return []


def machine_info() -> dict[str, Any]:
    info: dict[str, Any] = {
        # tells machines apart across runs without naming the host
        "host_id": hashlib.sha256(platform.node().encode()).hexdigest()[:10],
        "platform": platform.platform(),
        "cpu_model": _cpu_model(),
        "cpu_count": os.cpu_count(),
        "usable_cores": usable_cores(),
        "python": platform.python_version(),
    }
    try:
        import psutil

        info["memory_gb"] = round(psutil.virtual_memory().total / 2**30, 1)
    except ImportError:
        pass
    return info


def versions() -> dict[str, str | None]:
    out = {"sabot": dist_version("sabot-engine")}  # Sabot's distribution name (import: sabot)
    for dist in ("numpy", "pyarrow", "psutil", "cloudpickle", "pyzmq", "joblib",
                 "dask", "distributed", "ray", "duckdb", "polars", "matplotlib"):
        out[dist] = dist_version(dist)
    try:
        from sabot import get_stats

        stats = get_stats()
        out["sabot_native"] = str(stats.get("cython_optimization"))
    except Exception:
        out["sabot_native"] = None
    return out


def git_commit() -> str | None:
    try:
        res = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=REPO_ROOT,
                             capture_output=True, text=True, timeout=10)
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"],
                               cwd=REPO_ROOT, capture_output=True, text=True, timeout=10)
        if res.returncode == 0:
            return res.stdout.strip() + ("+dirty" if dirty.stdout.strip() else "")
    except (OSError, subprocess.SubprocessError):
        pass
    return None


# --------------------------------------------------------------------------- timing helpers

class RunTimeout(Exception):
    """A timed run went past its limit."""


@contextlib.contextmanager
def time_limit(seconds: float | None) -> Iterator[None]:
    """Raise RunTimeout in the main thread after ``seconds`` (SIGALRM); a no-op elsewhere."""
    if not seconds or sys.platform == "win32" or \
            not _is_main_thread():
        yield
        return

    def _alarm(signum: int, frame: Any) -> None:
        raise RunTimeout(f"run exceeded {seconds:.0f} s")

    old = signal.signal(signal.SIGALRM, _alarm)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, old)


def _is_main_thread() -> bool:
    import threading

    return threading.current_thread() is threading.main_thread()


def percentile(values: Sequence[float], q: float) -> float:
    """Linear-interpolated percentile (q in [0, 100])."""
    xs = sorted(values)
    if not xs:
        return math.nan
    k = (len(xs) - 1) * q / 100.0
    lo, hi = math.floor(k), math.ceil(k)
    return xs[lo] + (xs[hi] - xs[lo]) * (k - lo)


# --------------------------------------------------------------------------- engines and cases

class Engine:
    """One way of computing a case's answer. Subclasses override ``setup``/``run``/``teardown``.

    ``setup`` and ``teardown`` are outside the timed region (starting a pool or a cluster, as
    users do once); ``run`` is the timed region and returns the engine's raw result.
    """

    name = "engine"

    def __init__(self, name: str | None = None, **params: Any) -> None:
        if name:
            self.name = name
        self.params: dict[str, Any] = dict(params)
        self.ready = False  # set up by ``open_engines`` (shared by several cases)
        self.setup_error: str | None = None

    def availability(self) -> tuple[bool, str]:
        """(available, version-or-reason); checked before setup."""
        return True, ""

    def setup(self) -> None:
        """Start pools or clusters (once; untimed)."""

    def prepare(self) -> None:
        """Per-case preparation after setup, untimed (e.g. choosing a chunksize)."""

    def run(self) -> Any:
        raise NotImplementedError

    def teardown(self) -> None:
        pass

    def describe(self) -> dict[str, Any]:
        """What the engine decided for the last run (e.g. Sabot's executor), for the report."""
        return {}


class FuncEngine(Engine):
    """An engine made of plain callables (``run`` returns the result)."""

    def __init__(self, name: str, run: Callable[[], Any], *,
                 setup: Callable[[], None] | None = None,
                 teardown: Callable[[], None] | None = None,
                 availability: tuple[bool, str] = (True, ""), **params: Any) -> None:
        super().__init__(name, **params)
        self._run, self._setup, self._teardown = run, setup, teardown
        self._availability = availability

    def availability(self) -> tuple[bool, str]:
        return self._availability

    def setup(self) -> None:
        if self._setup:
            self._setup()

    def run(self) -> Any:
        return self._run()

    def teardown(self) -> None:
        if self._teardown:
            self._teardown()


@dataclass
class Case:
    """One measured situation of a benchmark: what to run, how to turn a run into figures."""

    name: str
    engines: list[Engine]
    # amount of work per run: throughput = work / seconds (None: report seconds)
    work: float | None = None
    metric: str = "items/s"
    # result -> JSON-able answer (checksum) compared across engines, computed outside timing
    answer: Callable[[Any], Any] = lambda r: None
    params: dict[str, Any] = field(default_factory=dict)
    timed: str = ""
    run_timeout_s: float = DEFAULT_RUN_TIMEOUT_S


#: Calls in a row per engine in latency cases (see run_latency_case).
LATENCY_BLOCK = 30


def error_text(exc: BaseException) -> str:
    text = f"{exc.__class__.__name__}: {exc}"
    return text if len(text) < 400 else text[:400] + "..."


@contextlib.contextmanager
def open_engines(engines: Sequence[Engine], log: Callable[[str], None] | None = None
                 ) -> Iterator[Sequence[Engine]]:
    """Set up engines once for several cases (``run_case`` then skips their setup/teardown).

    Starting a Ray or Dask cluster takes seconds; users start one and reuse it, so do we.
    """
    log = log or _log
    for engine in engines:
        ok, _ = engine.availability()
        if not ok:
            continue
        try:
            with time_limit(DEFAULT_RUN_TIMEOUT_S):
                engine.setup()
            engine.ready = True
        except BaseException as exc:  # noqa: BLE001
            if isinstance(exc, KeyboardInterrupt):
                raise
            engine.setup_error = f"setup: {error_text(exc)}"
            log(f"  {engine.name}: setup failed: {error_text(exc)}")
            _debug_trace()
            _safe_teardown(engine)
    try:
        yield engines
    finally:
        for engine in engines:
            if engine.ready:
                engine.ready = False
                _safe_teardown(engine)


def run_case(benchmark: str, case: Case, repeats: int, *, warmup: bool = True,
             log: Callable[[str], None] | None = None,
             warmup_calls: int = 1, block: int = 1) -> list[dict[str, Any]]:
    """Run every engine of ``case`` ``repeats`` times, engines alternating within each repeat.

    All engines are set up first (untimed) and torn down at the end, so each repeat measures
    every engine under the same machine conditions; the starting engine rotates between repeats.
    With ``block`` > 1 an engine's turn is that many runs in a row (each recorded).
    """
    log = log or _log
    live: list[Engine] = []
    owned: list[Engine] = []  # set up here, so torn down here
    rows: dict[str, dict[str, Any]] = {}

    def base_row(engine: Engine) -> dict[str, Any]:
        return {
            "benchmark": benchmark, "case": case.name, "engine": engine.name,
            "metric": case.metric if case.work is not None else "seconds",
            "higher_is_better": case.work is not None,
            "params": {**case.params, **engine.params}, "timed": case.timed,
            "samples": [], "seconds": [], "status": OK,
        }

    for engine in case.engines:
        row = base_row(engine)
        rows[engine.name] = row
        ok, info = engine.availability()
        if not ok:
            row.update(status=NOT_AVAILABLE, error=info)
            log(f"  {case.name} / {engine.name}: not available ({info})")
            continue
        row["version"] = info
        if engine.setup_error:
            row.update(status=ERROR, error=engine.setup_error)
            continue
        try:
            with time_limit(case.run_timeout_s):
                if not engine.ready:
                    owned.append(engine)
                    engine.setup()
                engine.prepare()
            row["params"] = {**case.params, **engine.params}  # prepare may calibrate
            live.append(engine)
        except BaseException as exc:  # noqa: BLE001 - a peer failing must not stop the suite
            if isinstance(exc, KeyboardInterrupt):
                raise
            row.update(status=ERROR, error=f"setup: {error_text(exc)}")
            log(f"  {case.name} / {engine.name}: setup failed: {error_text(exc)}")
            _debug_trace()
            if engine in owned:
                owned.remove(engine)
                _safe_teardown(engine)

    try:
        if warmup:
            for _ in range(warmup_calls):
                for engine in list(live):
                    _one_run(engine, case, rows[engine.name], live, log, record=False)
        for rep in range(repeats):
            k = rep % len(live) if live else 0
            for engine in live[k:] + live[:k]:
                for _ in range(block):
                    _one_run(engine, case, rows[engine.name], live, log, record=True)
    finally:
        for engine in owned:
            if engine in live:
                _safe_teardown(engine)

    out = []
    for engine in case.engines:
        row = rows[engine.name]
        row["params"] = {**case.params, **engine.params, **row.pop("observed", {})}
        if row["status"] == OK and not row["samples"]:
            row.update(status=ERROR, error=row.get("error", "no successful run"))
        out.append(row)
    return out


def run_latency_case(benchmark: str, case: Case, calls: int, *, warmup_calls: int = 5,
                     log: Callable[[str], None] | None = None,
                     block: int = LATENCY_BLOCK) -> list[dict[str, Any]]:
    """Time ``calls`` single requests per engine, engines taking turns in blocks of ``block``
    calls (the starting engine rotating). Call by call, each call measured the after-effects of
    the other systems' last call: about 1 ms more at the median for every engine on a 2-vCPU
    machine (Sabot 3.14 vs 2.17 ms, Ray 3.22 vs 2.10 ms, Dask 12.98 vs 10.57 ms).

    Gives two rows per engine, "latency p50 (ms)" and "latency p99 (ms)"; the p50 row keeps
    every single latency (``distribution``) for the plots.
    """
    log = log or _log
    # run_case does the setup, answers and error handling; one "repeat" per call
    probe = Case(case.name, case.engines, work=None, answer=case.answer, params=case.params,
                 timed=case.timed, run_timeout_s=case.run_timeout_s)
    quiet = (lambda m: None) if calls > 20 else log
    turns = max(1, -(-calls // max(1, block)))  # every call made: the blocks share them
    block = -(-calls // turns)
    rows = run_case(benchmark, probe, turns, warmup=warmup_calls > 0,
                    log=quiet, warmup_calls=warmup_calls, block=block)
    out = []
    for r in rows:
        base = {k: v for k, v in r.items() if k not in ("samples", "seconds", "metric")}
        base["higher_is_better"] = False
        if r["status"] != OK:
            out += [{**base, "metric": m} for m in ("latency p50 (ms)", "latency p99 (ms)")]
            continue
        ms = [s * 1000 for s in r["seconds"]]
        p50, p99 = percentile(ms, 50), percentile(ms, 99)
        log(f"  {case.name} / {r['engine']}: p50 {p50:.3f} ms, p99 {p99:.3f} ms ({len(ms)} calls)")
        out.append({**base, "metric": "latency p50 (ms)", "samples": [p50], "distribution": ms})
        out.append({**base, "metric": "latency p99 (ms)", "samples": [p99]})
    return out


def _one_run(engine: Engine, case: Case, row: dict[str, Any], live: list[Engine],
             log: Callable[[str], None], *, record: bool) -> None:
    if engine not in live:
        return
    try:
        with time_limit(case.run_timeout_s):
            t0 = time.perf_counter()
            result = engine.run()
            dt = time.perf_counter() - t0
    except BaseException as exc:  # noqa: BLE001
        if isinstance(exc, KeyboardInterrupt):
            raise
        row.update(status=ERROR, error=error_text(exc))
        log(f"  {case.name} / {engine.name}: failed: {error_text(exc)}")
        _debug_trace()
        live.remove(engine)
        # a failed engine may be broken: stop it; a shared one is started afresh by the next case
        _safe_teardown(engine)
        engine.ready = False
        return
    try:
        row.setdefault("observed", {}).update(engine.describe())
    except Exception:  # descriptive only
        pass
    if "answer" not in row:
        try:
            row["answer"] = case.answer(result)
        except Exception as exc:  # a result that cannot even be checked is a wrong answer
            row["answer"] = f"unreadable result: {error_text(exc)}"
    del result
    if record:
        row["seconds"].append(dt)
        row["samples"].append(case.work / dt if case.work is not None else dt)
        log(f"  {case.name} / {engine.name}: {_fmt(row['samples'][-1])} {row['metric']}"
            f" ({dt:.3f} s)")


def _safe_teardown(engine: Engine) -> None:
    try:
        with time_limit(120):
            engine.teardown()
    except BaseException as exc:  # noqa: BLE001
        if isinstance(exc, KeyboardInterrupt):
            raise
        _log(f"  teardown of {engine.name} failed: {error_text(exc)}")


def _debug_trace() -> None:
    if os.environ.get("BENCH_DEBUG"):
        traceback.print_exc()


def _log(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


def _fmt(x: float | None) -> str:
    if x is None or (isinstance(x, float) and math.isnan(x)):
        return "-"
    ax = abs(x)
    if ax >= 1e9:
        return f"{x / 1e9:.2f} G"
    if ax >= 1e6:
        return f"{x / 1e6:.2f} M"
    if ax >= 1e4:
        return f"{x / 1e3:.1f} k"
    if ax >= 100:
        return f"{x:.0f}"
    if ax >= 1:
        return f"{x:.2f}"
    return f"{x:.3g}"


# --------------------------------------------------------------------------- rows

def complete_row(row: dict[str, Any], benchmark: str) -> dict[str, Any]:
    """Fill in what a benchmark module left out of a row; compute median and min-max."""
    row = dict(row)
    row.setdefault("benchmark", benchmark)
    row.setdefault("case", row.get("name", "default"))
    row.setdefault("engine", "unknown")
    row.setdefault("metric", row.get("unit", "value"))
    row.setdefault("params", {})
    row.setdefault("status", OK)
    samples = row.get("samples")
    if not samples:
        value = row.get("value", row.get("median"))
        samples = [value] if isinstance(value, (int, float)) else []
    samples = [float(s) for s in samples if isinstance(s, (int, float)) and not isinstance(s, bool)]
    row["samples"] = samples
    if "higher_is_better" not in row:
        m = str(row["metric"]).lower()
        row["higher_is_better"] = "/s" in m or "per s" in m or "throughput" in m
    if samples:
        row["median"] = statistics.median(samples)
        row["min"] = min(samples)
        row["max"] = max(samples)
    elif row["status"] == OK:
        row["status"] = ERROR
        row.setdefault("error", "the benchmark produced no figure")
    return row


def _is_sabot(engine: str) -> bool:
    return engine.lower().startswith("sabot")


def sabot_reference(group: list[dict[str, Any]]) -> dict[str, Any] | None:
    """The row peers are compared with: engine "sabot" first, else the first "sabot..." row."""
    ok = [r for r in group if r["status"] == OK and _is_sabot(r["engine"])]
    for r in ok:
        if r["engine"].lower() == "sabot":
            return r
    return ok[0] if ok else None


def answers_equal(a: Any, b: Any, rel: float = 1e-9) -> bool:
    """Exact equality, except floats (anywhere inside) compare within ``rel`` relative."""
    if isinstance(a, bool) or isinstance(b, bool):
        return a == b
    if isinstance(a, (int, float)) and isinstance(b, (int, float)):
        if isinstance(a, int) and isinstance(b, int):
            return a == b
        if math.isnan(a) and math.isnan(b):
            return True
        return math.isclose(a, b, rel_tol=rel, abs_tol=1e-12)
    if isinstance(a, dict) and isinstance(b, dict):
        return a.keys() == b.keys() and all(answers_equal(a[k], b[k], rel) for k in a)
    if isinstance(a, (list, tuple)) and isinstance(b, (list, tuple)):
        return len(a) == len(b) and all(answers_equal(x, y, rel) for x, y in zip(a, b))
    return a == b


def check_answers(rows: list[dict[str, Any]]) -> None:
    """Set ``answer_ok`` on every row that has an answer and a Sabot row to compare with.

    Answers are compared per (benchmark, case): every metric of a case computes the same thing.
    A row marked ``oracle`` (an independent batch answer) is the reference where a case has one.
    """
    groups: dict[tuple[str, str], list[dict[str, Any]]] = {}
    for r in rows:
        groups.setdefault((r["benchmark"], r["case"]), []).append(r)
    for group in groups.values():
        answered = [r for r in group if r["status"] == OK and r.get("answer") is not None]
        ref = next((r for r in answered if r.get("oracle")), None) or \
            next((r for r in answered if _is_sabot(r["engine"])), None)
        for r in group:
            if r["status"] != OK or r.get("answer") is None:
                continue
            if ref is None:
                r["answer_ok"] = None
            else:
                r["answer_ok"] = answers_equal(r["answer"], ref["answer"])


def add_ratios(rows: list[dict[str, Any]]) -> None:
    """``sabot_advantage``: how many times better Sabot is than this row (>1: Sabot better)."""
    groups: dict[tuple[str, str, str], list[dict[str, Any]]] = {}
    for r in rows:
        groups.setdefault((r["benchmark"], r["case"], r["metric"]), []).append(r)
    for group in groups.values():
        ref = sabot_reference(group)
        for r in group:
            if ref is None or r["status"] != OK or not r.get("median") or not ref.get("median"):
                continue
            if r.get("scale_reference"):  # shown for scale and answers, not as a competitor
                continue
            if r["higher_is_better"]:
                r["sabot_advantage"] = ref["median"] / r["median"]
            else:
                r["sabot_advantage"] = r["median"] / ref["median"]


# --------------------------------------------------------------------------- the suite

def load_benchmark(name: str) -> Any:
    return importlib.import_module(f"{__package__}.{name}")


def call_benchmark(mod: Any, quick: bool, threads: list[int], repeat: int | None,
                   out_dir: Path) -> list[dict[str, Any]]:
    """Call ``mod.run`` with the arguments it accepts (the contract is ``run(quick, threads)``)."""
    fn = mod.run
    try:
        sig = inspect.signature(fn)
        accepted = sig.parameters
        var_kw = any(p.kind is p.VAR_KEYWORD for p in accepted.values())
    except (TypeError, ValueError):
        accepted, var_kw = {}, False
    kwargs: dict[str, Any] = {}
    if var_kw or "repeat" in accepted:
        kwargs["repeat"] = repeat
    if var_kw or "out_dir" in accepted:
        kwargs["out_dir"] = out_dir
    return list(fn(quick, threads, **kwargs))


@dataclass
class SuiteOptions:
    quick: bool = False
    only: list[str] | None = None
    threads: list[int] | None = None
    repeat: int | None = None
    out: Path | None = None
    command: str = ""


def default_threads() -> list[int]:
    n = usable_cores()
    return sorted({1, n})


def run_suite(opts: SuiteOptions) -> tuple[Path, list[dict[str, Any]]]:
    names = opts.only or list(BENCHMARKS)
    unknown = [n for n in names if n not in BENCHMARKS]
    if unknown:
        raise SystemExit(f"unknown benchmark(s) {', '.join(unknown)}; "
                         f"choose from: {', '.join(BENCHMARKS)}")
    threads = opts.threads or default_threads()
    stamp = _dt.datetime.now(_dt.timezone.utc).strftime("%Y%m%dT%H%M%SZ")
    out_dir = opts.out or (REPO_ROOT / "bench" / "results" / stamp)
    out_dir.mkdir(parents=True, exist_ok=True)

    meta: dict[str, Any] = {
        "started_utc": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        "command": opts.command,
        "quick": opts.quick,
        "threads": threads,
        "repeat": opts.repeat,
        "machine": machine_info(),
        "versions": versions(),
        "git_commit": git_commit(),
        "loadavg_start": loadavg(),
        "benchmarks": {},
    }
    all_rows: list[dict[str, Any]] = []
    raw_path = out_dir / "raw.jsonl"
    with raw_path.open("w") as raw:
        for name in names:
            _log(f"== {name}")
            t0 = time.perf_counter()
            info: dict[str, Any] = {"loadavg_before": loadavg()}
            try:
                mod = load_benchmark(name)
                info["title"] = getattr(mod, "TITLE", None) or _first_line(mod.__doc__) or name
                info["description"] = getattr(mod, "DESCRIPTION", None) or _rest(mod.__doc__)
                rows = call_benchmark(mod, opts.quick, threads, opts.repeat, out_dir)
            except ModuleNotFoundError as exc:
                missing = exc.name or str(exc)
                status = NOT_AVAILABLE if missing.startswith(("bench.", "sabot")) else ERROR
                rows = [{"case": "-", "engine": "sabot", "metric": "-", "status": status,
                         "error": f"benchmark module not available: {error_text(exc)}"}]
                info.setdefault("title", name)
            except BaseException as exc:  # noqa: BLE001 - one broken benchmark must not stop the rest
                if isinstance(exc, KeyboardInterrupt):
                    raise
                _debug_trace()
                rows = [{"case": "-", "engine": "sabot", "metric": "-", "status": ERROR,
                         "error": f"benchmark crashed: {error_text(exc)}"}]
                info.setdefault("title", name)
            info["seconds"] = round(time.perf_counter() - t0, 1)
            info["loadavg_after"] = loadavg()
            meta["benchmarks"][name] = info
            rows = [complete_row(r, name) for r in rows]
            summarize = getattr(sys.modules.get(f"{__package__}.{name}"), "summarize", None)
            if summarize is not None:
                try:
                    info["extra_markdown"] = summarize(rows)
                except Exception as exc:  # the table is a convenience; the rows are the record
                    _log(f"{name}.summarize failed: {error_text(exc)}")
            all_rows.extend(rows)
    check_answers(all_rows)
    add_ratios(all_rows)
    meta["loadavg_end"] = loadavg()
    meta["finished_utc"] = _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")
    with raw_path.open("w") as raw:
        raw.write(json.dumps({"type": "run", **meta}, default=str) + "\n")
        for r in all_rows:
            raw.write(json.dumps({"type": "result", **r}, default=str) + "\n")

    plots: list[str] = []
    try:
        from . import report

        plots = report.plot_all(all_rows, out_dir)
    except ImportError as exc:
        _log(f"plots skipped: {exc}")
    except Exception as exc:  # a plotting bug must not lose the figures
        _debug_trace()
        _log(f"plots failed: {error_text(exc)}")
    (out_dir / "summary.md").write_text(summary_markdown(all_rows, meta, plots))
    glance = _headline(all_rows)
    if glance:  # what the README's Performance section shows, with where it came from
        m = meta["machine"]
        (out_dir / "readme_snippet.md").write_text(
            f"{glance}\n\nMeasured by `{meta['command']}` on {m.get('cpu_model')},"
            f" {m.get('usable_cores')} usable cores, {meta['finished_utc'][:10]}"
            f" (load average at start {meta['loadavg_start']}).\n")
    _log(f"results in {out_dir}")
    return out_dir, all_rows


def _first_line(doc: str | None) -> str:
    return (doc or "").strip().splitlines()[0].strip() if (doc or "").strip() else ""


def _rest(doc: str | None) -> str:
    """The docstring after its first line, line breaks kept (Markdown lists survive)."""
    import textwrap

    lines = (doc or "").strip().splitlines()
    return textwrap.dedent("\n".join(lines[1:])).strip()


# --------------------------------------------------------------------------- Markdown

def _md_value(x: float | None, metric: str) -> str:
    if x is None:
        return "-"
    return _fmt(x)


def _md_ratio(r: dict[str, Any]) -> str:
    if r.get("scale_reference"):
        return "(scale)"
    adv = r.get("sabot_advantage")
    if adv is None:
        return ""
    if _is_sabot(r["engine"]) and abs(adv - 1.0) < 1e-12:
        return "1 (ref)"
    return f"{adv:.2f}x"


def _md_answer(r: dict[str, Any]) -> str:
    ok = r.get("answer_ok")
    if ok is True:
        return "equal"
    if ok is False:
        return "**DIFFERENT**"
    return ""


def summary_markdown(rows: list[dict[str, Any]], meta: dict[str, Any],
                     plots: Sequence[str] = ()) -> str:
    m = meta["machine"]
    v = {k: val for k, val in meta["versions"].items() if val}
    lines = [
        "# Sabot benchmark results",
        "",
        f"- Command: `{meta['command']}`" + (" (quick mode: small inputs, 1 repeat)"
                                              if meta["quick"] else ""),
        f"- Run: {meta['started_utc']} to {meta['finished_utc']}, commit `{meta['git_commit']}`",
        f"- Machine: {m.get('cpu_model')}, {m.get('cpu_count')} CPUs ({m.get('usable_cores')} usable),"
        f" {m.get('memory_gb', '?')} GB RAM, {m.get('platform')}, Python {m.get('python')}",
        f"- Load average (1, 5, 15 min) at start {meta['loadavg_start']}, at end"
        f" {meta['loadavg_end']}",
        "- Versions: " + ", ".join(f"{k} {val}" for k, val in v.items()),
        "- `median` and `min-max` are over the repeats; `vs Sabot` is how many times better Sabot"
        " is than that engine on that line's metric (above 1: Sabot wins; below 1: Sabot loses);"
        " `answer` compares the engine's result with Sabot's.",
        "",
    ]
    glance = _headline(rows)
    if glance:
        lines += ["## At a glance", "", glance, "",
                  "Best other engine: the fastest (or leanest) peer in that case; above 1x Sabot"
                  " is better. Details, repeats and every peer below.", ""]
    by_bench: dict[str, list[dict[str, Any]]] = {}
    for r in rows:
        by_bench.setdefault(r["benchmark"], []).append(r)
    for name, brows in by_bench.items():
        info = meta["benchmarks"].get(name, {})
        lines.append(f"## {name}: {info.get('title', name)}")
        lines.append("")
        if info.get("description"):
            lines.append(info["description"])
            lines.append("")
        timed = sorted({r.get("timed") for r in brows if r.get("timed")})
        for t in timed:
            lines.append(f"Timed: {t}")
        lines.append(f"(took {info.get('seconds', '?')} s; load average before"
                     f" {info.get('loadavg_before')}, after {info.get('loadavg_after')})")
        lines.append("")
        if info.get("extra_markdown"):
            lines.append(info["extra_markdown"])
            lines.append("")
        lines.append("| case | engine | metric | median | min-max | n | vs Sabot | answer | notes |")
        lines.append("|---|---|---|---:|---:|---:|---:|---|---|")
        for r in brows:
            if r["status"] == OK:
                rng = f"{_fmt(r['min'])} - {_fmt(r['max'])}"
                note = _params_note(r)
                lines.append(
                    f"| {r['case']} | {r['engine']} | {r['metric']} |"
                    f" {_md_value(r.get('median'), r['metric'])} | {rng} | {len(r['samples'])} |"
                    f" {_md_ratio(r)} | {_md_answer(r)} | {note} |")
            else:
                err = str(r.get("error", "")).replace("|", "/").replace("\n", " ")
                lines.append(f"| {r['case']} | {r['engine']} | {r['metric']} | {r['status']} |"
                             f" | | | | {err} |")
        lines.append("")
    losses = [r for r in rows if r["status"] == OK and r.get("sabot_advantage") is not None
              and r["sabot_advantage"] < 1.0 and not _is_sabot(r["engine"])]
    try:
        from . import targets

        target_md = targets.markdown(rows)
    except Exception as exc:  # the verdicts are a convenience; the rows are the record
        target_md = f"(target check failed: {error_text(exc)})"
    if target_md:
        lines += ["## Targets", "", target_md, ""]
    lines.append("## Where Sabot loses in this run")
    lines.append("")
    no_ref = sorted({r["benchmark"] for r in rows if r["status"] == OK}
                    - {r["benchmark"] for r in rows if r["status"] == OK and _is_sabot(r["engine"])})
    if no_ref:
        lines.append(f"- no Sabot figure to compare with in: {', '.join(no_ref)}")
    if losses:
        grouped: dict[tuple[str, str, str], list[str]] = {}
        for r in losses:
            grouped.setdefault((r["benchmark"], r["case"], r["metric"]), []).append(
                f"{r['engine']} {1 / r['sabot_advantage']:.2f}x")
        for (bench, case, metric), who in grouped.items():
            lines.append(f"- {bench} / {case} / {metric}: better than Sabot: {', '.join(who)}")
    elif not no_ref:
        lines.append("- nowhere: Sabot is at least as good as every peer measured.")
    wrong = [r for r in rows if r.get("answer_ok") is False]
    if wrong:
        lines.append("")
        lines.append("## Answers that differ from Sabot's")
        lines.append("")
        for r in wrong:
            lines.append(f"- {r['benchmark']} / {r['case']} / {r['engine']}")
    if plots:
        lines.append("")
        lines.append("## Plots")
        lines.append("")
        for p in plots:
            lines.append(f"![{Path(p).stem}]({Path(p).name})")
    lines.append("")
    return "\n".join(lines)


_NOTE_KEYS = ("executor", "workers", "chunksize", "chunks", "threads", "items", "rows", "cost_us",
              "morsel_kb", "client_cpu_us_per_item", "coordinator_MB", "note")


def _headline(rows: list[dict[str, Any]]) -> str:
    try:
        from . import headline

        return headline.markdown(rows)
    except Exception as exc:  # a convenience table; the rows are the record
        return f"(headline table failed: {error_text(exc)})"


def _params_note(r: dict[str, Any]) -> str:
    p = r.get("params") or {}
    parts = [f"{k}={p[k]}" for k in _NOTE_KEYS if k in p and k != "note"]
    if "note" in p:
        parts.append(str(p["note"]))
    if r.get("note"):
        parts.append(str(r["note"]))
    return ", ".join(parts).replace("|", "/")
