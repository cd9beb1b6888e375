"""The run at a glance: one line per headline case, Sabot beside the best peer.

Written at the top of summary.md and, alone, as readme_snippet.md (what the README's
"Performance" section shows), so the short table is the suite's output too.
"""

from __future__ import annotations

from typing import Any

Row = dict[str, Any]

# (benchmark, substrings the case must contain, substrings it must not, metric, label)
HEADLINES: tuple[tuple[str, tuple[str, ...], tuple[str, ...], str, str], ...] = (
    ("per_item", ("(list)",), (), "items/s", "`square` per item, 2M ints in a list"),
    ("per_item", ("(numpy",), (), "items/s", "`square` per item, 2M ints in numpy"),
    ("cost_sweep", ("cost=100us",), (), "items/s", "100 µs of CPU per item"),
    ("cost_sweep", ("cost=1000us",), (), "items/s", "1 ms of CPU per item"),
    ("columnar", ("threads=1",), ("group",), "rows/s", "`sum(b*2+1) where a%7=3`, 1 thread"),
    ("columnar", ("threads=2",), ("group",), "rows/s", "`sum(b*2+1) where a%7=3`, 2 threads"),
    ("columnar", ("group", "threads=2"), (), "rows/s", "the same grouped by `a%10`, 2 threads"),
    ("cluster", ("small job",), (), "latency p50 (ms)", "cluster: 10-item job, p50 latency"),
    ("cluster", ("one-item morsels",), (), "morsels/s", "cluster: one-item morsels per second"),
    ("cluster", ("square",), (), "items/s", "cluster: `square` job on 2 workers"),
    ("streaming", ("",), (), "items/s", "streaming from a generator"),
    ("streaming", ("",), (), "peak RSS (MB)", "streaming: peak memory"),
)


def _fmt(v: float, metric: str) -> str:
    unit = metric if "(" not in metric else metric.split("(")[-1].rstrip(")")
    if v >= 1e6:
        text = f"{v / 1e6:.2f} M"
    elif v >= 1e4:
        text = f"{v / 1e3:.1f} k"
    elif v >= 100:
        text = f"{v:.0f}"
    else:
        text = f"{v:.3g}"
    return f"{text} {unit}"


def lines(rows: list[Row]) -> list[tuple[str, str, str, str]]:
    """(label, Sabot, best peer, ratio) for every headline this run has."""
    ok = [r for r in rows if r.get("status") == "ok" and r.get("median") is not None]
    out = []
    for bench, must, must_not, metric, label in HEADLINES:
        cases = [r["case"] for r in ok if r["benchmark"] == bench and r["metric"] == metric
                 and r["engine"] == "sabot" and all(s in r["case"] for s in must)
                 and not any(s in r["case"] for s in must_not)]
        if not cases:
            continue
        case = cases[0]
        group = [r for r in ok if r["benchmark"] == bench and r["case"] == case
                 and r["metric"] == metric]
        sabot = next(r for r in group if r["engine"] == "sabot")
        peers = [r for r in group if not r["engine"].startswith("sabot")
                 and not r.get("scale_reference")]
        if not peers:
            continue
        higher = sabot.get("higher_is_better", True)
        best = max(peers, key=lambda r: r["median"]) if higher else \
            min(peers, key=lambda r: r["median"])
        ratio = sabot["median"] / best["median"] if higher else best["median"] / sabot["median"]
        out.append((label, _fmt(sabot["median"], metric),
                    f"{best['engine']}: {_fmt(best['median'], metric)}", f"{ratio:.2f}x"))
    return out


def markdown(rows: list[Row]) -> str:
    found = lines(rows)
    if not found:
        return ""
    md = ["| workload | Sabot | best other engine | Sabot vs best |", "|---|---:|---:|---:|"]
    md += [f"| {a} | {b} | {c} | {d} |" for a, b, c, d in found]
    return "\n".join(md)
