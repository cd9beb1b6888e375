"""Sabot's side of ``streaming_nexmark``: the queries of ``sabot.stream.nexmark.queries`` over
the event files, read with ``env.from_files`` (JSON lines, event time ``date_time``), into a
``to_callable`` sink that keeps the output batches."""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

SKIP: dict[str, str] = {}


def availability() -> tuple[bool, str]:
    try:
        import sabot
        import sabot.stream  # noqa: F401
    except Exception as exc:  # noqa: BLE001 - reported as the row's status
        return False, f"import sabot.stream failed: {exc.__class__.__name__}: {exc}"
    return True, getattr(sabot, "__version__", "unknown")


def version() -> str:
    return availability()[1]


class _Streams:
    """What the query functions read: ``.persons``, ``.auctions``, ``.bids`` from the files."""

    def __init__(self, env: Any, files: dict[str, Path]) -> None:
        from sabot.stream.nexmark.generator import GeneratorConfig

        self._env, self._files, self._made = env, files, {}
        self.max_auction_length_ms = GeneratorConfig().max_auction_length_ms

    def _stream(self, kind: str) -> Any:
        from sabot import stream as st

        if kind not in self._made:
            self._made[kind] = self._env.from_files(
                str(self._files[kind]), format="jsonl", timestamp="date_time",
                timestamp_unit="ms", watermark=st.bounded_out_of_orderness(0))
        return self._made[kind]

    persons = property(lambda self: self._stream("person"))
    auctions = property(lambda self: self._stream("auction"))
    bids = property(lambda self: self._stream("bid"))


class Runner:
    def __init__(self, parallelism: int, checkpoint_s: float | None, workdir: Path) -> None:
        self.parallelism, self.checkpoint_s, self.workdir = parallelism, checkpoint_s, workdir
        self.info: dict[str, Any] = {}

    def run(self, query: str, files: dict[str, Path]) -> Any:
        from sabot import stream as st
        from sabot.stream.nexmark.queries import QUERIES

        state = self.workdir / "sabot-state"
        shutil.rmtree(state, ignore_errors=True)
        kw: dict[str, Any] = {"parallelism": self.parallelism}
        if self.checkpoint_s:
            kw.update(checkpoint_interval=f"{self.checkpoint_s}s", state_dir=str(state))
        env = st.StreamEnv(**kw)
        batches: list[Any] = []
        QUERIES[query](_Streams(env, files)).to_callable(batches.append)
        res = env.execute(f"nexmark-{query}")
        ck = env.get_stats().get("checkpoints") or {}
        self.info = {"events": res.events, "checkpoints": ck.get("count", 0)}
        return lambda: _final(query, batches)

    def close(self) -> None:
        shutil.rmtree(self.workdir / "sabot-state", ignore_errors=True)


def _final(query: str, batches: list[Any]) -> Any:
    import pyarrow as pa

    rows = pa.Table.from_batches(batches).to_pylist() if batches else []
    if query == "q4":  # an updating result: the last row per category is the answer
        last = {r["category"]: r for r in rows}
        rows = list(last.values())
    return rows


def start(parallelism: int, checkpoint_s: float | None, workdir: Path) -> Runner:
    return Runner(parallelism, checkpoint_s, workdir)
