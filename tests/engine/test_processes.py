"""The process pool: a cancelled call stops its running tasks for real, and no pool process
outlives the process that started it."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import textwrap
import time

import psutil

from sabot.config import load_config
from sabot.engine.local_engine import LocalEngine

#: Generous: what it waits for happens in well under a second when it works.
DEADLINE_S = 60.0


def _hang(x: int) -> int:
    time.sleep(3600)
    return x


def _double(x: int) -> int:
    return 2 * x


def _gone(pid: int) -> bool:
    try:
        return psutil.Process(pid).status() == psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return True


def _wait_gone(pids: list[int]) -> None:
    deadline = time.monotonic() + DEADLINE_S
    while not all(_gone(p) for p in pids):
        assert time.monotonic() < deadline, [p for p in pids if not _gone(p)]
        time.sleep(0.05)


def test_cancelled_call_kills_the_processes_running_it_and_the_pool_serves_on() -> None:
    config = load_config(env={}, max_workers=2)

    async def main() -> tuple[list[int], list[int], list[int]]:
        engine = LocalEngine(config, isolate=True)
        try:
            call = asyncio.ensure_future(engine.process(list(range(8)), _hang))
            deadline = time.monotonic() + DEADLINE_S
            while engine.runtime.pool is None or engine.runtime.pool.busy_workers() < 2:
                assert time.monotonic() < deadline, engine.get_stats()["controller"]
                await asyncio.sleep(0.05)
            busy = engine.runtime.pool.pids()
            call.cancel()
            await asyncio.gather(call, return_exceptions=True)
            await asyncio.to_thread(_wait_gone, busy)
            out = await asyncio.wait_for(engine.process(list(range(100)), _double), DEADLINE_S)
            assert out == [2 * x for x in range(100)]
            return busy, engine.runtime.pool.pids(), [engine.runtime.pool.workers_killed_on_cancel]
        finally:
            await engine.close()

    busy, after, killed = asyncio.run(main())
    assert after and not set(after) & set(busy), (busy, after)
    assert killed[0] >= 2


def test_pool_processes_die_with_their_parent_on_sigkill(tmp_path) -> None:  # type: ignore[no-untyped-def]
    # A parent that starts a pool busy in a hanging function, prints its children's pids and
    # waits to be killed.
    code = textwrap.dedent(f"""
        import asyncio, sys, time
        sys.path.insert(0, {os.path.dirname(__file__)!r})
        from sabot.config import load_config
        from sabot.engine.local_engine import LocalEngine
        import test_processes as t

        async def main():
            engine = LocalEngine(load_config(env={{}}, max_workers=2), isolate=True)
            call = asyncio.ensure_future(engine.process(list(range(8)), t._hang))
            while engine.runtime.pool is None or engine.runtime.pool.busy_workers() < 2:
                await asyncio.sleep(0.05)
            print(" ".join(map(str, engine.runtime.pool.pids())), flush=True)
            await call

        asyncio.run(main())
    """)
    parent = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True)
    try:
        assert parent.stdout is not None
        line = parent.stdout.readline()
        children = [int(p) for p in line.split()]
        assert len(children) >= 2, line
        assert all(not _gone(p) for p in children)
        os.kill(parent.pid, signal.SIGKILL)
        parent.wait(DEADLINE_S)
        _wait_gone(children)
    finally:
        if parent.poll() is None:
            parent.kill()
            parent.wait()
        if parent.stdout is not None:
            parent.stdout.close()
