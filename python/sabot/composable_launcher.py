"""``python -m sabot.composable_launcher``: run a Sabot node as a daemon.

The mode and every setting come from the environment (SABOT_MODE, SABOT_PORT, ...; see
docs/api.md). The node serves until SIGTERM or Ctrl-C, stops cleanly and exits 0; a wrong
setting exits 2 with a message naming the variable and what it accepts; a node that cannot start
(refused by its coordinator: another CLUSTER_NAME, protocol version or cluster key) exits 1 with
one line saying why.
"""

from __future__ import annotations

import asyncio
import sys

from .errors import ConfigError, SabotError


def main() -> int:
    from .config import load_config
    from .launcher import launch_sabot

    try:
        config = load_config()
        asyncio.run(launch_sabot(config))
    except ConfigError as exc:
        print(f"sabot: configuration error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:  # a second Ctrl-C while stopping
        return 130
    except SabotError as exc:  # refused by the coordinator, a failed start: one line, no trace
        message = str(exc).strip()
        print(f"sabot: error: {message.splitlines()[0] if message else type(exc).__name__}",
              file=sys.stderr)
        return 1
    except OSError as exc:
        print(f"sabot: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
