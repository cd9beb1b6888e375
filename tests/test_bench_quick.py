"""The benchmark suite's smoke test: `python -m bench run --quick` produces a Sabot result for every
benchmark, and Sabot's answers equal the peers' answers. No timing is asserted (timings belong in
bench/, and this machine is shared); only that the suite runs and computes the right things.
Works with no peer installed (CI installs only `.[test]`): the standard-library peers remain.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:  # bench/ is a directory of the repository, not an installed package
    sys.path.insert(0, str(ROOT))

from bench import BENCHMARKS  # noqa: E402
from bench.harness import (Case, FuncEngine, answers_equal, check_answers,  # noqa: E402
                           complete_row, run_case)
from bench.workloads import checksum  # noqa: E402


def _child_env() -> dict[str, str]:
    env = dict(os.environ)
    # the child sees what this interpreter sees (an editable install, or PYTHONPATH=python)
    env["PYTHONPATH"] = os.pathsep.join([str(ROOT), *(p for p in sys.path if p)])
    return env


@pytest.fixture(scope="module")
def quick_run(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, list[dict[str, Any]]]:
    out = tmp_path_factory.mktemp("bench")
    proc = subprocess.run(
        [sys.executable, "-m", "bench", "run", "--quick", "--out", str(out)],
        cwd=ROOT, env=_child_env(), capture_output=True, text=True, timeout=280)
    assert proc.returncode == 0, proc.stderr[-3000:]
    lines = [json.loads(line) for line in (out / "raw.jsonl").read_text().splitlines()]
    assert lines[0]["type"] == "run"
    return out, [x for x in lines if x["type"] == "result"]


def test_every_benchmark_has_a_sabot_result(quick_run: tuple[Path, list[dict[str, Any]]]) -> None:
    _, rows = quick_run
    for name in BENCHMARKS:
        sabot = [r for r in rows if r["benchmark"] == name and r["engine"].startswith("sabot")]
        assert sabot, f"{name}: no Sabot row"
        failed = [f"{r['case']}/{r['metric']}: {r['status']} {r.get('error', '')}"
                  for r in sabot if r["status"] != "ok"]
        assert not failed, f"{name}: Sabot did not produce a result: {failed}"
        assert all(r["samples"] for r in sabot)


def test_sabot_answers_equal_the_peers(quick_run: tuple[Path, list[dict[str, Any]]]) -> None:
    _, rows = quick_run
    wrong = [f"{r['benchmark']}/{r['case']}/{r['engine']}" for r in rows
             if r.get("answer_ok") is False]
    assert not wrong, f"answers differ from Sabot's: {wrong}"
    # the comparison really happened: the always-available peers were checked against Sabot
    for name in ("per_item", "cost_sweep", "streaming", "cluster"):  # cluster: the relay
        checked = [r for r in rows if r["benchmark"] == name and r.get("answer_ok") is True
                   and not r["engine"].startswith("sabot")]
        assert checked, f"{name}: no peer answer was compared with Sabot's"


def test_summary_and_raw_results_are_written(quick_run: tuple[Path, list[dict[str, Any]]]
                                              ) -> None:
    out, rows = quick_run
    summary = (out / "summary.md").read_text()
    for name in BENCHMARKS:
        assert f"## {name}:" in summary
    meta = json.loads((out / "raw.jsonl").read_text().splitlines()[0])
    assert meta["machine"]["usable_cores"] >= 1
    assert "loadavg_start" in meta and "versions" in meta
    for r in rows:
        if r["status"] == "ok":
            assert r["min"] <= r["median"] <= r["max"]


def test_a_wrong_answer_is_flagged() -> None:
    data = list(range(1000))
    sabot = FuncEngine("sabot", lambda: [x * x for x in data])
    wrong = FuncEngine("broken peer", lambda: [x * x for x in data[:-1]] + [0])
    reordered = FuncEngine("reordering peer", lambda: [x * x for x in reversed(data)])
    right = FuncEngine("list comprehension", lambda: [x * x for x in data])
    case = Case("squares", [sabot, wrong, reordered, right], work=len(data), answer=checksum)
    rows = [complete_row(r, "t") for r in run_case("t", case, repeats=2, warmup=False,
                                                    log=lambda m: None)]
    check_answers(rows)
    verdict = {r["engine"]: r.get("answer_ok") for r in rows}
    assert verdict == {"sabot": True, "broken peer": False, "reordering peer": False,
                       "list comprehension": True}
    assert all(len(r["samples"]) == 2 for r in rows)


def test_a_failing_or_missing_engine_does_not_stop_the_case() -> None:
    def boom() -> list[int]:
        raise ValueError("peer exploded")

    case = Case("c", [FuncEngine("sabot", lambda: [1]),
                      FuncEngine("exploding", boom),
                      FuncEngine("absent", lambda: [1], availability=(False, "not installed"))],
                work=1, answer=checksum)
    rows = {r["engine"]: r for r in run_case("t", case, repeats=1, warmup=False,
                                             log=lambda m: None)}
    assert rows["sabot"]["status"] == "ok"
    assert rows["exploding"]["status"] == "error"
    assert "peer exploded" in rows["exploding"]["error"]
    assert rows["absent"]["status"] == "not available"


def test_float_answers_compare_within_tolerance() -> None:
    assert answers_equal({"sum": 1.0}, {"sum": 1.0 + 1e-12})
    assert not answers_equal({"sum": 1.0}, {"sum": 1.001})
    assert not answers_equal([1, 2], [1, 2, 3])
    assert answers_equal(3, 3) and not answers_equal(3, 4)


def test_publish_pastes_the_run_verbatim_between_the_markers(tmp_path: Path) -> None:
    from bench import publish

    run = tmp_path / "run"
    run.mkdir()
    (run / "summary.md").write_text("# Sabot benchmark results\n\n| a | 1.5 M |\n\n"
                                    "![cost_sweep](cost_sweep.png)\n")
    (run / "raw.jsonl").write_text("{}\n")
    (run / "cost_sweep.png").write_bytes(b"\x89PNG fake")
    doc = tmp_path / "docs" / "performance.md"
    doc.parent.mkdir()
    doc.write_text(f"intro\n{publish.BEGIN}\nold figures\n{publish.END}\noutro\n")
    publish.publish(run, doc=doc, assets=doc.parent / "performance")
    text = doc.read_text()
    assert "old figures" not in text
    assert text.startswith("intro\n") and text.endswith("outro\n")
    assert "## Sabot benchmark results" in text and "| a | 1.5 M |" in text
    assert "](performance/cost_sweep.png)" in text
    assert (doc.parent / "performance" / "cost_sweep.png").read_bytes() == b"\x89PNG fake"
    doc.write_text("no markers here\n")
    with pytest.raises(SystemExit, match="lacks the markers"):
        publish.publish(run, doc=doc, assets=doc.parent / "performance")


def test_nexmark_answers_were_checked_against_the_duckdb_oracle(
        quick_run: tuple[Path, list[dict[str, Any]]]) -> None:
    _, rows = quick_run
    nexmark = [r for r in rows if r["benchmark"] == "streaming_nexmark"]
    queries = {r["params"]["query"] for r in nexmark}
    assert queries == {"q0", "q1", "q2", "q3", "q4", "q5", "q7", "q8"}
    oracle = [r for r in nexmark if r.get("oracle")]
    assert oracle and all(r["status"] == "ok" for r in oracle), oracle[:1]
    for r in nexmark:
        if r["engine"].startswith("sabot"):
            assert r.get("answer_ok") is True, (r["case"], r["engine"], r.get("answer"))
            assert r["answer"]["rows"] > 0


def test_an_answer_unlike_the_oracle_is_flagged_even_when_it_is_sabot() -> None:
    base = {"benchmark": "b", "case": "q", "metric": "events/s", "status": "ok"}
    rows = [dict(base, engine="duckdb (oracle)", oracle=True, answer={"rows": 3, "checksum": "a"}),
            dict(base, engine="sabot", answer={"rows": 3, "checksum": "b"}),
            dict(base, engine="peer", answer={"rows": 3, "checksum": "a"})]
    check_answers(rows)
    assert [r["answer_ok"] for r in rows] == [True, False, True]


def test_publishing_one_benchmark_keeps_the_others(tmp_path: Path) -> None:
    from bench import publish

    doc = tmp_path / "docs" / "performance.md"
    doc.parent.mkdir()
    doc.write_text(f"intro\n{publish.BEGIN}\nthe whole suite's figures\n{publish.END}\noutro\n")
    assets = doc.parent / "performance"
    assets.mkdir()
    (assets / "cost_sweep.png").write_bytes(b"old plot")
    for figure in ("first", "second"):
        run = tmp_path / figure
        run.mkdir()
        (run / "summary.md").write_text(f"# Sabot benchmark results\n\n{figure} nexmark figures\n"
                                        "![nexmark](nexmark.png)\n")
        (run / "raw.jsonl").write_text(json.dumps(
            {"type": "run", "benchmarks": {"streaming_nexmark": {}}}) + "\n")
        (run / "nexmark.png").write_bytes(figure.encode())
        publish.publish(run, doc=doc, assets=assets)
    text = doc.read_text()
    assert "the whole suite's figures" in text and text.endswith("outro\n")
    assert "second nexmark figures" in text and "first nexmark figures" not in text
    assert "## Sabot benchmark results: streaming_nexmark" in text
    assert (assets / "cost_sweep.png").read_bytes() == b"old plot"
    assert (assets / "nexmark.png").read_bytes() == b"second"
    assert (assets / "raw-streaming_nexmark.jsonl").is_file()


@pytest.mark.parametrize("query", ["q3", "q4", "q8"])
def test_bytewax_nexmark_joins_equal_the_duckdb_oracle(query: str, tmp_path: Path) -> None:
    """Bytewax's joins (an optional peer: skipped when it is not installed) answer as DuckDB
    does over the same small event set."""
    pytest.importorskip("bytewax")
    pytest.importorskip("duckdb")
    from bench import nexmark_bytewax, nexmark_duckdb
    from bench import nexmark_data as nd

    nd.write(tmp_path / "events", 10_000, 1)
    files = nd.paths(tmp_path / "events")
    oracle = nexmark_duckdb.start(1, None, tmp_path).run(query, files)
    out = nexmark_bytewax.start(1, None, tmp_path).run(query, files)
    got = nd.answer(query, out() if callable(out) else out)
    assert got == nd.answer(query, oracle) and got["rows"] > 0
