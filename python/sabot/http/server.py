"""Sabot's HTTP API (aiohttp): one server for single-node, coordinator and worker nodes.

The routes only translate HTTP to calls on a :class:`~sabot.http.backend.NodeBackend` and back;
what a node does lives in its backend. Every error is a JSON object ``{"error": "...", ...}``
with a fitting status. The API runs named processors only, never code a client sends.
"""

from __future__ import annotations

import asyncio
import collections
import hmac
import ipaddress
import logging
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

from aiohttp import web

from ..version import __version__
from ..config import Config
from ..errors import (
    AuthenticationError,
    ConfigError,
    CoordinatorUnavailableError,
    JobIdConflictError,
    JobExpiredError,
    JobNotFoundError,
    JournalUnwritableError,
    UnknownProcessorError,
)
from ..job_ids import job_id_problem
from ..metrics import Metrics, get_metrics
from ..processors import list_processors
from .backend import NodeBackend
from .inputs import InputError, load_input_column
from .openapi import openapi_document
from .results import dumps
from .status_page import STATIC_DIR, render_status_page
from .validation import (
    DEFAULT_PAGE,
    IDEMPOTENCY_HEADER,
    MAX_PAGE,
    BadRequest,
    parse_json,
    parse_submit,
    query_int,
)

log = logging.getLogger(__name__)

#: Paths served without a bearer token: probes and scrapes carry none, and the status page
#: shell and the API description hold no data (the page asks for the token itself).
OPEN_PATHS = frozenset({"/health", "/ready", "/metrics", "/", "/openapi.json"})
OPEN_PREFIXES = ("/static/",)

#: What a 507 (the journal cannot be written) asks a client to wait before it submits again.
RETRY_AFTER_S = 5

#: Seconds between throughput samples for the status page, and how many are kept (10 minutes).
HISTORY_INTERVAL_S = 2.0
HISTORY_LEN = 300

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def json_response(payload: Any, status: int = 200, headers: dict[str, str] | None = None
                  ) -> web.Response:
    return web.Response(text=dumps(payload), status=status, headers=headers,
                        content_type="application/json")


#: Bodies and results larger than this are encoded or decoded on a helper thread, so one big
#: request does not stall the event loop (heartbeats, other clients).
OFFLOAD_BYTES = 1 << 20
OFFLOAD_ITEMS = 20_000


async def json_response_offloaded(payload: Any, items: int) -> web.Response:
    if items < OFFLOAD_ITEMS:
        return json_response(payload)
    text = await asyncio.to_thread(dumps, payload)
    return web.Response(text=text, content_type="application/json")


def error_response(status: int, message: str, headers: dict[str, str] | None = None,
                   **details: Any) -> web.Response:
    return json_response({"error": message, "status": status, **details}, status, headers)


def is_loopback(host: str) -> bool:
    if host in ("localhost", "ip6-localhost"):
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


