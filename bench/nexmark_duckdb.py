"""The oracle of ``streaming_nexmark``: DuckDB over the whole event files (a batch engine, so
its figure is shown for scale, not as a competitor). Its SQL is Sabot's own batch definition of
each query (``sabot.stream.nexmark.queries.SQL``), over tables read with ``read_json``."""

from __future__ import annotations

from pathlib import Path
from typing import Any

SKIP: dict[str, str] = {}


def availability() -> tuple[bool, str]:
    try:
        import duckdb
    except ImportError:
        return False, "duckdb is not installed (pip install .[bench-stream])"
    return True, duckdb.__version__


def version() -> str:
    return availability()[1]


class Runner:
    def __init__(self, parallelism: int, workdir: Path) -> None:
        self.parallelism = parallelism
        self.info: dict[str, Any] = {}

    def run(self, query: str, files: dict[str, Path]) -> Any:
        import duckdb
        from sabot.stream.nexmark.queries import SQL

        con = duckdb.connect()
        try:
            con.execute(f"SET threads = {int(self.parallelism)}")
            for kind, path in files.items():
                con.execute(f"CREATE TABLE {kind} AS SELECT * FROM read_json('{path}', "
                            "format = 'newline_delimited')")
            out = con.sql(SQL[query]).to_arrow_table()
        finally:
            con.close()
        return out

    def close(self) -> None:
        pass


def start(parallelism: int, checkpoint_s: float | None, workdir: Path) -> Runner:
    return Runner(parallelism, workdir)
