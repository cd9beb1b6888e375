"""A small synchronous client of a node's HTTP API (used by ``sabot-node submit`` / ``status``).

Errors come back as Sabot's exceptions with the server's own message: a node that cannot be
reached is a :class:`~sabot.errors.CoordinatorUnavailableError`, an unknown job a
:class:`~sabot.errors.JobNotFoundError`, a refused token an
:class:`~sabot.errors.AuthenticationError`, any other refusal a
:class:`~sabot.errors.RequestRefusedError`.
"""

from __future__ import annotations

import json
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Iterator
from typing import Any

from ..errors import (
    AuthenticationError,
    CoordinatorUnavailableError,
    JobExpiredError,
    JobNotFoundError,
    RequestRefusedError,
)

PAGE = 100_000


class HttpClient:
    """Talks to ``http://host:port``; ``token`` is sent as a bearer token when given."""

    def __init__(self, host: str, port: int, *, token: str | None = None,
                 timeout_s: float = 60.0) -> None:
        self.base = f"http://{host}:{port}"
        self.address = f"{host}:{port}"
        self.token = token
        self.timeout_s = timeout_s

    def request(self, method: str, path: str, body: Any = None) -> Any:
        data = None if body is None else json.dumps(body).encode()
        headers = {"Accept": "application/json"}
        if data is not None:
            headers["Content-Type"] = "application/json"
        if self.token:
            headers["Authorization"] = f"Bearer {self.token}"
        req = urllib.request.Request(self.base + path, data=data, method=method, headers=headers)
        try:
            with urllib.request.urlopen(req, timeout=self.timeout_s) as resp:
                return json.loads(resp.read().decode() or "null")
        except urllib.error.HTTPError as err:
            with err:
                raw = err.read().decode(errors="replace")
            try:
                payload = json.loads(raw)
                message = payload.get("error") or raw
            except (ValueError, AttributeError):
                payload, message = None, raw.strip() or err.reason
            if err.code == 401:
                raise AuthenticationError(
                    f"{self.address} refused the request: {message} (pass --token or set "
                    "SABOT_AUTH_TOKEN)") from None
            if err.code == 410 and path.startswith("/job/"):
                raise JobExpiredError(message) from None
            if err.code == 404 and path.startswith("/job/"):
                raise JobNotFoundError(message) from None
            raise RequestRefusedError(err.code, message, payload) from None
        except (urllib.error.URLError, ConnectionError, TimeoutError) as err:
            reason = getattr(err, "reason", err)
            raise CoordinatorUnavailableError(
                f"cannot reach a Sabot node at {self.address}: {reason} (is it running? "
                "check --coordinator / COORDINATOR_HOST and COORDINATOR_PORT)") from None

    # -- endpoints ------------------------------------------------------------------------
    def submit(self, processor: str, *, data: list[Any] | None = None,
               input: dict[str, Any] | None = None, priority: int = 0) -> dict[str, Any]:
        body: dict[str, Any] = {"processor_func": processor, "priority": priority}
        if input is not None:
            body["input"] = input
        else:
            body["data"] = data if data is not None else []
        return self.request("POST", "/submit_job", body)

    def job(self, job_id: str, *, offset: int = 0, limit: int | None = None) -> dict[str, Any]:
        query = {"offset": offset}
        if limit is not None:
            query["limit"] = limit
        return self.request("GET", f"/job/{urllib.parse.quote(job_id, safe='')}?"
                            + urllib.parse.urlencode(query))

    def result(self, job_id: str) -> Iterator[Any]:
        """Every item of a completed job's result, page by page."""
        offset: int | None = 0
        while offset is not None:
            page = self.job(job_id, offset=offset, limit=PAGE)
            yield from page.get("result") or []
            offset = page.get("next_offset")

    def cancel(self, job_id: str) -> dict[str, Any]:
        return self.request("DELETE", f"/job/{urllib.parse.quote(job_id, safe='')}")

    def nodes(self) -> list[dict[str, Any]]:
        return self.request("GET", "/nodes")["nodes"]

    def jobs(self, limit: int = 20) -> list[dict[str, Any]]:
        return self.request("GET", f"/jobs?limit={limit}")["jobs"]

    def stats(self) -> dict[str, Any]:
        return self.request("GET", "/stats")

    def health(self) -> dict[str, Any]:
        return self.request("GET", "/health")

    def pipelines(self) -> list[dict[str, Any]]:
        return self.request("GET", "/pipelines")["pipelines"]

    def pipeline_action(self, pipeline_id: str, action: str, body: dict[str, Any] | None = None
                        ) -> dict[str, Any]:
        return self.request("POST", f"/pipeline/{urllib.parse.quote(pipeline_id, safe='')}/"
                                    f"{action}", body or {})


__all__ = ["HttpClient"]
