"""Single-node demo of Sabot's adaptive ("DBOS") controller.

It runs four workloads through one launcher and prints what the controller decided for each
and why: a cheap per-item function (inline: shipping items to other processes would cost more
than computing them), an expensive one (worker processes), a numpy batch function (threads over
zero-copy morsels) and an Arrow compute expression (the native core). Then it streams an
endless generator with bounded memory, and prints the node's stats.

Run: ``python examples/simple_dbos_demo.py [--quick]``   (LOG_LEVEL=DEBUG shows every decision)
"""

import asyncio
import itertools
import json
import sys
import time

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import sabot


def square(x: int) -> int:
    return x * x


def collatz_steps(n: int) -> int:
    """Expensive enough per item that parallel processes pay off."""
    steps = 0
    n = n + 27
    for _ in range(3):
        m = n
        while m != 1:
            m = m // 2 if m % 2 == 0 else 3 * m + 1
            steps += 1
    return steps


async def timed(label: str, launcher, data, func) -> None:
    t = time.perf_counter()
    out = await launcher.process_data(data, func)
    dt = time.perf_counter() - t
    ctl = launcher.get_stats()["controller"]
    print(f"{label:<26} {len(out):>9,} items {len(out) / dt:>13,.0f} items/s  "
          f"-> {ctl['executor']} x{ctl['workers']}")
    print(f"{'':<26} why: {ctl['reason']}")


async def main(quick: bool) -> None:
    scale = 10 if quick else 1
    launcher = sabot.create_composable_launcher(mode="single-node")
    await launcher.start()
    print(f"Sabot {sabot.__version__}: {launcher.mode} mode ({launcher.mode_reason})\n")

    await timed("cheap per-item (square)", launcher, list(range(2_000_000 // scale)), square)
    await timed("expensive per-item", launcher, list(range(200_000 // scale)), collatz_steps)
    data = np.random.default_rng(0).random(4_000_000 // scale)
    await timed("numpy batch (np.sqrt)", launcher, data, sabot.batch(np.sqrt))
    table = pa.table({"price": pa.array(data), "qty": pa.array(np.arange(len(data)))})
    await timed("Arrow expression", launcher, table, pc.field("price") * pc.field("qty"))

    # An endless source: results arrive in order, with a bounded number of morsels in flight.
    total = 0
    async for value in launcher.process_stream(itertools.count(), square):
        total += 1
        if total == 100_000 // scale:
            break
    print(f"\nstreamed {total:,} results from an endless generator (last: {value})")

    stats = launcher.get_stats()
    print("\nstats:")
    print(json.dumps({k: stats[k] for k in ("mode", "items_processed", "morsels_processed",
                                            "errors", "cython_optimization")}, indent=2))
    print(json.dumps({"controller": {k: stats["controller"][k] for k in (
        "executor", "workers", "max_workers", "usable_cores", "target_utilization",
        "utilization", "pool_size")}}, indent=2))
    await launcher.stop()


if __name__ == "__main__":
    asyncio.run(main("--quick" in sys.argv[1:]))
