"""ZeroMQ sockets with CURVE, the ZAP check, handshake-failure logging and coordinator discovery.

Kept apart from encoding: this module moves frames and knows nothing of message classes.
"""

from __future__ import annotations

import json
import logging
import socket
import time
import urllib.error
import urllib.request
from typing import Any

import zmq
import zmq.auth.thread
from zmq.utils.monitor import parse_monitor_message, recv_monitor_message

from ..errors import AuthenticationError, CoordinatorUnavailableError
from .security import ClusterKeys

log = logging.getLogger(__name__)

ZAP_DOMAIN = "sabot"
_last_logged: dict[str, float] = {}

#: Handshake events worth a log line on the coordinator.
_HANDSHAKE_FAILURES = {
    zmq.EVENT_HANDSHAKE_FAILED_NO_DETAIL: "handshake failed",
    zmq.EVENT_HANDSHAKE_FAILED_PROTOCOL: "CURVE handshake failed (the peer's cluster key differs "
                                         "from this node's, or it does not use CURVE)",
    zmq.EVENT_HANDSHAKE_FAILED_AUTH: "peer refused by the cluster-key check (wrong or missing "
                                     "SABOT_CLUSTER_KEY)",
}


class _ClientKeyCheck:
    """ZAP credentials provider: only the client key derived from the cluster secret passes."""

    def __init__(self, allowed: bytes) -> None:
        self.allowed = allowed

    def callback(self, domain: str, key: bytes) -> bool:
        if key == self.allowed:
            return True
        now = time.monotonic()
        if _last_logged.get("zap", -1e9) + 5.0 > now:
            return False
        _last_logged["zap"] = now
        log.warning("refused a ZeroMQ peer: its CURVE client key is not derived from this "
                    "cluster's secret (wrong SABOT_CLUSTER_KEY / SABOT_CLUSTER_KEY_FILE)")
        return False


def start_authenticator(ctx: zmq.Context, keys: ClusterKeys) -> zmq.auth.thread.ThreadAuthenticator:
    auth = zmq.auth.thread.ThreadAuthenticator(ctx, log=logging.getLogger("sabot.cluster.zap"))
    auth.start()
    auth.configure_curve_callback(ZAP_DOMAIN, credentials_provider=_ClientKeyCheck(keys.client_public))
    return auth


def server_socket(ctx: zmq.Context, keys: ClusterKeys, host: str, port: int
                  ) -> tuple[zmq.Socket, int]:
    """A CURVE server ROUTER bound on host:port (0: ephemeral); returns (socket, bound port)."""
    sock = ctx.socket(zmq.ROUTER)
    sock.curve_server = True
    sock.curve_secretkey = keys.server_secret
    sock.curve_publickey = keys.server_public
    sock.zap_domain = ZAP_DOMAIN.encode()
    sock.setsockopt(zmq.ROUTER_MANDATORY, 1)  # a send to a gone peer raises instead of vanishing
    sock.setsockopt(zmq.SNDHWM, 0)  # credits and requests bound what is queued
    sock.setsockopt(zmq.RCVHWM, 0)
    sock.setsockopt(zmq.LINGER, 0)
    sock.setsockopt(zmq.MAXMSGSIZE, -1)
    bind_host = "*" if host in ("0.0.0.0", "") else host
    try:
        if port:
            sock.bind(f"tcp://{bind_host}:{port}")
            bound = port
        else:
            bound = sock.bind_to_random_port(f"tcp://{bind_host}")
    except zmq.ZMQError as exc:
        sock.close(0)
        raise OSError(f"cannot bind the ZeroMQ endpoint on {host}:{port}: {exc}") from exc
    return sock, bound


def client_socket(ctx: zmq.Context, keys: ClusterKeys, endpoint: str) -> zmq.Socket:
    """A CURVE client DEALER connected to the coordinator's endpoint."""
    sock = ctx.socket(zmq.DEALER)
    sock.curve_serverkey = keys.server_public
    sock.curve_publickey = keys.client_public
    sock.curve_secretkey = keys.client_secret
    sock.setsockopt(zmq.LINGER, 0)
    sock.setsockopt(zmq.SNDHWM, 0)
    sock.setsockopt(zmq.RCVHWM, 0)
    sock.setsockopt(zmq.RECONNECT_IVL, 100)
    sock.setsockopt(zmq.RECONNECT_IVL_MAX, 1000)
    sock.connect(endpoint)
    return sock


