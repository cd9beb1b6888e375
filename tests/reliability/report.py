"""Render the figures of the last reliability run into docs/reliability.md.

The tests in tests/reliability, tests/load (and a few in tests/fuzz) append one JSON line per
scenario to the results file (``build/reliability/results.jsonl``, or SABOT_RELIABILITY_RESULTS).
This script keeps the latest line of each (scenario, variant) and replaces the block between
the ``figures:start`` and ``figures:end`` markers of the document, so no figure is typed by hand.

    python3 tests/reliability/report.py [--results FILE] [--doc docs/reliability.md]
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[2]
START = "<!-- figures:start -->"
END = "<!-- figures:end -->"
#: Columns every scenario shares; everything else goes to "other figures".
MAIN = ("jobs", "kills", "results_checked", "lost", "duplicated")
SKIP = {"scenario", "variant", "time", "samples"}


def latest(path: Path) -> list[dict[str, Any]]:
    rows: dict[tuple[str, str], dict[str, Any]] = {}
    for line in path.read_text(encoding="utf-8").splitlines():
        if line.strip():
            rec = json.loads(line)
            rows[(rec["scenario"], rec.get("variant", ""))] = rec
    return sorted(rows.values(), key=lambda r: (r["scenario"], r.get("variant", "")))


def fmt(value: Any) -> str:
    if isinstance(value, list):
        return ", ".join(map(str, value))
    return "" if value is None else str(value)


def table(rows: list[dict[str, Any]]) -> str:
    out = ["| scenario | variant | jobs | kills | results checked | lost | duplicated | "
           "other figures | run (UTC) |",
           "|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        other = "; ".join(f"{k}={fmt(v)}" for k, v in sorted(r.items())
                          if k not in SKIP and k not in MAIN)
        when = time.strftime("%Y-%m-%d %H:%M", time.gmtime(r["time"]))
        out.append("| " + " | ".join([r["scenario"], r.get("variant", ""),
                                      *(fmt(r.get(k, "")) for k in MAIN), other, when]) + " |")
    samples = [r for r in rows if r.get("samples")]
    for r in samples:
        out += ["", f"Samples of *{r['scenario']}* ({r.get('variant', '')}):", "",
                "| jobs done | coordinator RSS (MiB) | open fds | journal (KiB) | seconds |",
                "|---|---|---|---|---|"]
        for s in r["samples"]:
            out.append(f"| {s['jobs']} | {s['rss_mib']} | {s['fds']} | {s['journal_kib']} | "
                       f"{s['seconds']} |")
    return "\n".join(out)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--results", type=Path, default=Path(os.environ.get(
        "SABOT_RELIABILITY_RESULTS", REPO / "build" / "reliability" / "results.jsonl")))
    parser.add_argument("--doc", type=Path, default=REPO / "docs" / "reliability.md")
    args = parser.parse_args(argv)
    if not args.results.exists():
        print(f"report: no results file at {args.results}; run the tests first", file=sys.stderr)
        return 1
    doc = args.doc.read_text(encoding="utf-8")
    if START not in doc or END not in doc:
        print(f"report: {args.doc} has no {START} ... {END} block", file=sys.stderr)
        return 1
    head, rest = doc.split(START, 1)
    _, tail = rest.split(END, 1)
    args.doc.write_text(f"{head}{START}\n{table(latest(args.results))}\n{END}{tail}",
                        encoding="utf-8")
    print(f"report: wrote the figures of {args.results} into {args.doc}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
