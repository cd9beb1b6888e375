"""Plots for the report (matplotlib PNGs), drawn from the rows of one run.

matplotlib is imported only here, and only when plotting; without it the suite still writes the
raw results and the summary.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

OK = "ok"
SABOT_COLOR = "#d62728"
PEER_COLORS = ["#1f77b4", "#2ca02c", "#9467bd", "#8c564b", "#e377c2", "#7f7f7f", "#bcbd22",
               "#17becf", "#ff7f0e"]


def _plt() -> Any:
    import matplotlib

    matplotlib.use("Agg")  # files only, never a window
    import matplotlib.pyplot as plt

    return plt


def _colors(engines: list[str]) -> dict[str, str]:
    out: dict[str, str] = {}
    peers = iter(PEER_COLORS * 3)
    for e in engines:
        out[e] = SABOT_COLOR if e.lower().startswith("sabot") else next(peers)
    return out


def _is_rate(metric: str) -> bool:
    return "/s" in metric


def plot_all(rows: list[dict[str, Any]], out_dir: Path) -> list[str]:
    """Draw every plot the rows allow; returns the file names written."""
    plt = _plt()
    ok = [r for r in rows if r["status"] == OK and r.get("samples")]
    written: list[str] = []
    benchmarks = list(dict.fromkeys(r["benchmark"] for r in ok))
    for bench in benchmarks:
        if bench in ("cost_sweep", "streaming_nexmark"):
            continue
        name = _throughput(plt, [r for r in ok if r["benchmark"] == bench], bench, out_dir)
        if name:
            written.append(name)
    for fn in (_cost_sweep, _latency, _thread_scaling, _rss_trace, _nexmark):
        name = fn(plt, ok, out_dir)
        if name:
            written.append(name)
    return written


def _throughput(plt: Any, rows: list[dict[str, Any]], bench: str, out_dir: Path) -> str | None:
    """Per metric, a grouped horizontal bar chart: one group per case, one bar per engine
    (median, with min-max whiskers)."""
    rate_rows = [r for r in rows if _is_rate(r["metric"])]
    if not rate_rows:
        return None
    metrics = list(dict.fromkeys(r["metric"] for r in rate_rows))
    heights = []
    for metric in metrics:
        sel = [r for r in rate_rows if r["metric"] == metric]
        heights.append(1.0 + 0.3 * len(sel) + 0.4 * len({r["case"] for r in sel}))
    fig, axes = plt.subplots(len(metrics), 1, figsize=(9, sum(heights) + 0.6), squeeze=False,
                             gridspec_kw={"height_ratios": heights})
    for ax, metric in zip(axes[:, 0], metrics):
        sel = [r for r in rate_rows if r["metric"] == metric]
        cases = list(dict.fromkeys(r["case"] for r in sel))
        colors = _colors(list(dict.fromkeys(r["engine"] for r in sel)))
        y = 0.0
        ticks, labels = [], []
        for case in cases:
            group = [r for r in sel if r["case"] == case]
            if len(cases) > 1:  # the case names its group of bars
                ax.text(0, y - 0.1, case, fontsize=8, fontweight="bold", va="bottom",
                        transform=ax.get_yaxis_transform())
                y += 0.9
            for r in group:
                ax.barh(y, r["median"], height=0.8, color=colors[r["engine"]],
                        xerr=[[r["median"] - r["min"]], [r["max"] - r["median"]]], capsize=2)
                ticks.append(y)
                labels.append(r["engine"])
                y += 1
            y += 0.4  # a gap between cases
        ax.set_yticks(ticks)
        ax.set_yticklabels(labels, fontsize=8)
        ax.invert_yaxis()
        ax.set_xlabel(metric)
        ax.set_title(f"{bench}: {metric}" + (f" ({cases[0]})" if len(cases) == 1 else ""),
                     fontsize=10)
        ax.grid(axis="x", alpha=0.3)
    fig.tight_layout()
    name = f"throughput_{bench}.png"
    fig.savefig(out_dir / name, dpi=110)
    plt.close(fig)
    return name


def _cost_sweep(plt: Any, rows: list[dict[str, Any]], out_dir: Path) -> str | None:
    """items/s per engine against the CPU cost of one item (log scale)."""
    sel = [r for r in rows if r["benchmark"] == "cost_sweep" and _is_rate(r["metric"])
           and "cost_us" in (r.get("params") or {})]
    if not sel:
        return None
    costs = sorted({float(r["params"]["cost_us"]) for r in sel})
    engines = list(dict.fromkeys(r["engine"] for r in sel))
    colors = _colors(engines)
    fig, ax = plt.subplots(figsize=(7, 4.5))
    for e in engines:
        pts = sorted((costs.index(float(r["params"]["cost_us"])), r["median"], r["min"], r["max"])
                     for r in sel if r["engine"] == e)
        xs = [p[0] for p in pts]
        ax.plot(xs, [p[1] for p in pts], marker="o", label=e, color=colors[e],
                linewidth=2.5 if e.lower().startswith("sabot") else 1.2)
        ax.fill_between(xs, [p[2] for p in pts], [p[3] for p in pts], color=colors[e], alpha=0.12)
    ax.set_xticks(range(len(costs)))
    ax.set_xticklabels([f"{c:g} us" for c in costs])
    ax.set_yscale("log")
    ax.set_xlabel("CPU cost of one item (busy-wait)")
    ax.set_ylabel("items/s (log)")
    ax.set_title("cost sweep: throughput against per-item cost")
    ax.grid(alpha=0.3, which="both")
    ax.legend(fontsize=8)
    fig.tight_layout()
    name = "cost_sweep.png"
    fig.savefig(out_dir / name, dpi=110)
    plt.close(fig)
    return name


def _latency(plt: Any, rows: list[dict[str, Any]], out_dir: Path) -> str | None:
    """Latency distributions (every single request) as CDFs, one panel per benchmark case."""
    sel = [r for r in rows if r.get("distribution")]
    if not sel:
        return None
    cases = list(dict.fromkeys((r["benchmark"], r["case"]) for r in sel))
    fig, axes = plt.subplots(1, len(cases), figsize=(6 * len(cases), 4), squeeze=False)
    for ax, (bench, case) in zip(axes[0], cases):
        group = [r for r in sel if (r["benchmark"], r["case"]) == (bench, case)]
        colors = _colors([r["engine"] for r in group])
        for r in group:
            xs = sorted(float(x) for x in r["distribution"])
            ys = [(i + 1) / len(xs) for i in range(len(xs))]
            ax.plot(xs, ys, label=f"{r['engine']} (n={len(xs)})", color=colors[r["engine"]])
        ax.set_xscale("log")
        ax.set_xlabel(group[0]["metric"].split(" (")[-1].rstrip(")") if "(" in group[0]["metric"]
                      else "value")
        ax.set_ylabel("fraction of requests")
        ax.set_title(f"{bench}: {case}", fontsize=10)
        ax.grid(alpha=0.3, which="both")
        ax.legend(fontsize=8)
    fig.tight_layout()
    name = "latency.png"
    fig.savefig(out_dir / name, dpi=110)
    plt.close(fig)
    return name


def _case_stem(case: str) -> str:
    """The case name without its thread count, so one series spans every count."""
    stem = re.sub(r"[,;]?\s*threads\s*=\s*\d+", "", case)
    return re.sub(r"\s+", " ", stem).strip(" ,;")


def _thread_scaling(plt: Any, rows: list[dict[str, Any]], out_dir: Path) -> str | None:
    """Throughput against thread count, where a benchmark measured more than one count."""
    def threads_of(r: dict[str, Any]) -> int | None:
        t = (r.get("params") or {}).get("threads")
        return int(t) if isinstance(t, (int, float)) and not isinstance(t, bool) else None

    sel = [r for r in rows if _is_rate(r["metric"]) and threads_of(r) is not None]
    series: dict[tuple[str, str, str, str], list[tuple[int, float]]] = {}
    for r in sel:
        key = (r["benchmark"], r["metric"], r["engine"], _case_stem(r["case"]))
        series.setdefault(key, []).append((threads_of(r), r["median"]))  # type: ignore[arg-type]
    series = {k: sorted(set(v)) for k, v in series.items() if len({t for t, _ in v}) > 1}
    if not series:
        return None
    panels = list(dict.fromkeys((b, m) for b, m, _, _ in series))
    fig, axes = plt.subplots(1, len(panels), figsize=(7 * len(panels), 4.8), squeeze=False)
    for ax, (bench, metric) in zip(axes[0], panels):
        keys = [k for k in series if (k[0], k[1]) == (bench, metric)]
        stems = list(dict.fromkeys(k[3] for k in keys))
        colors = _colors(list(dict.fromkeys(k[2] for k in keys)))
        styles = ["-", "--", ":", "-."]
        counts: set[int] = set()
        for k in keys:
            pts = series[k]
            counts |= {p[0] for p in pts}
            label = k[2] if len(stems) == 1 else f"{k[2]}: {k[3]}"
            ax.plot([p[0] for p in pts], [p[1] for p in pts], marker="o", label=label,
                    color=colors[k[2]] if len(stems) < 5 or not k[2].startswith("sabot")
                    else None,
                    linestyle=styles[stems.index(k[3]) % len(styles)],
                    linewidth=2.5 if k[2].lower().startswith("sabot") else 1.2)
        ax.set_xscale("log", base=2)
        ax.set_xticks(sorted(counts))
        ax.set_xticklabels([str(c) for c in sorted(counts)])
        ax.set_xlabel("threads")
        ax.set_ylabel(metric)
        ax.set_title(f"{bench}: thread scaling", fontsize=10)
        ax.grid(alpha=0.3, which="both")
        ax.legend(fontsize=6 if len(keys) > 8 else 8)
    fig.tight_layout()
    name = "thread_scaling.png"
    fig.savefig(out_dir / name, dpi=110)
    plt.close(fig)
    return name


def _rss_trace(plt: Any, rows: list[dict[str, Any]], out_dir: Path) -> str | None:
    """Memory (RSS of the engine's processes) over the run, for the streaming benchmark."""
    sel = [r for r in rows if r.get("trace")]
    if not sel:
        return None
    colors = _colors([r["engine"] for r in sel])
    fig, ax = plt.subplots(figsize=(7, 4))
    for r in sel:
        trace = r["trace"]
        ax.plot([t for t, _ in trace], [rss / 2**20 for _, rss in trace], label=r["engine"],
                color=colors[r["engine"]])
    ax.set_xlabel("seconds into the stream")
    ax.set_ylabel("RSS of the process tree (MB)")
    ax.set_title(f"streaming: memory over time ({sel[0]['case']})")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    name = "streaming_rss.png"
    fig.savefig(out_dir / name, dpi=110)
    plt.close(fig)
    return name


def _nexmark(plt: Any, rows: list[dict[str, Any]], out_dir: Path) -> str | None:
    """Nexmark: events/s per core per query, one bar per engine (log scale), and peak RSS."""
    sel = [r for r in rows if r["benchmark"] == "streaming_nexmark"
           and r["metric"] in ("events/s per core", "peak RSS (MB)")]
    if not sel:
        return None
    cases = list(dict.fromkeys(r["case"] for r in sel))
    engines = list(dict.fromkeys(r["engine"] for r in sel))
    colors = {e: plt.cm.tab20(i % 20) for i, e in enumerate(engines)}
    fig, axes = plt.subplots(2, 1, figsize=(12, 8.5), squeeze=False)
    width = 0.8 / max(1, len(engines))
    for ax, metric in zip(axes[:, 0], ("events/s per core", "peak RSS (MB)")):
        for j, engine in enumerate(engines):
            xs, ys = [], []
            for i, case in enumerate(cases):
                r = next((r for r in sel if r["case"] == case and r["engine"] == engine
                          and r["metric"] == metric), None)
                if r is not None:
                    xs.append(i + (j - (len(engines) - 1) / 2) * width)
                    ys.append(r["median"])
            ax.bar(xs, ys, width=width, color=colors[engine], label=engine)
        ax.set_xticks(range(len(cases)))
        ax.set_xticklabels([c.split(",")[0] for c in cases])
        ax.set_yscale("log")
        ax.set_ylabel(metric)
        ax.set_title(f"Nexmark ({cases[0].split(', ', 1)[-1]}): {metric}", fontsize=10)
        ax.grid(axis="y", alpha=0.3, which="both")
    axes[0, 0].legend(fontsize=7, ncol=4, loc="upper right")
    fig.tight_layout()
    name = "nexmark.png"
    fig.savefig(out_dir / name, dpi=110)
    plt.close(fig)
    return name
