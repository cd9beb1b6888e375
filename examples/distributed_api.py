"""The README's "Using the Distributed API", as a script.

    python examples/distributed_api.py --host coordinator.example.com --port 8080

With no --host it starts a coordinator in this process and two worker processes first (a
throw-away local cluster), so it runs anywhere. The client needs the cluster's secret
(SABOT_CLUSTER_KEY or SABOT_CLUSTER_KEY_FILE), because the function below travels as code.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import math
import sys
from pathlib import Path

import sabot

sys.path.insert(0, str(Path(__file__).resolve().parent))


def process_function(x: int) -> float:
    """Defined in __main__: shipped to the workers by value (cloudpickle), no install needed."""
    return math.sqrt(x) * 2 + 1


async def main(host: str | None, port: int, items: int) -> None:
    async with contextlib.AsyncExitStack() as stack:
        if host is None:
            from _local_cluster import LocalCluster

            local = await stack.enter_async_context(LocalCluster(workers=2))
            host, port = local.coordinator.address
            config = local.config
        else:
            config = sabot.load_config()

        # Connect to cluster
        coordinator = sabot.create_distributed_coordinator(host, port, config=config)
        stack.push_async_callback(coordinator.stop)

        large_dataset = list(range(items))
        # Submit job
        job_id = await sabot.submit_distributed_job(coordinator, large_dataset, process_function)
        # Get results
        results = await sabot.get_distributed_job_result(coordinator, job_id, timeout=120)

        status = await sabot.get_distributed_job_status(coordinator, job_id)
        stats = coordinator.get_cluster_stats()
        assert results == [process_function(x) for x in large_dataset]
        print(f"job {job_id}: {status['status']}, {len(results)} results "
              f"(first {results[:3]}, last {results[-1]:.3f})")
        print(f"nodes: {[(n['node_id'], n['state'], n['morsels_done']) for n in stats['nodes']]}")
        print(f"jobs: {stats['jobs']['by_state']}; system: "
              f"{stats['system_resources']['usable_cores']} usable cores")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--host", help="coordinator host (default: start a local cluster)")
    parser.add_argument("--port", type=int, default=8080, help="coordinator HTTP port")
    parser.add_argument("--items", type=int, default=200_000)
    args = parser.parse_args()
    asyncio.run(main(args.host, args.port, args.items))
