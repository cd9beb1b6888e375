"""The targets the project set itself (in its issues), checked against one run's rows.

Each target reads the rows of a run and gives (what, measured, met) lines for the summary; a target
whose rows are missing (a peer not installed, a quick run) says so instead of passing.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

Row = dict[str, Any]
Line = tuple[str, str, str]  # target, measured, verdict


def _ok(rows: list[Row]) -> list[Row]:
    return [r for r in rows if r.get("status") == "ok" and r.get("median") is not None]


def _find(rows: list[Row], bench: str, engine: str, metric: str, case: str) -> Row | None:
    for r in rows:
        if (r["benchmark"] == bench and r["engine"] == engine and r["metric"] == metric
                and r["case"] == case):
            return r
    return None


def _verdict(met: bool | None) -> str:
    return "not measured" if met is None else ("met" if met else "**missed**")


def _ratio_target(rows: list[Row], bench: str, metric: str, peer: str, factor: float,
                  label: str) -> Iterator[Line]:
    """Sabot at least ``factor`` times the peer on ``metric``, in every case that has both."""
    cases = [r["case"] for r in rows if r["benchmark"] == bench and r["engine"] == peer
             and r["metric"] == metric]
    if not cases:
        yield (f"{bench}: {label}", "no run of " + peer, _verdict(None))
        return
    for case in cases:
        s = _find(rows, bench, "sabot", metric, case)
        p = _find(rows, bench, peer, metric, case)
        if s is None or p is None:
            yield (f"{bench} / {case}: {label}", "no Sabot figure", _verdict(None))
            continue
        ratio = s["median"] / p["median"] if s.get("higher_is_better", True) else \
            p["median"] / s["median"]
        yield (f"{bench} / {case}: {label}", f"{ratio:.2f}x", _verdict(ratio >= factor))


def _per_item(rows: list[Row]) -> Iterator[Line]:
    list_rows = [r for r in rows if r["benchmark"] == "per_item" and "(list)" in r["case"]]
    yield from _ratio_target(list_rows, "per_item", "items/s", "list comprehension", 0.9,
                             ">= 0.9x the list comprehension")
    yield from _ratio_target(list_rows, "per_item", "items/s", "ray", 2.0, ">= 2x Ray")


def _cost_sweep(rows: list[Row]) -> Iterator[Line]:
    cases = list(dict.fromkeys(r["case"] for r in rows if r["benchmark"] == "cost_sweep"))
    for case in cases:
        s = _find(rows, "cost_sweep", "sabot", "items/s", case)
        peers = [_find(rows, "cost_sweep", e, "items/s", case)
                 for e in ("list comprehension", "multiprocessing.Pool")]
        peers = [p for p in peers if p is not None]
        label = f"cost_sweep / {case}: >= 0.9x the best of serial and Pool"
        if s is None or not peers:
            yield (label, "no figure", _verdict(None))
            continue
        best = max(p["median"] for p in peers)
        yield (label, f"{s['median'] / best:.2f}x", _verdict(s["median"] / best >= 0.9))


def _columnar(rows: list[Row]) -> Iterator[Line]:
    yield from _ratio_target([r for r in rows if r["benchmark"] == "columnar"], "columnar",
                             "rows/s", "duckdb", 1.2, ">= 1.2x DuckDB at equal threads")


def _absolute(rows: list[Row], bench: str, metric: str, limit: float, below: bool,
              label: str) -> Iterator[Line]:
    found = [r for r in rows if r["benchmark"] == bench and r["engine"] == "sabot"
             and r["metric"] == metric]
    if not found:
        yield (f"{bench}: {label}", "no Sabot figure", _verdict(None))
    for r in found:
        v = r["median"]
        unit = r["metric"].split("(")[-1].rstrip(")") if "(" in r["metric"] else r["metric"]
        yield (f"{bench} / {r['case']}: {label}", f"{v:,.4g} {unit}",
               _verdict(v <= limit if below else v >= limit))


def _scheduler(rows: list[Row]) -> Iterator[Line]:
    yield from _absolute(rows, "scheduler", "per-morsel overhead (ns)", 2000, True, "< 2 us")


def _cluster(rows: list[Row]) -> Iterator[Line]:
    yield from _absolute(rows, "cluster", "latency p50 (ms)", 0.3, True, "p50 <= 0.3 ms")
    # What the target is up against on this machine: the same hops with no work in them.
    for r in rows:
        if (r["benchmark"] == "cluster" and r["engine"] == "zeromq relay (floor)"
                and r["metric"] == "latency p50 (ms)"):
            yield (f"cluster / {r['case']}: the hops alone (a hand-written ZeroMQ relay)",
                   f"{r['median']:,.4g} ms", "reference")
    yield from _absolute(rows, "cluster", "morsels/s", 20_000, False, ">= 20,000 morsels/s")
    # Issue #19 (the data plane): the latency within 2x (p50) and 3x (p99) of the bare relay,
    # and the bulk job at 1.5x Ray, in the same run.
    relay = "zeromq relay (floor)"
    for metric, factor in (("latency p50 (ms)", 2.0), ("latency p99 (ms)", 3.0)):
        for r in rows:
            if r["benchmark"] != "cluster" or r["engine"] != relay or r["metric"] != metric:
                continue
            s = _find(rows, "cluster", "sabot", metric, r["case"])
            label = f"cluster / {r['case']}: {metric.split()[1]} <= {factor:g}x the relay's"
            if s is None:
                yield (label, "no Sabot figure", _verdict(None))
                continue
            times = s["median"] / r["median"]
            yield (label, f"{times:.2f}x", _verdict(times <= factor))
    # (the data-plane issue's target is the 10M-item square job; the numpy case has none)
    bulk = [r for r in rows if r["benchmark"] == "cluster" and r["metric"] == "items/s"
            and r["case"].startswith("square ")]
    yield from _ratio_target(bulk, "cluster", "items/s", "ray", 1.5, ">= 1.5x Ray")


def _nexmark(rows: list[Row]) -> Iterator[Line]:
    """Issue #21: per core, checkpointed Sabot >= 3x checkpointed Flink; Sabot >= 10x Quix
    Streams, Bytewax and Pathway."""
    bench, metric = "streaming_nexmark", "events/s per core"
    pairs = (("sabot, checkpoints 10s", "flink p=1, checkpoints 10s", 3.0),
             ("sabot", "bytewax", 10.0), ("sabot", "pathway", 10.0),
             ("sabot", "quix streams", 10.0))
    for sabot, peer, factor in pairs:
        label = f">= {factor:g}x {peer} per core" + (" (both checkpointed)" if "check" in peer else "")
        cases = [r["case"] for r in rows if r["benchmark"] == bench and r["engine"] == peer
                 and r["metric"] == metric]
        if not cases:
            yield (f"{bench}: {label}", f"no run of {peer}", _verdict(None))
        for case in cases:
            s = _find(rows, bench, sabot, metric, case)
            p = _find(rows, bench, peer, metric, case)
            if s is None or p is None:
                continue
            ratio = s["median"] / p["median"]
            yield (f"{bench} / {case}: {label}", f"{ratio:.2f}x", _verdict(ratio >= factor))


TARGETS: tuple[Callable[[list[Row]], Iterator[Line]], ...] = (
    _per_item, _cost_sweep, _columnar, _scheduler, _cluster, _nexmark)


def check(rows: list[Row]) -> list[Line]:
    ok = _ok(rows)
    present = {r["benchmark"] for r in rows}
    out: list[Line] = []
    for target in TARGETS:
        for line in target(ok):
            if line[0].split(" ")[0].rstrip(":") in present:
                out.append(line)
    return out


def markdown(rows: list[Row]) -> str:
    lines = check(rows)
    if not lines:
        return ""
    md = ["| target (from the project's issues) | measured | verdict |", "|---|---:|---|"]
    md += [f"| {t} | {m} | {v} |" for t, m, v in lines]
    return "\n".join(md)
