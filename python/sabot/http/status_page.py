"""The status page at ``GET /``: rendered on the server, then refreshed by ``static/status.js``.

Rendering the tables on the server means the page shows the nodes and jobs even without
JavaScript; the script only keeps them current. With SABOT_AUTH_TOKEN set the page is rendered
without data and the script asks for the token.
"""

from __future__ import annotations

import html
import string
import time
from importlib import resources
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..version import __version__

if TYPE_CHECKING:
    from .server import HttpApi

STATIC_DIR = Path(__file__).with_name("static")
_TEMPLATE = string.Template(
    resources.files(__package__).joinpath("templates/status.html").read_text(encoding="utf-8"))
REFRESH_MS = 2000


def _e(value: Any) -> str:
    return html.escape("" if value is None else str(value), quote=True)


def _pct(value: Any) -> str:
    return "–" if value is None else f"{float(value):.1f} %"


def _node_row(n: dict[str, Any]) -> str:
    status = _e(n.get("status"))
    return (f'<tr data-node-id="{_e(n.get("node_id"))}"><td>{_e(n.get("node_id"))}</td>'
            f'<td>{_e(n.get("role"))}</td><td class="status-{status}">{status}</td>'
            f'<td>{_e(n.get("address"))}</td><td>{_pct(n.get("utilization_percent"))}</td>'
            f'<td>{_e(n.get("queue_depth"))}</td></tr>')


def _job_row(j: dict[str, Any]) -> str:
    p = j.get("progress") or {}
    status = _e(j.get("status"))
    created = time.strftime("%H:%M:%S", time.localtime(j["created_at"])) \
        if j.get("created_at") else ""
    return (f'<tr data-job-id="{_e(j.get("job_id"))}"><td><code>{_e(str(j.get("job_id"))[:12])}'
            f'</code></td><td>{_e(j.get("processor"))}</td><td class="status-{status}">{status}'
            f'</td><td><progress max="1" value="{_e(p.get("fraction", 0))}"></progress> '
            f'{_e(p.get("done", 0))}/{_e(p.get("total", 0))}</td><td>{_e(j.get("items"))}</td>'
            f'<td>{created}</td><td class="error" title="{_e(j.get("error"))}">'
            f'{_e(j.get("error"))}</td></tr>')


def _pipeline_cells(p: dict[str, Any]) -> list[str]:
    """The cells of a pipeline's row (the script draws the same ones: status.js)."""
    wm = p.get("watermark")
    when = time.strftime("%H:%M:%S", time.gmtime(wm / 1000)) if isinstance(wm, int) and \
        0 < wm < 1 << 50 else "–"
    workers = ", ".join(sorted({str(t.get("worker")) for t in p.get("tasks") or []})) or "–"
    ck = (p.get("checkpoints") or {}).get("committed")
    return [str(p.get("pipeline_id")), str(p.get("name")), str(p.get("state")),
            str(p.get("instances")), workers, f"{int(p.get('events') or 0):,}", when,
            "–" if not ck else str(ck), str(p.get("error") or "")]


def _pipeline_row(p: dict[str, Any]) -> str:
    cells = _pipeline_cells(p)
    state = _e(cells[2])
    return (f'<tr data-pipeline-id="{_e(cells[0])}"><td><code>{_e(cells[0])}</code></td>'
            f'<td>{_e(cells[1])}</td><td class="status-{state}">{state}</td>'
            + "".join(f"<td>{_e(c)}</td>" for c in cells[3:8])
            + f'<td class="error" title="{_e(cells[8])}">{_e(cells[8])}</td></tr>')


def _points(samples: list[tuple[float, float, int]]) -> str:
    if not samples:
        return ""
    top = max(1.0, max(v for _, v, _ in samples))
    t0, t1 = samples[0][0], samples[-1][0]
    span = max(1.0, t1 - t0)
    return " ".join(f"{(t - t0) / span * 600:.1f},{118 - v / top * 112:.1f}"
                    for t, v, _ in samples)


def render_status_page(api: HttpApi, *, with_data: bool) -> str:
    backend = api.backend
    values: dict[str, Any] = {
        "cluster_name": _e(api.config.cluster_name), "node_id": _e(backend.node_id),
        "role": _e(backend.role), "version": _e(__version__), "refresh_ms": REFRESH_MS,
        "auth": "required" if not with_data else "none",
        "rendered_at": _e(time.strftime("%H:%M:%S")),
        "throughput": "", "queue_depth": "–", "utilization": "–", "history_points": "",
        "node_count": "?", "node_rows": "", "job_count": "?", "job_rows": "",
        "pipeline_count": "0", "pipeline_rows": "",
        "pipelines_hidden": "" if hasattr(backend, "pipelines") else " hidden",
    }
    if with_data:
        load = api.metrics.refresh()
        nodes = api.node_list()
        jobs = list(backend.list_jobs(limit=50))
        values.update(
            throughput=_e(f"{load.get('throughput', 0.0):,.1f} items/s"),
            queue_depth=_e(load.get("queue_depth", "–")),
            utilization=_pct(load.get("utilization_percent")),
            history_points=_points(list(api.history)),
            node_count=len(nodes), node_rows="".join(_node_row(n) for n in nodes),
            job_count=len(jobs), job_rows="".join(_job_row(j) for j in jobs),
        )
        lister = getattr(backend, "pipelines", None)
        if lister is not None:
            pipelines = list(lister())
            values.update(pipeline_count=len(pipelines),
                          pipeline_rows="".join(_pipeline_row(p) for p in pipelines))
    return _TEMPLATE.substitute(values)


__all__ = ["STATIC_DIR", "render_status_page"]
