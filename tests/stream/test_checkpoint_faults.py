"""Kill -9 of a process running a checkpointed pipeline, at chosen and at random points; after
each restart on the same state_dir it goes on from the newest complete checkpoint, and in the
end every exactly-once file sink holds exactly the rows of a run without faults, and no file it
committed along the way was changed or removed afterwards (windows,
sessions, keyed state with timers and an interval join, all under faults)."""

from __future__ import annotations

import hashlib
import os
import random
from pathlib import Path

import pyarrow.json as pj
import pyarrow.parquet as pq
import pytest
import sabot_test_killable as killable

PIPELINE = Path(__file__).parent / "procs" / "checkpointed_pipeline.py"
OUTPUTS = ("sliding", "session", "process", "join")
EVENTS = "150000"


def _rows(directory: Path) -> list[str]:
    """Every row of a sink's committed files, as sorted text (a multiset)."""
    rows: list[str] = []
    for name in sorted(os.listdir(directory)):
        assert not name.endswith(".inprogress"), f"uncommitted file left in {directory}: {name}"
        if not name.startswith("part-"):
            continue
        path = directory / name
        table = pq.read_table(path) if name.endswith(".parquet") else pj.read_json(path)
        rows.extend(repr(sorted(r.items())) for r in table.to_pylist())
    return sorted(rows)


def _published(out: Path) -> dict[str, str]:
    """Every committed file under ``out`` and a digest of its bytes."""
    return {str(p.relative_to(out)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in out.glob("*/part-*")}


def _run(out: Path, state: Path | str, env: dict[str, str] | None = None,
         kill_after: float | None = None) -> int:
    return killable.run(PIPELINE, [str(out), str(state), EVENTS], env, kill_after)


@pytest.fixture(scope="module")
def reference(tmp_path_factory: pytest.TempPathFactory) -> dict[str, list[str]]:
    out = tmp_path_factory.mktemp("reference")
    assert _run(out, "-") == 0
    return {q: _rows(out / q) for q in OUTPUTS}


def _faulted(tmp_path: Path, reference: dict[str, list[str]], random_kills: int, seed: int) -> None:
    out, state = tmp_path / "out", tmp_path / "state"
    seen: dict[str, str] = {}  # a file once committed is never changed nor removed

    def check_published() -> None:
        now = _published(out)
        for name, digest in seen.items():
            assert now.get(name) == digest, f"{name}: committed, then changed or removed"
        seen.update(now)

    # At each crash point of the checkpoint protocol once: files written but not committed,
    # committed before any sink commit, after the first sink's commit only.
    for point, nth in (("files", 2), ("manifest", 1), ("sinks", 1)):
        code = _run(out, state, {"SABOT_STREAM_CRASH": f"{point}:{nth}"})
        assert code == -9, f"the pipeline did not reach crash point {point}:{nth}"
        check_published()
    rnd = random.Random(seed)
    for _ in range(random_kills):
        code = _run(out, state, kill_after=rnd.uniform(0.8, 3.0))
        check_published()
        if code != -9:
            break
    assert _run(out, state) == 0
    check_published()
    for q in OUTPUTS:
        got = _rows(out / q)
        assert len(got) == len(reference[q]), f"{q}: {len(got)} rows, expected {len(reference[q])}"
        assert got == reference[q], f"{q}: the rows differ from the run without faults"


def test_kill_at_each_checkpoint_phase_and_at_random_gives_the_exact_output(tmp_path, reference):
    _faulted(tmp_path, reference, random_kills=4, seed=1)


@pytest.mark.slow
def test_many_random_kills_give_the_exact_output(tmp_path, reference):
    _faulted(tmp_path, reference, random_kills=25, seed=2)


def test_a_finished_job_started_again_adds_nothing(tmp_path, reference):
    out, state = tmp_path / "out", tmp_path / "state"
    assert _run(out, state) == 0
    assert _run(out, state) == 0
    for q in OUTPUTS:
        assert _rows(out / q) == reference[q]


FILES_PIPELINE = Path(__file__).parent / "procs" / "files_pipeline.py"


def test_a_file_source_resumes_mid_file_after_kill_9(tmp_path):
    """from_files' position (files done, the offset in the file, the items of it handed out)
    is in the checkpoint: crashes in the middle of a file neither lose nor repeat its rows."""
    src = tmp_path / "in"
    src.mkdir()
    n = 0
    for f in range(6):
        with open(src / f"part-{f}.jsonl", "w") as fh:
            for i in range(2500):
                fh.write(f'{{"k": {n % 13}, "v": {n}, "t": {n * 3}}}\n')
                n += 1

    def run(out: Path, state: Path, env: dict[str, str] | None = None) -> int:
        return killable.run(FILES_PIPELINE, [str(src / "*.jsonl"), str(out), str(state)], env)

    assert run(tmp_path / "ref", tmp_path / "ref-state") == 0
    out, state = tmp_path / "out", tmp_path / "state"
    for spec in ("files:3", "manifest:3", "sinks:2", "manifest:2", "files:2"):
        assert run(out, state, {"SABOT_STREAM_CRASH": spec}) == -9, spec
    assert run(out, state) == 0
    want = _rows(tmp_path / "ref")
    assert _rows(Path(f"{out}-reduce")) == _rows(Path(f"{tmp_path / 'ref'}-reduce"))
    assert _rows(out) == want and sum(int(r.split("'total', ")[1].split(")")[0]) for r in want) == \
        n * (n - 1) // 2
