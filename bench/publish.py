"""Put a finished run's summary and plots into docs/performance.md, verbatim.

docs/performance.md holds the prose (how to run, what each benchmark means); the block between
the two markers below is replaced by the run's summary.md, so the figures in the docs are always
the suite's own output, never typed by hand.
"""

from __future__ import annotations

import re
import shutil
from pathlib import Path

from .harness import REPO_ROOT

BEGIN = "<!-- bench:results:begin (written by `python -m bench publish`; do not edit) -->"
END = "<!-- bench:results:end -->"
DOC = REPO_ROOT / "docs" / "performance.md"
ASSETS = REPO_ROOT / "docs" / "performance"


def publish(run_dir: Path, doc: Path = DOC, assets: Path = ASSETS) -> None:
    summary_path = run_dir / "summary.md"
    if not summary_path.is_file():
        raise SystemExit(f"{summary_path} not found: give the directory of a finished"
                         " `python -m bench run`")
    text = doc.read_text() if doc.is_file() else ""
    if BEGIN not in text or END not in text:
        raise SystemExit(f"{doc} lacks the markers {BEGIN!r} ... {END!r}; add them where the"
                         " results belong")
    summary = summary_path.read_text()
    # the run's output directory is a path on the measuring machine: keep it out of the docs
    summary = re.sub(r"--out(\s+|=)\S+?(`|\s)", r"--out DIR\2", summary)
    rel = assets.relative_to(doc.parent).as_posix()
    # plots move to docs/performance/; headings nest one level under the page's own
    summary = re.sub(r"\]\(([^)/]+\.png)\)", lambda m: f"]({rel}/{m.group(1)})", summary)
    summary = re.sub(r"^(#+) ", lambda m: "#" + m.group(1) + " ", summary, flags=re.M)
    head, rest = text.split(BEGIN, 1)
    _, tail = rest.split(END, 1)
    doc.write_text(f"{head}{BEGIN}\n\n{summary.strip()}\n\n{END}{tail}")

    assets.mkdir(parents=True, exist_ok=True)
    for old in assets.glob("*.png"):
        old.unlink()
    for png in sorted(run_dir.glob("*.png")):
        shutil.copy2(png, assets / png.name)
    raw = (run_dir / "raw.jsonl").read_text()
    (assets / "raw.jsonl").write_text(re.sub(r"--out(\s+|=)[^\s\"]+", r"--out DIR", raw))
    print(f"published {run_dir} into {doc} and {assets}/")
