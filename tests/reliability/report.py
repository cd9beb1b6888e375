"""Render the figures of the last reliability run into docs/reliability.md.

The tests in tests/reliability, tests/load (and a few in tests/fuzz) append one JSON line per
scenario to the results file (``build/reliability/results.jsonl``, or SABOT_RELIABILITY_RESULTS).
This script keeps the latest line of each (scenario, variant) and replaces the block between
the ``figures:start`` and ``figures:end`` markers of the document, so no figure is typed by hand.
With ``--keep-published`` the scenarios the results file lacks (a run of part of the suite, or
without ``-m slow``) keep the figures the document shows, read back from its table.

    python3 tests/reliability/report.py [--results FILE] [--doc docs/reliability.md]
                                        [--keep-published]
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


def _value(text: str) -> Any:
    for kind in (int, float):
        try:
            return kind(text)
        except ValueError:
            pass
    return text


def published(block: str) -> list[dict[str, Any]]:
    """The records a rendered figures block shows (the inverse of :func:`table`)."""
    rows: dict[tuple[str, str], dict[str, Any]] = {}
    lines = block.splitlines()
    i = 0
    while i < len(lines):
        line = lines[i]
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if len(cells) == 9 and cells[0] not in ("scenario", "---"):
            rec: dict[str, Any] = {"scenario": cells[0], "variant": cells[1]}
            for key, cell in zip(MAIN, cells[2:7]):
                if cell:
                    rec[key] = _value(cell)
            for part in filter(None, (p.strip() for p in cells[7].split(";"))):
                key, _, val = part.partition("=")
                rec[key] = _value(val)
            rec["time"] = time.mktime(time.strptime(cells[8] + " UTC", "%Y-%m-%d %H:%M %Z")) \
                - time.timezone
            rows[(rec["scenario"], rec["variant"])] = rec
        elif line.startswith("Samples of *"):
            name, _, variant = line[len("Samples of *"):].rpartition("* (")
            target = rows.get((name, variant.rstrip("):")))
            samples = []
            i += 4  # (blank line, header, rule)
            while i < len(lines) and lines[i].startswith("| "):
                jobs, rss, fds, journal, seconds = (c.strip() for c in
                                                    lines[i].strip().strip("|").split("|"))
                samples.append({"jobs": _value(jobs), "rss_mib": _value(rss), "fds": _value(fds),
                                "journal_kib": _value(journal), "seconds": _value(seconds)})
                i += 1
            if target is not None:
                target["samples"] = samples
            continue
        i += 1
    return list(rows.values())


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--results", type=Path, default=Path(os.environ.get(
        "SABOT_RELIABILITY_RESULTS", REPO / "build" / "reliability" / "results.jsonl")))
    parser.add_argument("--doc", type=Path, default=REPO / "docs" / "reliability.md")
    parser.add_argument("--keep-published", action="store_true",
                        help="keep the document's figures of scenarios the results file lacks")
    args = parser.parse_args(argv)
    if not args.results.exists():
        print(f"report: no results file at {args.results}; run the tests first", file=sys.stderr)
        return 1
    doc = args.doc.read_text(encoding="utf-8")
    if START not in doc or END not in doc:
        print(f"report: {args.doc} has no {START} ... {END} block", file=sys.stderr)
        return 1
    head, rest = doc.split(START, 1)
    block, tail = rest.split(END, 1)
    rows = latest(args.results)
    if args.keep_published:
        fresh = {(r["scenario"], r.get("variant", "")) for r in rows}
        rows += [r for r in published(block) if (r["scenario"], r["variant"]) not in fresh]
        rows.sort(key=lambda r: (r["scenario"], r.get("variant", "")))
    args.doc.write_text(f"{head}{START}\n{table(rows)}\n{END}{tail}", encoding="utf-8")
    print(f"report: wrote the figures of {args.results} into {args.doc}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
