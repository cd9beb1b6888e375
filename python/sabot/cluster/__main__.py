"""``python -m sabot.cluster coordinator|worker``: run one cluster node until SIGTERM/SIGINT.

The daemon entry points (``python -m sabot.composable_launcher``, ``sabot-node``) do the same
through the launcher; this one starts the node through the distributed API alone (no
launcher), which the tests and examples use to start nodes. As an entry point it sits at the
top layer, beside :mod:`sabot.distributed`, though it lives in this package.
"""

from __future__ import annotations

import asyncio
import logging
import signal
import sys

from ..config import load_config
from ..distributed import create_distributed_coordinator, create_worker_node
from ..errors import SabotError


async def _serve(role: str) -> int:
    config = load_config()
    logging.basicConfig(level=config.log_level_number,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    if role == "coordinator":
        node: object = create_distributed_coordinator(config=config)
    else:
        node = create_worker_node(config=config)
    try:
        await node.start()  # type: ignore[attr-defined]
    except SabotError as exc:
        print(f"sabot {role}: {exc}", file=sys.stderr, flush=True)
        return 2
    print(f"sabot {role} ready", flush=True)
    waiter = asyncio.ensure_future(stop.wait())
    closed = asyncio.ensure_future(node.wait_closed()) if role == "worker" else None  # type: ignore[attr-defined]
    await asyncio.wait([t for t in (waiter, closed) if t is not None],
                       return_when=asyncio.FIRST_COMPLETED)
    waiter.cancel()
    if closed is not None:
        closed.cancel()
    await node.stop()  # type: ignore[attr-defined]
    return 0


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if len(args) != 1 or args[0] not in ("coordinator", "worker"):
        print("usage: python -m sabot.cluster coordinator|worker", file=sys.stderr)
        return 2
    return asyncio.run(_serve(args[0]))


if __name__ == "__main__":
    sys.exit(main())