def monitor_socket(sock: zmq.Socket) -> zmq.Socket:
    """A monitor of a server socket: handshake failures (logged) and dropped connections
    (the coordinator then looks for the peer that is gone)."""
    events = zmq.EVENT_DISCONNECTED
    for ev in _HANDSHAKE_FAILURES:
        events |= ev
    return sock.get_monitor_socket(events)


#: Connection events a peer's monitor reports (connection_monitor).
CONNECTION_EVENTS = zmq.EVENT_DISCONNECTED | zmq.EVENT_HANDSHAKE_SUCCEEDED


def connection_monitor(sock: zmq.Socket) -> zmq.Socket:
    """A monitor of ``sock``'s connections (dropped, handshaken): a PAIR socket whose messages
    :func:`connection_event` reads."""
    return sock.get_monitor_socket(CONNECTION_EVENTS)


def connection_event(frames: list[bytes]) -> int | None:
    """The event number of one monitor message (None: not one libzmq's format allows)."""
    try:
        return int(parse_monitor_message(frames)["event"])
    except (ValueError, KeyError, IndexError, TypeError):  # pragma: no cover - libzmq's format
        return None


def log_monitor_event(mon: zmq.Socket) -> int | None:
    """Read one monitor event, log handshake failures (never the keys) and return the event's
    number (None when there was none)."""
    try:
        event = recv_monitor_message(mon, flags=zmq.NOBLOCK)
    except zmq.Again:
        return None
    reason = _HANDSHAKE_FAILURES.get(event["event"])
    now = time.monotonic()
    # A refused peer retries every few hundred ms: one line per reason per 5 s is enough.
    if reason and _last_logged.get(reason, -1e9) + 5.0 <= now:
        _last_logged[reason] = now
        log.warning("ZeroMQ peer refused on %s: %s", event.get("endpoint", b"").decode(
            "utf-8", "replace"), reason)
    return int(event["event"])


# -- discovery ---------------------------------------------------------------------------------
def fetch_cluster_info(host: str, port: int, *, timeout: float = 5.0,
                       token: str | None = None) -> dict[str, Any]:
    """GET /cluster from the coordinator's HTTP port; CoordinatorUnavailableError when
    unreachable or not a coordinator."""
    url = f"http://{_url_host(host)}:{port}/cluster"
    req = urllib.request.Request(url, headers={"Accept": "application/json"})
    if token:
        req.add_header("Authorization", f"Bearer {token}")
    try:
        with urllib.request.urlopen(req, timeout=timeout) as resp:
            info = json.loads(resp.read())
    except urllib.error.HTTPError as exc:
        detail = exc.read()[:500].decode("utf-8", "replace")
        if exc.code == 401:
            raise AuthenticationError(
                f"the coordinator at {host}:{port} wants an HTTP bearer token: set "
                f"SABOT_AUTH_TOKEN to the coordinator's ({detail})") from None
        raise CoordinatorUnavailableError(
            f"{url} answered HTTP {exc.code}: {detail} (is COORDINATOR_HOST:COORDINATOR_PORT a "
            "Sabot coordinator's HTTP port?)") from None
    except (urllib.error.URLError, OSError, ValueError) as exc:
        reason = getattr(exc, "reason", exc)
        raise CoordinatorUnavailableError(
            f"cannot reach the coordinator at {url}: {reason} (check COORDINATOR_HOST and "
            "COORDINATOR_PORT, and that the coordinator runs)") from None
    if not isinstance(info, dict) or "zmq_port" not in info:
        raise CoordinatorUnavailableError(f"{url} did not answer like a Sabot coordinator")
    return info


def _url_host(host: str) -> str:
    return f"[{host}]" if ":" in host and not host.startswith("[") else host


def zmq_endpoint(host: str, port: int) -> str:
    return f"tcp://{_url_host(host)}:{port}"


def detect_advertise_host(coordinator_host: str, coordinator_port: int) -> str:
    """The local address that routes to the coordinator (no packet is sent)."""
    try:
        infos = socket.getaddrinfo(coordinator_host, coordinator_port, type=socket.SOCK_DGRAM)
    except OSError:
        infos = []
    for family, _, _, _, addr in infos:
        with socket.socket(family, socket.SOCK_DGRAM) as s:
            try:
                s.connect(addr)
                return str(s.getsockname()[0])
            except OSError:
                continue
    return socket.gethostname()


__all__ = [
    "CONNECTION_EVENTS",
    "ZAP_DOMAIN",
    "client_socket",
    "connection_event",
    "connection_monitor",
    "detect_advertise_host",
    "fetch_cluster_info",
    "log_monitor_event",
    "monitor_socket",
    "server_socket",
    "start_authenticator",
    "zmq_endpoint",
]
