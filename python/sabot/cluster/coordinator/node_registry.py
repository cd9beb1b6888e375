"""The coordinator's node registry: the workers it knows, their sessions, credits and states.

A worker says hello and is ``alive``; silent past SABOT_NODE_TIMEOUT_S it is ``dead`` (heard
from again, alive); after a goodbye it has ``left``. :meth:`NodeRegistry.move` is the only code
that changes a node's state (checked against :data:`sabot.states.NODE_TRANSITIONS`). The
registry never touches morsels: whoever marks a node dead or gone hands its morsels out again
(the dispatcher).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from ...config import Config
from ...metrics import Metrics
from ...processors import list_processors
from ...states import NodeState, check_node_transition
from ..protocol import PROTOCOL_VERSION, ErrorCode, ReplayGuard
from ..protocol import messages as m
from .outbox import Target

log = logging.getLogger(__name__)

#: A dead or departed worker stays in the node table (and the stats) for this many
#: SABOT_NODE_TIMEOUT_S, then is forgotten, so churning workers do not grow the table forever.
#: (One heard from again after that registers anew: it is told its session is unknown.)
FORGET_AFTER_TIMEOUTS = 10

# Bound once: a class attribute of an enum costs a lookup through its metaclass.
_ALIVE = NodeState.ALIVE


@dataclass(slots=True)
class Node:
    """A registered worker as the coordinator sees it."""

    node_id: str
    peer: bytes
    host: str
    http_port: int
    pid: int
    cores: int
    slots: int
    capabilities: list[str]
    processors: list[str]
    credits: int
    registered_at: float
    last_seen: float
    state: NodeState = _ALIVE
    state_since: float = 0.0  # monotonic time of the last change of state
    inflight: dict[tuple[str, int], int] = field(default_factory=dict)
    funcs_sent: set[str] = field(default_factory=set)
    morsels_done: int = 0
    items_done: int = 0
    morsels_failed: int = 0
    utilization: float = 0.0
    #: It shares the coordinator's spool (same data dir): morsels go to it as references.
    spool: bool = False

    @property
    def free(self) -> int:
        return self.credits - len(self.inflight) if self.state is _ALIVE else 0

    def info(self, now: float) -> dict[str, Any]:
        return {
            "node_id": self.node_id, "role": "worker", "state": self.state.value,
            "address": self.host, "http_port": self.http_port, "pid": self.pid,
            "cores": self.cores, "slots": self.slots, "credits": self.credits,
            "running": len(self.inflight), "morsels_done": self.morsels_done,
            "morsels_failed": self.morsels_failed, "items_done": self.items_done,
            "utilization_percent": round(self.utilization, 2),
            "capabilities": list(self.capabilities), "spool": self.spool,
            "registered_at": self.registered_at,
            "last_heartbeat_age_s": round(max(0.0, now - self.last_seen), 3),
        }


class NodeRegistry:
    """The workers by node id (``nodes``) and by ZeroMQ routing id (``by_peer``, the peers
    with a live session)."""

    def __init__(self, config: Config, metrics: Metrics, guard: ReplayGuard,
                 send: Callable[[Target, m.Message], None]) -> None:
        self._config = config
        self._metrics = metrics
        self._guard = guard
        self._send = send
        self.nodes: dict[str, Node] = {}
        self.by_peer: dict[bytes, str] = {}
        # How long a worker's name stays its own after its last message: two heartbeats.
        self._name_hold_s = 2 * config.heartbeat_s

    # -- the one state change -----------------------------------------------------------------
    def move(self, node: Node, new: NodeState, now: float | None = None) -> None:
        check_node_transition(node.state, new)
        node.state = new
        node.state_since = time.monotonic() if now is None else now

    # -- sessions -------------------------------------------------------------------------------
    def node_of(self, peer: Target) -> Node | None:
        if not isinstance(peer, bytes):
            return None
        node_id = self.by_peer.get(peer)
        return self.nodes.get(node_id) if node_id is not None else None

    def refusal(self, msg: m.Hello, version: int) -> tuple[ErrorCode, str] | None:
        """Why a hello is refused (its code and text), or None when it is accepted."""
        name = self._config.cluster_name
        if version != PROTOCOL_VERSION or msg.protocol_version != PROTOCOL_VERSION:
            return (ErrorCode.VERSION_MISMATCH,
                    f"protocol version mismatch: the coordinator speaks version "
                    f"{PROTOCOL_VERSION}, node {msg.node_id!r} speaks "
                    f"{msg.protocol_version}; run the same Sabot version on every node")
        if msg.cluster_name != name:
            return (ErrorCode.CLUSTER_MISMATCH,
                    f"cluster name mismatch: the coordinator belongs to CLUSTER_NAME={name!r}, "
                    f"node {msg.node_id!r} to CLUSTER_NAME={msg.cluster_name!r}")
        if msg.role not in ("worker", "client") or not msg.node_id:
            return (ErrorCode.BAD_HELLO, f"hello needs role 'worker' or 'client' and a "
                    f"node_id, got role={msg.role!r}")
        holder = self.nodes.get(msg.node_id)
        if (msg.role == "worker" and holder is not None and holder.state is _ALIVE
                and (holder.host, holder.pid) != (msg.host, int(msg.pid))
                and time.monotonic() - holder.last_seen < self._name_hold_s):
            # A live worker elsewhere has this name. One whose heartbeats stopped is taken to
            # be this node restarted (a pod that kept its name), and the hello replaces it.
            return (ErrorCode.NAME_TAKEN,
                    f"node name {msg.node_id!r} is taken: the worker at {holder.host} "
                    f"(pid {holder.pid}) uses it and is alive; give every node its own "
                    f"SABOT_NODE_NAME (unset, a node makes one from its host name)")
        return None

    def register(self, peer: bytes, msg: m.Hello, spool: bool = False) -> Node:
        """The worker of an accepted hello, alive with a new session. A worker saying hello
        again (it lost us, or we restarted) is the same node; the morsels still in its
        ``inflight`` belong to the old session, and the caller hands them out again."""
        now = time.monotonic()
        node = self.nodes.get(msg.node_id)
        slots = max(1, int(msg.slots or 1))
        credits = min(slots, int(msg.credits)) if msg.credits > 0 else slots
        if node is None:
            node = Node(msg.node_id, peer, msg.host, int(msg.http_port), int(msg.pid),
                        int(msg.cores), slots, [str(c) for c in msg.capabilities],
                        [str(p) for p in msg.processors], credits, time.time(), now,
                        state_since=now)
            self.nodes[msg.node_id] = node
            log.info("worker %s registered from %s (http port %s, %d cores, %d slots)",
                     msg.node_id, msg.host, msg.http_port, msg.cores, slots)
        else:
            if node.peer != peer:
                self.by_peer.pop(node.peer, None)
            node.peer = peer
            node.pid = int(msg.pid)
            node.host, node.http_port, node.slots, node.credits = msg.host, msg.http_port, \
                slots, credits
            node.processors = [str(p) for p in msg.processors]
            node.funcs_sent.clear()
            if node.state is not _ALIVE:
                log.info("worker %s is back (was %s)", node.node_id, node.state.value)
                self.move(node, _ALIVE, now)
            node.last_seen = now
        node.spool = spool
        self.by_peer[peer] = node.node_id
        return node

    def revive(self, node: Node) -> None:
        """A dead worker is heard from again (not a hello): alive, same session."""
        log.info("worker %s is heard from again; marking it alive", node.node_id)
        self.move(node, _ALIVE)
        node.funcs_sent.clear()

    def leave(self, node: Node, reason: str, handed_back: int) -> None:
        """A worker said goodbye: it has left and its session ends (the caller hands its
        morsels out again)."""
        log.info("worker %s leaves (%s); %d morsel(s) handed back", node.node_id, reason,
                 handed_back)
        self.move(node, NodeState.LEFT)
        self.by_peer.pop(node.peer, None)
        self._guard.forget(node.peer)

    def on_heartbeat(self, peer: Target, msg: m.Heartbeat, version: int) -> None:
        node = self.node_of(peer)
        if node is None:
            return
        node.utilization = float(msg.utilization)
        self._send(peer, m.HeartbeatAck(time.time()))

    def on_credit(self, peer: Target, msg: m.Credit, version: int) -> None:
        node = self.node_of(peer)
        if node is not None:
            # Never above the slots it registered with: a worker holds at most its slots.
            node.credits = min(node.slots, max(0, int(msg.credits)))

    # -- timers ---------------------------------------------------------------------------------
    def silent(self, now: float) -> list[Node]:
        """Alive workers not heard from for SABOT_NODE_TIMEOUT_S."""
        timeout = self._config.node_timeout_s
        return [n for n in self.nodes.values() if n.state is _ALIVE and now - n.last_seen > timeout]

    def mark_dead(self, node: Node, now: float, *, disconnected: bool = False) -> None:
        """``node`` is dead: silent past SABOT_NODE_TIMEOUT_S, or (``disconnected``) its
        connection closed."""
        if disconnected:
            log.warning("worker %s: its connection closed: marked dead, %d morsel(s) requeued",
                        node.node_id, len(node.inflight))
        else:
            log.warning("worker %s missed heartbeats for %.1f s (SABOT_NODE_TIMEOUT_S=%g): "
                        "marked dead, %d morsel(s) requeued", node.node_id,
                        now - node.last_seen, self._config.node_timeout_s, len(node.inflight))
        self.move(node, NodeState.DEAD, now)
        self._metrics.record_error("worker_lost")

    def alive(self) -> list[Node]:
        """The alive workers."""
        return [n for n in self.nodes.values() if n.state is _ALIVE]

    def forget_gone(self, now: float) -> None:
        """Drop workers dead or departed for FORGET_AFTER_TIMEOUTS x SABOT_NODE_TIMEOUT_S."""
        forget = FORGET_AFTER_TIMEOUTS * self._config.node_timeout_s
        gone = [n for n in self.nodes.values()
                if n.state is not _ALIVE and now - n.state_since > forget and not n.inflight]
        for node in gone:
            log.info("worker %s forgotten after %g s %s", node.node_id,
                     time.monotonic() - node.state_since, node.state.value)
            del self.nodes[node.node_id]
            if self.by_peer.get(node.peer) == node.node_id:
                del self.by_peer[node.peer]
                self._guard.forget(node.peer)

    # -- views ----------------------------------------------------------------------------------
    def known_processors(self) -> set[str]:
        """Processors registered here and on every alive worker."""
        known = set(list_processors())
        for node in self.nodes.values():
            if node.state is _ALIVE:
                known.update(node.processors)
        return known

    def info(self, now: float) -> list[dict[str, Any]]:
        return [n.info(now) for n in list(self.nodes.values())]

    def count_by_state(self) -> dict[str, int]:
        """Workers per state (safe to call from another thread)."""
        counts: dict[str, int] = {}
        for node in list(self.nodes.values()):
            counts[node.state.value] = counts.get(node.state.value, 0) + 1
        return counts

    def alive_count(self) -> int:
        """How many workers are alive (safe to call from another thread)."""
        return sum(1 for n in list(self.nodes.values()) if n.state is _ALIVE)

    def cpu_percent(self) -> float:
        """The mean CPU utilization the alive workers report in their heartbeats (what the
        per-node rows of the status page show), 0 with none (safe from another thread)."""
        alive = [n.utilization for n in list(self.nodes.values()) if n.state is _ALIVE]
        return sum(alive) / len(alive) if alive else 0.0

    def slots(self) -> tuple[int, int]:
        """(credits, morsels held) over the alive workers (safe to call from another thread).
        Credits can drop below what a worker still holds: what it holds counts then."""
        alive = [n for n in list(self.nodes.values()) if n.state is _ALIVE]
        return (sum(max(n.credits, len(n.inflight)) for n in alive),
                sum(len(n.inflight) for n in alive))


__all__ = ["FORGET_AFTER_TIMEOUTS", "Node", "NodeRegistry"]