class HttpApi:
    """The HTTP API of one node.

    ``port = await api.start(host, port)`` binds (port 0: an ephemeral port) and returns the
    bound port; ``await api.stop()`` closes it. Settings come from ``config``: the bearer token
    (SABOT_AUTH_TOKEN), the largest body (SABOT_MAX_REQUEST_MB), the input directory
    (SABOT_DATA_DIR) and the cluster name of the metrics.
    """

    def __init__(
        self,
        config: Config,
        backend: NodeBackend,
        metrics: Metrics | None = None,
        *,
        request_timeout_s: float = 30.0,
        idle_timeout_s: float = 75.0,
    ) -> None:
        self.config = config
        self.backend = backend
        self.metrics = metrics or get_metrics(config.cluster_name, backend.node_id)
        self.request_timeout_s = request_timeout_s
        self.idle_timeout_s = idle_timeout_s
        self.max_body = int(config.max_request_mb * 1024 * 1024)
        self._token = config.auth_token.encode() if config.auth_token else None
        self._runner: web.AppRunner | None = None
        self._sampler: asyncio.Task[None] | None = None
        self._started = time.time()
        self.port: int | None = None
        self.host: str | None = None
        #: (UNIX time, items/s, items) every HISTORY_INTERVAL_S, for the status page: the items
        #: done since the previous sample and their rate over that interval (not the 5 s
        #: average of the throughput gauge, which smears a short burst over several samples).
        self.history: collections.deque[tuple[float, float, int]] = collections.deque(
            maxlen=HISTORY_LEN)
        self.app = self._make_app()

    # -- lifecycle ------------------------------------------------------------------------
    async def start(self, host: str | None = None, port: int | None = None) -> int:
        """Serve on ``host:port`` (defaults: SABOT_HOST, SABOT_PORT); returns the bound port."""
        if self._runner is not None:
            raise RuntimeError("this HttpApi is already serving")
        host = self.config.host if host is None else host
        port = self.config.port if port is None else port
        # keepalive_timeout also bounds how long a connection may take to send its headers.
        runner = web.AppRunner(self.app, access_log=None, keepalive_timeout=self.idle_timeout_s)
        await runner.setup()
        site = web.TCPSite(runner, host, port, reuse_address=True)
        try:
            await site.start()
        except OSError:
            await runner.cleanup()
            raise
        self._runner = runner
        self.host = host
        self.port = _bound_port(runner, port)
        self.metrics.set_role(self.backend.role, __version__)
        started = getattr(self.backend, "on_http_started", None)
        if callable(started):
            started(host, self.port)
        self._sampler = asyncio.get_running_loop().create_task(self._sample_forever())
        if self._token is None and not is_loopback(host):
            log.warning(
                "\n" + "!" * 78 + "\n"
                "!! Sabot's HTTP API listens on %s:%s beyond loopback WITHOUT authentication.\n"
                "!! Anyone who reaches this port can submit and cancel jobs. Set\n"
                "!! SABOT_AUTH_TOKEN to require 'Authorization: Bearer <token>', or bind\n"
                "!! SABOT_HOST=127.0.0.1.\n" + "!" * 78, host, self.port)
        log.info("HTTP API (%s) serving on http://%s:%s", self.backend.role, host, self.port)
        return self.port

    async def stop(self) -> None:
        if self._sampler is not None:
            self._sampler.cancel()
            await asyncio.gather(self._sampler, return_exceptions=True)
            self._sampler = None
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    async def __aenter__(self) -> HttpApi:
        if self._runner is None:
            await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    @property
    def url(self) -> str:
        host = self.host or self.config.host
        if host in ("0.0.0.0", "::", ""):
            host = "127.0.0.1"
        return f"http://{host}:{self.port}"

    async def _sample_forever(self) -> None:
        last: tuple[float, float] | None = None  # (monotonic time, items completed) then
        while True:
            try:
                self.metrics.refresh()
                now, total = time.monotonic(), self.metrics.items_completed
                items = max(0.0, total - last[1]) if last is not None else 0.0
                rate = items / (now - last[0]) if last is not None and now > last[0] else 0.0
                self.history.append((time.time(), rate, int(items)))
                last = (now, total)
            except Exception:  # the sampler must survive whatever a backend does
                log.exception("metrics sampling failed")
            await asyncio.sleep(HISTORY_INTERVAL_S)

    # -- application ----------------------------------------------------------------------
    def _make_app(self) -> web.Application:
        app = web.Application(
            client_max_size=self.max_body,
            middlewares=[self._errors_mw, self._auth_mw],
        )
        r = app.router
        r.add_get("/", self.status_page)
        r.add_get("/health", self.health)
        r.add_get("/ready", self.ready)
        r.add_get("/nodes", self.nodes)
        r.add_get("/stats", self.stats)
        r.add_get("/cluster", self.cluster)
        r.add_get("/metrics", self.metrics_endpoint)
        r.add_get("/openapi.json", self.openapi)
        r.add_get("/history", self.history_endpoint)
        r.add_post("/submit_job", self.submit_job)
        r.add_get("/jobs", self.jobs)
        r.add_get("/pipelines", self.pipelines)
        r.add_get("/pipeline/{pipeline_id}", self.get_pipeline)
        for action in ("stop", "resume", "cancel"):
            r.add_post(f"/pipeline/{{pipeline_id}}/{action}", self.pipeline_action)
        r.add_get("/pipeline/{pipeline_id}/results", self.pipeline_results)
        r.add_post("/submit_pipeline", self.submit_pipeline)
        r.add_get("/job/{job_id}", self.get_job)
        r.add_delete("/job/{job_id}", self.cancel_job)
        r.add_static("/static/", STATIC_DIR, show_index=False, follow_symlinks=False)
        return app

    @web.middleware
    async def _errors_mw(self, request: web.Request, handler: Handler) -> web.StreamResponse:
        t0 = time.monotonic()
        resource = request.match_info.route.resource
        route = resource.canonical if resource is not None else "unmatched"
        try:
            resp = await handler(request)
        except web.HTTPException as exc:
            resp = self._http_exception(request, exc)
        except BadRequest as exc:
            resp = error_response(400, str(exc), **exc.details)
        except InputError as exc:
            resp = error_response(400, str(exc))
        except UnknownProcessorError as exc:
            resp = error_response(400, str(exc), processor=exc.name, known_processors=exc.known)
        except JobIdConflictError as exc:
            resp = error_response(409, str(exc), job_id=exc.job_id)
        except JournalUnwritableError as exc:
            # 507 Insufficient Storage: this node cannot store the job; it serves reads and
            # accepts submits again once it can write.
            resp = error_response(507, str(exc), headers={"Retry-After": str(RETRY_AFTER_S)},
                                  data_dir=exc.data_dir, free_bytes=exc.free_bytes)
        except JobExpiredError as exc:
            # 410 Gone: the job existed; the retention deleted it and its results.
            resp = error_response(410, str(exc), code="job_expired",
                                  job_id=request.match_info.get("job_id"),
                                  expired_at=exc.expired_at)
        except JobNotFoundError as exc:
            resp = error_response(404, str(exc.args[0]) if exc.args else "no such job",
                                  job_id=request.match_info.get("job_id"))
        except AuthenticationError as exc:
            resp = error_response(401, str(exc),
                                  headers={"WWW-Authenticate": 'Bearer realm="sabot"'})
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            log.exception("HTTP %s %s failed", request.method, request.path)
            self.metrics.record_error("http_internal")
            resp = error_response(500, f"internal error: {type(exc).__name__}: {exc}")
        self.metrics.record_http(route, request.method, resp.status, time.monotonic() - t0)
        return resp

    def _http_exception(self, request: web.Request, exc: web.HTTPException) -> web.Response:
        if isinstance(exc, web.HTTPRequestEntityTooLarge):
            return error_response(
                413, f"the request body is larger than SABOT_MAX_REQUEST_MB="
                f"{self.config.max_request_mb:g} ({self.max_body} bytes)",
                max_bytes=self.max_body)
        if isinstance(exc, web.HTTPMethodNotAllowed):
            allowed = sorted(exc.allowed_methods)
            return error_response(
                405, f"{request.method} is not allowed on {request.path}; allowed: "
                f"{', '.join(allowed)}", headers={"Allow": ", ".join(allowed)},
                allowed_methods=allowed)
        if isinstance(exc, web.HTTPNotFound):
            return error_response(404, f"no such endpoint: {request.path} (see /openapi.json)")
        if exc.status < 400:  # redirects and the like pass through
            return web.Response(status=exc.status, headers=exc.headers, text=exc.text)
        return error_response(exc.status, exc.reason or "error")

    @web.middleware
    async def _auth_mw(self, request: web.Request, handler: Handler) -> web.StreamResponse:
        if self._token is not None and not (
                request.path in OPEN_PATHS or request.path.startswith(OPEN_PREFIXES)):
            header = request.headers.get("Authorization", "")
            scheme, _, given = header.partition(" ")
            if scheme.lower() != "bearer" or not given:
                raise AuthenticationError(
                    "this node requires a bearer token: send 'Authorization: Bearer <token>' "
                    "(the node's SABOT_AUTH_TOKEN)")
            if not hmac.compare_digest(given.strip().encode(), self._token):
                raise AuthenticationError("the bearer token is wrong")
        return await handler(request)

    async def _body(self, request: web.Request) -> bytes:
        length = request.content_length
        if length is not None and length > self.max_body:
            raise web.HTTPRequestEntityTooLarge(max_size=self.max_body, actual_size=length)
        try:
            async with asyncio.timeout(self.request_timeout_s):
                return await request.read()
        except TimeoutError:
            raise web.HTTPRequestTimeout(
                text="", reason=f"the request body did not arrive within "
                f"{self.request_timeout_s:g} s") from None

    # -- endpoints ------------------------------------------------------------------------
    async def health(self, request: web.Request) -> web.Response:
        details = dict(self.backend.health())
        body = {
            "status": "ok", "role": self.backend.role, "node_id": self.backend.node_id,
            "cluster_name": self.config.cluster_name, "version": __version__,
            "uptime_s": round(time.time() - self._started, 3),
            # Clients check a large upload against it before sending (SABOT_MAX_REQUEST_MB).
            "max_request_bytes": self.max_body,
        }
        body.update(details)
        if details.get("problem"):
            body["status"] = "failing"
            return json_response(body, 503)
        return json_response(body)

    async def ready(self, request: web.Request) -> web.Response:
        ready = bool(self.backend.is_ready())
        return json_response({"ready": ready, "role": self.backend.role,
                              "node_id": self.backend.node_id}, 200 if ready else 503)

    async def nodes(self, request: web.Request) -> web.Response:
        nodes = self.node_list()
        return json_response({"nodes": nodes, "count": len(nodes)})

    def node_list(self) -> list[dict[str, Any]]:
        """The backend's nodes, each with the documented ``status`` key (a backend may call
        it ``state``)."""
        out = []
        for node in self.backend.nodes():
            node = dict(node)
            if "status" not in node and "state" in node:
                node["status"] = node["state"]
            out.append(node)
        return out

    async def stats(self, request: web.Request) -> web.Response:
        return json_response(self.backend.stats())

    async def cluster(self, request: web.Request) -> web.Response:
        info = self.backend.cluster_info()
        if info is None:
            return error_response(
                404, f"this node is a {self.backend.role}, not a coordinator: workers join a "
                "node started with SABOT_MODE=coordinator", role=self.backend.role)
        return json_response(info)

    async def metrics_endpoint(self, request: web.Request) -> web.Response:
        body, content_type = self.metrics.exposition()
        resp = web.Response(body=body)
        resp.headers["Content-Type"] = content_type
        return resp

    async def openapi(self, request: web.Request) -> web.Response:
        return json_response(openapi_document(self._token is not None, list_processors()))

    async def history_endpoint(self, request: web.Request) -> web.Response:
        return json_response({
            "interval_s": HISTORY_INTERVAL_S,
            "samples": [{"time": t, "items_per_second": v, "items": n}
                        for t, v, n in self.history],
        })

    async def status_page(self, request: web.Request) -> web.Response:
        html = render_status_page(self, with_data=self._token is None)
        return web.Response(text=html, content_type="text/html")

    async def submit_job(self, request: web.Request) -> web.Response:
        body = await self._body(request)
        payload = parse_json(body) if len(body) < OFFLOAD_BYTES else \
            await asyncio.to_thread(parse_json, body)
        req = parse_submit(payload, request.headers.get(IDEMPOTENCY_HEADER))
        if req.input is not None:
            data: Any = await asyncio.to_thread(
                load_input_column, Path(self.config.data_dir), req.input)
        else:
            data = req.data
        kw: dict[str, Any] = {"priority": req.priority}
        if req.job_id is not None:
            kw["job_id"] = req.job_id
        accepted = dict(await self.backend.submit_job(data, req.processor, **kw))
        # A resubmit of a job the node has (the same id and content) gets that job, marked.
        replayed = bool(accepted.pop("existing", False))
        return json_response(accepted,
                             headers={"Idempotent-Replayed": "true"} if replayed else None)

    async def jobs(self, request: web.Request) -> web.Response:
        limit = query_int(request.query, "limit", 100, 1, 10_000)
        jobs = list(self.backend.list_jobs(limit=limit or 100))
        return json_response({"jobs": jobs, "count": len(jobs)})

    async def get_job(self, request: web.Request) -> web.Response:
        offset = query_int(request.query, "offset", 0, 0, 2**62) or 0
        # limit=0: the job's state and progress without any result items (for polling).
        limit = query_int(request.query, "limit", DEFAULT_PAGE, 0, MAX_PAGE)
        job = await self.backend.get_job(request.match_info["job_id"], offset=offset,
                                         limit=limit)
        return await json_response_offloaded(job, len(job.get("result") or ()))

    async def cancel_job(self, request: web.Request) -> web.Response:
        job = await self.backend.cancel_job(request.match_info["job_id"])
        return json_response(job)

    def _pipeline_list(self) -> list[dict[str, Any]] | None:
        lister = getattr(self.backend, "pipelines", None)
        return None if lister is None else list(lister())

    async def pipelines(self, request: web.Request) -> web.Response:
        found = self._pipeline_list()
        if found is None:
            return error_response(404, f"a {self.backend.role} runs no pipelines: ask the "
                                       "coordinator")
        return json_response({"pipelines": found, "count": len(found)})

    async def submit_pipeline(self, request: web.Request) -> web.Response:
        """POST /submit_pipeline: {"pipeline": a registered name, "params"?: {...},
        "instances"?: n, "state_dir"?: str, "checkpoint_interval"?: "10s",
        "pipeline_id"?: str}. Runs no code sent by the client: only a registered pipeline."""
        submit = getattr(self.backend, "submit_pipeline", None)
        if submit is None:
            return error_response(404, f"a {self.backend.role} runs no pipelines: submit to "
                                       "the coordinator")
        body = parse_json(await self._body(request))
        if not isinstance(body, dict):
            return error_response(400, "the body must be a JSON object")
        name, params = body.get("pipeline"), body.get("params", {})
        if not isinstance(name, str) or not name:
            return error_response(400, "pipeline: the name of a registered pipeline is required")
        if not isinstance(params, dict):
            return error_response(400, f"params must be a JSON object, got {params!r}")
        n = body.get("instances")
        if n is not None and (isinstance(n, bool) or not isinstance(n, int) or n < 1):
            return error_response(400, f"instances must be a positive integer, got {n!r}")
        kw: dict[str, Any] = {"instances": n}
        for field in ("state_dir", "checkpoint_interval", "pipeline_id"):
            v = body.get(field)
            if v is not None and (not isinstance(v, str) or not v):
                return error_response(400, f"{field} must be a non-empty string, got {v!r}")
            kw[field] = v
        problem = None if kw["pipeline_id"] is None else job_id_problem(kw["pipeline_id"])
        if problem is not None:
            return error_response(400, f"pipeline_id: {problem}")
        try:
            return json_response(await submit(name, params, **kw))
        except KeyError as exc:
            return error_response(404, str(exc.args[0]) if exc.args else str(exc))
        except ConfigError as exc:
            return error_response(400, str(exc))
        except CoordinatorUnavailableError as exc:
            return error_response(503, str(exc))

    async def pipeline_results(self, request: web.Request) -> web.Response:
        get = getattr(self.backend, "pipeline_results", None)
        if get is None:
            return error_response(404, f"a {self.backend.role} runs no pipelines: ask the "
                                       "coordinator")
        return json_response(await get(request.match_info["pipeline_id"]))

    async def pipeline_action(self, request: web.Request) -> web.Response:
        """POST /pipeline/{id}/stop ({"savepoint": true|false}), /resume ({"instances": n}),
        /cancel."""
        pid, action = request.match_info["pipeline_id"], request.path.rsplit("/", 1)[-1]
        act = getattr(self.backend, "pipeline_action", None)
        if act is None:
            return error_response(404, f"a {self.backend.role} runs no pipelines: ask the "
                                       "coordinator")
        if action not in ("stop", "resume", "cancel"):
            return error_response(404, f"no action {action!r}: stop, resume or cancel")
        body: Any = {}
        if request.can_read_body:
            try:
                body = await request.json()
            except ValueError:
                return error_response(400, "the body must be a JSON object")
        if not isinstance(body, dict):
            return error_response(400, "the body must be a JSON object")
        kw: dict[str, Any] = {}
        if action == "stop":
            savepoint = body.get("savepoint", True)
            if not isinstance(savepoint, bool):
                return error_response(400, f"savepoint must be true or false, got {savepoint!r}")
            kw["savepoint"] = savepoint
        elif action == "resume" and body.get("instances") is not None:
            n = body["instances"]
            if isinstance(n, bool) or not isinstance(n, int) or n < 1:
                return error_response(400, f"instances must be a positive integer, got {n!r}")
            kw["instances"] = n
        try:
            return json_response(act(pid, action, **kw))
        except KeyError:
            return error_response(404, f"no pipeline {pid!r}")
        except ValueError as exc:
            return error_response(409, str(exc))

    async def get_pipeline(self, request: web.Request) -> web.Response:
        pid = request.match_info["pipeline_id"]
        found = self._pipeline_list()
        if found is None:
            return error_response(404, f"a {self.backend.role} runs no pipelines: ask the "
                                       "coordinator")
        for p in found:
            if p["pipeline_id"] == pid:
                return json_response(p)
        return error_response(404, f"no pipeline {pid!r}")


def _bound_port(runner: web.AppRunner, requested: int) -> int:
    for site in runner.sites:
        server = getattr(site, "_server", None)
        for sock in getattr(server, "sockets", None) or ():
            return int(sock.getsockname()[1])
    return requested


__all__ = ["OPEN_PATHS", "HttpApi", "error_response", "is_loopback", "json_response"]
