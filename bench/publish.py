"""Put a finished run's summary and plots into docs/performance.md, verbatim.

docs/performance.md holds the prose (how to run, what each benchmark means); the block between
the two markers below is replaced by the run's summary.md, so the figures in the docs are always
the suite's own output, never typed by hand.
"""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

from . import BENCHMARKS
from .harness import REPO_ROOT

BEGIN = "<!-- bench:results:begin (written by `python -m bench publish`; do not edit) -->"
END = "<!-- bench:results:end -->"
DOC = REPO_ROOT / "docs" / "performance.md"
ASSETS = REPO_ROOT / "docs" / "performance"


def _partial_markers(key: str) -> tuple[str, str]:
    return (f"<!-- bench:results:{key}:begin (written by `python -m bench publish`; do not edit) -->",
            f"<!-- bench:results:{key}:end -->")


def _run_benchmarks(run_dir: Path) -> list[str]:
    """The benchmarks a run covered (its raw.jsonl's first line), in the suite's order."""
    try:
        meta = json.loads((run_dir / "raw.jsonl").read_text().splitlines()[0])
        names = list(meta.get("benchmarks") or {})
    except (OSError, IndexError, ValueError):
        names = []
    return [n for n in BENCHMARKS if n in names] or list(BENCHMARKS)


def publish(run_dir: Path, doc: Path = DOC, assets: Path = ASSETS) -> None:
    """A run of the whole suite replaces the results block (and any partial blocks); a run of
    some benchmarks (``--only``) gets a block of its own after it, replaced by the next run of
    the same benchmarks, so the other benchmarks' published figures stay."""
    summary_path = run_dir / "summary.md"
    if not summary_path.is_file():
        raise SystemExit(f"{summary_path} not found: give the directory of a finished"
                         " `python -m bench run`")
    text = doc.read_text() if doc.is_file() else ""
    if BEGIN not in text or END not in text:
        raise SystemExit(f"{doc} lacks the markers {BEGIN!r} ... {END!r}; add them where the"
                         " results belong")
    names = _run_benchmarks(run_dir)
    partial = set(names) != set(BENCHMARKS)
    key = "+".join(names)
    summary = summary_path.read_text()
    # the run's output directory is a path on the measuring machine: keep it out of the docs
    summary = re.sub(r"--out(\s+|=)\S+?(`|\s)", r"--out DIR\2", summary)
    rel = assets.relative_to(doc.parent).as_posix()
    # plots move to docs/performance/; headings nest one level under the page's own
    summary = re.sub(r"\]\(([^)/]+\.png)\)", lambda m: f"]({rel}/{m.group(1)})", summary)
    summary = re.sub(r"^(#+) ", lambda m: "#" + m.group(1) + " ", summary, flags=re.M)
    if partial:
        summary = summary.replace("## Sabot benchmark results",
                                  f"## Sabot benchmark results: {', '.join(names)}", 1)
        begin, end = _partial_markers(key)
        block = f"{begin}\n\n{summary.strip()}\n\n{end}"
        if begin in text and end in text:
            head, rest = text.split(begin, 1)
            _, tail = rest.split(end, 1)
            text = f"{head}{block}{tail}"
        else:
            head, tail = text.split(END, 1)
            text = f"{head}{END}\n\n{block}{tail}"
    else:
        # a whole run supersedes the partial blocks
        text = re.sub(r"\n*<!-- bench:results:([^ ]+):begin .*?<!-- bench:results:\1:end -->",
                      "", text, flags=re.S)
        head, rest = text.split(BEGIN, 1)
        _, tail = rest.split(END, 1)
        text = f"{head}{BEGIN}\n\n{summary.strip()}\n\n{END}{tail}"
    doc.write_text(text)

    assets.mkdir(parents=True, exist_ok=True)
    pngs = sorted(run_dir.glob("*.png"))
    if not partial:
        for old in assets.glob("*.png"):
            old.unlink()
    for png in pngs:
        shutil.copy2(png, assets / png.name)
    raw = (run_dir / "raw.jsonl").read_text()
    name = f"raw-{key}.jsonl" if partial else "raw.jsonl"
    (assets / name).write_text(re.sub(r"--out(\s+|=)[^\s\"]+", r"--out DIR", raw))
    print(f"published {run_dir} into {doc} and {assets}/")
