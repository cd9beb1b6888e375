"""Checking what HTTP clients send: each refusal names the field, what came and what is accepted."""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from ..job_ids import job_id_problem

#: Bounds of POST /submit_job's ``priority``.
PRIORITY_MIN, PRIORITY_MAX = -1000, 1000
#: Largest page of a job's result (GET /job/{id}?limit=).
MAX_PAGE = 1_000_000
DEFAULT_PAGE = 100_000

SUBMIT_KEYS = ("data", "input", "processor_func", "priority", "job_id")
#: The HTTP header that carries a client-chosen job id (the same as the body's ``job_id``).
IDEMPOTENCY_HEADER = "Idempotency-Key"
INPUT_KEYS = ("path", "format", "column")


class BadRequest(ValueError):
    """The request is malformed (HTTP 400); ``details`` go into the JSON error body."""

    def __init__(self, message: str, **details: Any) -> None:
        super().__init__(message)
        self.details = details


@dataclass(frozen=True)
class SubmitRequest:
    processor: str
    priority: int
    data: list[Any] | None
    input: dict[str, Any] | None
    #: The client's job id (``job_id`` or the Idempotency-Key header); None: the node picks one.
    job_id: str | None = None


def _type_name(value: Any) -> str:
    return {dict: "object", list: "array", str: "string", bool: "boolean", type(None): "null",
            int: "integer", float: "number"}.get(type(value), type(value).__name__)


def _reject_constant(name: str) -> Any:
    raise BadRequest(f"malformed JSON: {name} is not valid JSON (use null or a number)")


def parse_json(body: bytes) -> Any:
    if not body.strip():
        raise BadRequest("the request body is empty; send a JSON object")
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise BadRequest(f"the request body is not UTF-8 text: {exc}") from None
    try:
        return json.loads(text, parse_constant=_reject_constant)
    except json.JSONDecodeError as exc:
        raise BadRequest(
            f"malformed JSON: {exc.msg} at line {exc.lineno} column {exc.colno}") from None
    except RecursionError:
        raise BadRequest("malformed JSON: nested too deeply") from None
    except ValueError as exc:
        # e.g. an integer literal longer than Python's int-conversion limit (4,300 digits)
        raise BadRequest(f"malformed JSON: a value cannot be read: {exc}") from None


def parse_submit(payload: Any, idempotency_key: str | None = None) -> SubmitRequest:
    """POST /submit_job's body: ``{"data": [...] | "input": {...}, "processor_func": str,
    "priority": int, "job_id": str}``; ``idempotency_key``: the Idempotency-Key header."""
    if not isinstance(payload, dict):
        raise BadRequest(
            f"the body must be a JSON object, got {_type_name(payload)}",
            expected={"data": "array", "processor_func": "string", "priority": "integer"})
    unknown = sorted(set(payload) - set(SUBMIT_KEYS))
    if unknown:
        raise BadRequest(f"unknown field(s) {', '.join(map(repr, unknown))}; accepted: "
                         f"{', '.join(SUBMIT_KEYS)}")
    proc = payload.get("processor_func")
    if not isinstance(proc, str) or not proc:
        raise BadRequest("processor_func must be a non-empty string naming a registered processor"
                         f" (got {_type_name(proc)})")
    priority = payload.get("priority", 0)
    if isinstance(priority, bool) or not isinstance(priority, int) or not (
            PRIORITY_MIN <= priority <= PRIORITY_MAX):
        raise BadRequest(f"priority must be an integer from {PRIORITY_MIN} to {PRIORITY_MAX} "
                         f"(got {json.dumps(priority) if _jsonable(priority) else priority!r})")
    job_id = parse_job_id(payload["job_id"], idempotency_key) if "job_id" in payload else \
        parse_job_id(None, idempotency_key, body_has_it=False)
    has_data, has_input = "data" in payload, "input" in payload
    if has_data == has_input:
        raise BadRequest("give exactly one of data (a JSON array of items) or input "
                         "(a file under SABOT_DATA_DIR: {\"path\", \"format\", \"column\"})")
    if has_data:
        data = payload["data"]
        if not isinstance(data, list):
            raise BadRequest(f"data must be a JSON array of items, got {_type_name(data)}")
        return SubmitRequest(proc, priority, data, None, job_id)
    return SubmitRequest(proc, priority, None, parse_input(payload["input"]), job_id)


def parse_job_id(body_id: Any, header_id: str | None, *, body_has_it: bool = True
                 ) -> str | None:
    """The client's job id from the body's ``job_id`` (``body_has_it``: the key is there; null
    is refused) and the Idempotency-Key header (either, or both when equal); None when neither
    is given."""
    if not body_has_it:
        body_id = None
    elif body_id is None:
        raise BadRequest("job_id must be a string (your own job id), got null; leave it out "
                         "to have the node pick one", field="job_id")
    if body_id is not None and header_id is not None and body_id != header_id:
        raise BadRequest(f"job_id {body_id!r} and the {IDEMPOTENCY_HEADER} header "
                         f"{header_id!r} differ: give one, or the same in both",
                         field="job_id")
    job_id = body_id if body_id is not None else header_id
    if job_id is None:
        return None
    where = "job_id" if body_id is not None else f"the {IDEMPOTENCY_HEADER} header"
    problem = job_id_problem(job_id)
    if problem is not None:
        raise BadRequest(f"{where}: {problem}", field="job_id")
    return str(job_id)


def parse_input(spec: Any) -> dict[str, Any]:
    if not isinstance(spec, dict):
        raise BadRequest(f"input must be an object {{\"path\", \"format\", \"column\"}}, got "
                         f"{_type_name(spec)}")
    unknown = sorted(set(spec) - set(INPUT_KEYS))
    if unknown:
        raise BadRequest(f"unknown input field(s) {', '.join(map(repr, unknown))}; accepted: "
                         f"{', '.join(INPUT_KEYS)}")
    path = spec.get("path")
    if not (isinstance(path, str) and path):
        raise BadRequest("input.path must be a non-empty string (a file under SABOT_DATA_DIR)")
    for key in ("format", "column"):
        if key in spec and not isinstance(spec[key], str):
            raise BadRequest(f"input.{key} must be a string, got {_type_name(spec[key])}")
    return {k: spec.get(k) for k in INPUT_KEYS}


def _jsonable(value: Any) -> bool:
    try:
        json.dumps(value)
        return True
    except (TypeError, ValueError):
        return False


def query_int(query: Mapping[str, str], name: str, default: int | None, lo: int,
              hi: int) -> int | None:
    raw = query.get(name)
    if raw is None:
        return default
    try:
        value = int(raw)
    except ValueError:
        raise BadRequest(f"query parameter {name}={raw!r} must be an integer from {lo} to {hi}") \
            from None
    if not lo <= value <= hi:
        raise BadRequest(f"query parameter {name}={raw!r} must be an integer from {lo} to {hi}")
    return value


__all__ = [
    "DEFAULT_PAGE",
    "MAX_PAGE",
    "PRIORITY_MAX",
    "PRIORITY_MIN",
    "IDEMPOTENCY_HEADER",
    "BadRequest",
    "SubmitRequest",
    "parse_job_id",
    "parse_input",
    "parse_json",
    "parse_submit",
    "query_int",
]
