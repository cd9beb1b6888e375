"""The README's "Distributed Stream Processing", as a script.

    COORDINATOR_HOST=coordinator.example.com COORDINATOR_PORT=8080 \
        python examples/distributed_stream.py

``sabot.create_distributed_coordinator()`` with no arguments talks to COORDINATOR_HOST and
COORDINATOR_PORT. When COORDINATOR_HOST is not set, the script starts a throw-away local
cluster first. It gets the results whole (with a timeout) and then streams them item by item,
which holds one morsel at a time instead of the whole result.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import os
import sys
from pathlib import Path

import sabot

sys.path.insert(0, str(Path(__file__).resolve().parent))


def expensive_processing_function(record: str) -> str:
    """A little CPU per item; defined in __main__, so it travels with the job."""
    digest = record.encode()
    for _ in range(20):
        digest = hashlib.sha256(digest).digest()
    return digest.hex()[:16]


async def main(items: int) -> None:
    async with contextlib.AsyncExitStack() as stack:
        if "COORDINATOR_HOST" in os.environ:
            # Connect to cluster
            coordinator = sabot.create_distributed_coordinator()
        else:
            from _local_cluster import LocalCluster

            local = await stack.enter_async_context(LocalCluster(workers=2))
            coordinator = sabot.create_distributed_coordinator(*local.coordinator.address,
                                                               config=local.config)
        stack.push_async_callback(coordinator.stop)

        large_dataset = [f"event-{i}" for i in range(items)]
        # Submit distributed job
        job_id = await sabot.submit_distributed_job(
            coordinator,
            large_dataset,
            expensive_processing_function,
        )
        # Get results with timeout
        results = await sabot.get_distributed_job_result(coordinator, job_id, timeout=60)
        print(f"Distributed processing completed: {len(results)} results")

        # The same job's results again, streamed in order without holding them all.
        count = 0
        async for digest in sabot.stream_distributed_job_result(coordinator, job_id):
            assert digest == results[count]
            count += 1
        print(f"Streamed {count} results in order")


if __name__ == "__main__":
    asyncio.run(main(int(sys.argv[1]) if len(sys.argv) > 1 else 20_000))
