"""The README's single-node snippet, runnable: an ``async def`` per-item function over a dataset.

Run: ``python examples/single_node.py [items | --quick]``  (SABOT_MODE=single-node is optional: it is the
auto-detected mode when COORDINATOR_HOST is not set.)
"""

import asyncio
import hashlib
import sys

import sabot


def expensive_computation(item: int) -> str:
    """Some real work per item: 200 rounds of SHA-256 over the item's bytes."""
    digest = str(item).encode()
    for _ in range(200):
        digest = hashlib.sha256(digest).digest()
    return digest.hex()[:16]


async def main(n: int) -> None:
    # Auto-detects single-node mode
    launcher = sabot.create_composable_launcher()
    await launcher.start()

    large_dataset = list(range(n))

    # Process data with automatic parallelization
    async def process_item(item):
        return expensive_computation(item)

    results = await launcher.process_data(large_dataset, process_item)

    # The same work as a plain def: the adaptive controller may run it on worker processes.
    again = await launcher.process_data(large_dataset, expensive_computation)
    assert again == results

    stats = launcher.get_stats()
    ctl = stats["controller"]
    print(f"mode: {stats['mode']} ({stats['mode_reason']})")
    print(f"processed {len(results):,} items twice; first result {results[0]}")
    print(f"last call: {ctl['executor']} with {ctl['workers']} worker(s): {ctl['reason']}")
    print(f"Cython available: {stats.get('cython_optimization', False)}")
    await launcher.stop()


if __name__ == "__main__":
    arg = sys.argv[1] if len(sys.argv) > 1 else ""
    asyncio.run(main(2_000 if arg == "--quick" else int(arg) if arg else 20_000))
