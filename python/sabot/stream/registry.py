"""Named pipelines: what ``POST /submit_pipeline`` may run.

A module named in SABOT_PROCESSORS (imported by the coordinator at its start, like the named
processors) registers pipelines::

    from sabot import stream as st

    @st.pipeline("hot-items")
    def hot_items(env, events=1_000_000):
        return nexmark_q5(env.nexmark(events))   # a DataStream: collected; or add sinks

The HTTP API never runs code a client sent: a request names a registered pipeline and gives
JSON parameters; the coordinator calls the function with a StreamEnv and the parameters, and
runs the graph it built on the workers as any ``StreamEnv(cluster=...)`` job.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from ..errors import ConfigError

_PIPELINES: dict[str, Callable[..., Any]] = {}


def pipeline(name: str) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """Register ``fn(env, **params)`` under ``name`` (it returns a DataStream to collect, or
    adds sinks of its own and returns None)."""
    if not isinstance(name, str) or not name or len(name) > 128:
        raise ConfigError("pipeline(name)", name, "a name of 1 to 128 characters")

    def deco(fn: Callable[..., Any]) -> Callable[..., Any]:
        _PIPELINES[name] = fn
        return fn

    return deco


def get_pipeline(name: str) -> Callable[..., Any]:
    fn = _PIPELINES.get(name)
    if fn is None:
        known = ", ".join(sorted(_PIPELINES)) or "none: register one with @st.pipeline(name) " \
            "in a module of SABOT_PROCESSORS"
        raise KeyError(f"no pipeline named {name!r} (registered: {known})")
    return fn


def build(name: str, params: dict[str, Any], *, state_dir: str | None = None,
          checkpoint_interval: str | None = None) -> tuple[bytes, dict[str, Any] | None, str | None]:
    """The named pipeline built with ``params``: its cloudpickled graph, its checkpoint
    settings and the label of the sink collecting what it returned (None: it returned none)."""
    from .env import StreamEnv
    from .stream import DataStream

    fn = get_pipeline(name)
    env = StreamEnv(state_dir=state_dir, checkpoint_interval=checkpoint_interval)
    try:
        out = fn(env, **params)
    except TypeError as exc:
        raise ConfigError("params", params, f"the parameters pipeline {name!r} takes ({exc})") \
            from exc
    collect = out if isinstance(out, DataStream) else None
    graph, label = env.cluster_graph(name, collect)
    return graph, env.cluster_checkpoint(), label
