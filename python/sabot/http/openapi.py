"""The OpenAPI 3 document of the HTTP API, kept by hand beside the routes in ``server.py``.

tests/http/test_openapi.py fuzzes the running server against it (schemathesis), so a route and
its description cannot drift apart unnoticed.
"""

from __future__ import annotations

import copy
from typing import Any

from ..job_ids import JOB_ID_MAX
from ..states import JobState
from ..version import __version__
from .validation import MAX_PAGE, PRIORITY_MAX, PRIORITY_MIN

_ERROR = {"$ref": "#/components/schemas/Error"}
_JOB_STATES = [state.value for state in JobState]
_NULLABLE_TIME = {"type": "number", "nullable": True, "description": "UNIX seconds"}


def _json(schema: dict[str, Any], description: str) -> dict[str, Any]:
    return {"description": description, "content": {"application/json": {"schema": schema}}}


def _err(description: str) -> dict[str, Any]:
    return _json(_ERROR, description)


_SCHEMAS: dict[str, Any] = {
    "Error": {
        "type": "object",
        "required": ["error", "status"],
        "properties": {
            "error": {"type": "string", "description": "what was wrong and what is accepted"},
            "status": {"type": "integer", "description": "the HTTP status, repeated"},
        },
        "additionalProperties": True,
    },
    "Health": {
        "type": "object",
        "required": ["status", "role", "node_id", "cluster_name", "version", "uptime_s"],
        "properties": {
            "status": {"type": "string", "enum": ["ok", "failing"]},
            "problem": {"type": "string",
                        "description": "why the node cannot do its job (with status failing)"},
            "role": {"type": "string", "enum": ["single-node", "coordinator", "worker"]},
            "node_id": {"type": "string"},
            "cluster_name": {"type": "string"},
            "version": {"type": "string"},
            "uptime_s": {"type": "number"},
            "max_request_bytes": {"type": "integer",
                                  "description": "largest request body (SABOT_MAX_REQUEST_MB)"},
        },
        "additionalProperties": True,
    },
    "Ready": {
        "type": "object",
        "required": ["ready", "role", "node_id"],
        "properties": {"ready": {"type": "boolean"}, "role": {"type": "string"},
                       "node_id": {"type": "string"}},
    },
    "Node": {
        "type": "object",
        "required": ["node_id", "status"],
        "properties": {
            "node_id": {"type": "string"},
            "role": {"type": "string"},
            "status": {"type": "string", "description": "alive, suspect, dead, stopping"},
            "address": {"type": "string"},
            "cores": {"type": "integer"},
            "utilization_percent": {"type": "number"},
            "queue_depth": {"type": "integer"},
            "last_seen": {"type": "number", "description": "UNIX seconds"},
        },
        "additionalProperties": True,
    },
    "NodeList": {
        "type": "object",
        "required": ["nodes", "count"],
        "properties": {"nodes": {"type": "array", "items": {"$ref": "#/components/schemas/Node"}},
                       "count": {"type": "integer"}},
    },
    "Stats": {
        "type": "object",
        "required": ["nodes", "jobs", "system_resources"],
        "properties": {
            "nodes": {"description": "node counts (or the nodes) this node knows"},
            "jobs": {"description": "job counts by state"},
            "system_resources": {"type": "object", "additionalProperties": True},
        },
        "additionalProperties": True,
    },
    "InputFile": {
        "type": "object",
        "required": ["path"],
        "properties": {
            "path": {"type": "string", "minLength": 1,
                     "description": "a file under the node's SABOT_DATA_DIR (relative to it)"},
            "format": {"type": "string", "enum": ["parquet", "csv", "arrow", "jsonl"],
                       "description": "default: from the file name's ending"},
            "column": {"type": "string", "description": "needed when the file has several"},
        },
        "additionalProperties": False,
    },
    "SubmitInline": {
        "type": "object",
        "required": ["processor_func", "data"],
        "properties": {
            "processor_func": {"type": "string", "minLength": 1,
                               "description": "a registered processor (square, double, ...)"},
            "data": {"type": "array", "items": {}, "description": "the items, any JSON values"},
            "priority": {"type": "integer", "minimum": PRIORITY_MIN, "maximum": PRIORITY_MAX,
                         "default": 0, "description": "higher runs first"},
            "job_id": {"type": "string", "minLength": 1, "maxLength": JOB_ID_MAX,
                       "pattern": "^[A-Za-z0-9._:-]+$",
                       "description": "your own job id, an idempotency key (the same as the "
                                      "Idempotency-Key header): the same job under it again "
                                      "returns that job, other content answers 409"},
        },
        "additionalProperties": False,
    },
    "SubmitFile": {
        "type": "object",
        "required": ["processor_func", "input"],
        "properties": {
            "processor_func": {"type": "string", "minLength": 1},
            "input": {"$ref": "#/components/schemas/InputFile"},
            "priority": {"type": "integer", "minimum": PRIORITY_MIN, "maximum": PRIORITY_MAX,
                         "default": 0},
            "job_id": {"type": "string", "minLength": 1, "maxLength": JOB_ID_MAX,
                       "pattern": "^[A-Za-z0-9._:-]+$",
                       "description": "your own job id, an idempotency key (the same as the "
                                      "Idempotency-Key header): the same job under it again "
                                      "returns that job, other content answers 409"},
        },
        "additionalProperties": False,
    },
    "JobAccepted": {
        "type": "object",
        "required": ["job_id", "status"],
        "properties": {"job_id": {"type": "string"},
                       "status": {"type": "string", "enum": _JOB_STATES}},
        "additionalProperties": True,
    },
    "Progress": {
        "type": "object",
        "required": ["done", "total", "fraction"],
        "properties": {"done": {"type": "integer"}, "total": {"type": "integer"},
                       "fraction": {"type": "number", "minimum": 0, "maximum": 1}},
        "additionalProperties": True,
    },
    "JobSummary": {
        "type": "object",
        "required": ["job_id", "status", "progress", "error", "created_at", "finished_at"],
        "properties": {
            "job_id": {"type": "string"},
            "status": {"type": "string", "enum": _JOB_STATES},
            "processor": {"type": "string"},
            "priority": {"type": "integer"},
            "items": {"type": "integer"},
            "progress": {"$ref": "#/components/schemas/Progress"},
            "error": {"type": "string", "nullable": True},
            "created_at": {"type": "number"},
            "started_at": _NULLABLE_TIME,
            "finished_at": _NULLABLE_TIME,
            "waiting_for": {"type": "string", "description":
                            "why an unfinished job is not progressing, when the node knows "
                            "(for example: no worker is connected)"},
        },
        "additionalProperties": True,
    },
    "Job": {
        "allOf": [
            {"$ref": "#/components/schemas/JobSummary"},
            {
                "type": "object",
                "required": ["result"],
                "properties": {
                    "result": {"type": "array", "items": {}, "nullable": True,
                               "description": "result[result_offset:next_offset]; null until "
                                              "the job completed"},
                    "result_offset": {"type": "integer"},
                    "result_total": {"type": "integer", "nullable": True},
                    "next_offset": {"type": "integer", "nullable": True,
                                    "description": "offset of the next page; null on the last"},
                },
            },
        ],
    },
    "JobList": {
        "type": "object",
        "required": ["jobs", "count"],
        "properties": {
            "jobs": {"type": "array", "items": {"$ref": "#/components/schemas/JobSummary"}},
            "count": {"type": "integer"},
        },
    },
    "ClusterInfo": {
        "type": "object",
        "description": "what a worker needs to join (coordinator only)",
        "required": ["cluster_name"],
        "properties": {"cluster_name": {"type": "string"}},
        "additionalProperties": True,
    },
    "History": {
        "type": "object",
        "required": ["interval_s", "samples"],
        "properties": {
            "interval_s": {"type": "number"},
            "samples": {"type": "array", "items": {
                "type": "object", "required": ["time", "items_per_second", "items"],
                "properties": {"time": {"type": "number"},
                               "items_per_second": {"type": "number"},
                               "items": {"type": "integer", "minimum": 0}}}},
        },
    },
}

_JOB_ID = {"name": "job_id", "in": "path", "required": True, "schema": {"type": "string"}}


def _paths() -> dict[str, Any]:
    unauthorized = {"401": _err("missing or wrong bearer token (when SABOT_AUTH_TOKEN is set)")}
    return {
        "/": {"get": {
            "summary": "Status page (HTML): nodes, jobs with progress, throughput",
            "security": [],
            "responses": {"200": {"description": "the page",
                                  "content": {"text/html": {"schema": {"type": "string"}}}}},
        }},
        "/health": {"get": {
            "summary": "Liveness: 200 while the node can work, 503 (with a problem) when it cannot",
            "security": [],
            "responses": {"200": _json({"$ref": "#/components/schemas/Health"}, "alive"),
                          "503": _json({"$ref": "#/components/schemas/Health"},
                                       "cannot work (a liveness probe restarts it)")},
        }},
        "/ready": {"get": {
            "summary": "Readiness: 200 once the node takes work, 503 before",
            "security": [],
            "responses": {"200": _json({"$ref": "#/components/schemas/Ready"}, "ready"),
                          "503": _json({"$ref": "#/components/schemas/Ready"}, "not ready")},
        }},
        "/metrics": {"get": {
            "summary": "Prometheus metrics (text exposition format)", "security": [],
            "responses": {"200": {"description": "metrics", "content": {
                "text/plain": {"schema": {"type": "string"}}}}},
        }},
        "/openapi.json": {"get": {
            "summary": "This document", "security": [],
            "responses": {"200": _json({"type": "object"}, "the OpenAPI document")},
        }},
        "/nodes": {"get": {
            "summary": "Nodes this node knows (the cluster's workers on a coordinator)",
            "responses": {"200": _json({"$ref": "#/components/schemas/NodeList"}, "nodes"),
                          **unauthorized},
        }},
        "/stats": {"get": {
            "summary": "Node or cluster statistics",
            "responses": {"200": _json({"$ref": "#/components/schemas/Stats"}, "statistics"),
                          **unauthorized},
        }},
        "/history": {"get": {
            "summary": "Throughput samples of the last minutes (for the status page)",
            "responses": {"200": _json({"$ref": "#/components/schemas/History"}, "samples"),
                          **unauthorized},
        }},
        "/cluster": {"get": {
            "summary": "What a worker needs to join; 404 on nodes that are not coordinators",
            "responses": {"200": _json({"$ref": "#/components/schemas/ClusterInfo"}, "cluster"),
                          "404": _err("this node is not a coordinator"), **unauthorized},
        }},
        "/submit_job": {"post": {
            "summary": "Run a named processor over inline data or a file under SABOT_DATA_DIR",
            "requestBody": {"required": True, "content": {"application/json": {"schema": {
                "oneOf": [{"$ref": "#/components/schemas/SubmitInline"},
                          {"$ref": "#/components/schemas/SubmitFile"}]}}}},
            "parameters": [{
                "name": "Idempotency-Key", "in": "header", "required": False,
                "schema": {"type": "string", "minLength": 1, "maxLength": JOB_ID_MAX,
                           "pattern": "^[A-Za-z0-9._:-]+$"},
                "description": "your own job id (as the body's job_id): a resubmit under it "
                               "returns the same job (header Idempotent-Replayed: true), never "
                               "a second run"}],
            "responses": {
                "200": _json({"$ref": "#/components/schemas/JobAccepted"},
                             "accepted (or, for a resubmit of a job id, that job)"),
                "400": _err("malformed JSON, wrong types, unknown processor (the error lists "
                            "the known ones), bad input file, a bad job id"),
                "409": _err("the job id is taken by a job with other content (function, data "
                            "or priority)"),
                "507": _err("the coordinator cannot write its journal (a full disk under "
                            "SABOT_DATA_DIR; the error names it and the free space): not "
                            "accepted, submit again later (Retry-After)"),
                "408": _err("the body did not arrive in time"),
                "413": _err("the body is larger than SABOT_MAX_REQUEST_MB"),
                **unauthorized,
            },
        }},
        "/jobs": {"get": {
            "summary": "Recent jobs, newest first, without results",
            "parameters": [{"name": "limit", "in": "query", "required": False,
                            "schema": {"type": "integer", "minimum": 1, "maximum": 10000,
                                       "default": 100}}],
            "responses": {"200": _json({"$ref": "#/components/schemas/JobList"}, "jobs"),
                          "400": _err("bad limit"), **unauthorized},
        }},
        "/job/{job_id}": {
            "get": {
                "summary": "A job's state, progress and (a page of) its result",
                "parameters": [
                    _JOB_ID,
                    {"name": "offset", "in": "query", "required": False,
                     "schema": {"type": "integer", "minimum": 0, "default": 0}},
                    {"name": "limit", "in": "query", "required": False,
                     "schema": {"type": "integer", "minimum": 0, "maximum": MAX_PAGE},
                     "description": "items of the result per page (0: state and progress only)"},
                ],
                "responses": {"200": _json({"$ref": "#/components/schemas/Job"}, "the job"),
                              "400": _err("bad offset or limit"),
                              "404": _err("no such job"),
                              "410": _err("the job finished and the retention deleted it "
                                          "(SABOT_RESULT_TTL_S or SABOT_RESULT_RETENTION_MB; "
                                          "code job_expired)"),
                              **unauthorized},
            },
            "delete": {
                "summary": "Cancel a pending or running job (a finished job stays as it is)",
                "parameters": [_JOB_ID],
                "responses": {"200": _json({"$ref": "#/components/schemas/JobSummary"},
                                           "the job after the cancel"),
                              "404": _err("no such job"),
                              "410": _err("the job expired (code job_expired)"), **unauthorized},
            },
        },
        **_pipeline_paths(unauthorized),
    }


_PIPELINE_ID = {"name": "pipeline_id", "in": "path", "required": True,
                "schema": {"type": "string"}}
_PIPELINE = {"type": "object", "description": "pipeline_id, name, state (starting, running, "
             "restarting, stopped, finished, failed, cancelled), instances, key_groups, error, "
             "attempt, restarts, savepoint, checkpoints {state_dir, interval_ms, committed, "
             "last}, tasks [{instance, worker, state, stats}]"}


def _pipeline_paths(unauthorized: dict[str, Any]) -> dict[str, Any]:
    not_here = _err("this node is not a coordinator, or there is no such pipeline")
    return {
        "/submit_pipeline": {"post": {
            "summary": "Run a registered pipeline (@st.pipeline in a module of "
                       "SABOT_PROCESSORS) on the workers; no code is taken from the request",
            "requestBody": {"required": True, "content": {"application/json": {"schema": {
                "type": "object", "required": ["pipeline"], "properties": {
                    "pipeline": {"type": "string"}, "params": {"type": "object"},
                    "instances": {"type": "integer", "minimum": 1},
                    "state_dir": {"type": "string"},
                    "checkpoint_interval": {"type": "string", "example": "10s"},
                    "pipeline_id": {"type": "string"}}}}}},
            "responses": {"200": _json({"type": "object", "description": "pipeline_id, "
                                        "instances, collects"}, "the pipeline was placed"),
                          "400": _err("a bad request or parameters"),
                          "404": _err("no such registered pipeline (the message names them)"),
                          "503": _err("no worker is alive"), **unauthorized},
        }},
        "/pipelines": {"get": {
            "summary": "The streaming pipelines on the cluster",
            "responses": {"200": _json({"type": "object", "properties": {
                "pipelines": {"type": "array", "items": _PIPELINE},
                "count": {"type": "integer"}}}, "the pipelines"),
                "404": not_here, **unauthorized},
        }},
        "/pipeline/{pipeline_id}": {"get": {
            "summary": "One pipeline's state, tasks and checkpoints",
            "parameters": [_PIPELINE_ID],
            "responses": {"200": _json(_PIPELINE, "the pipeline"), "404": not_here,
                          **unauthorized},
        }},
        "/pipeline/{pipeline_id}/results": {"get": {
            "summary": "A finished pipeline's collected rows (null until it finished)",
            "parameters": [_PIPELINE_ID],
            "responses": {"200": _json({"type": "object", "properties": {
                "pipeline_id": {"type": "string"}, "state": {"type": "string"},
                "rows": {"type": "array", "nullable": True, "items": {"type": "object"}}}},
                "the rows"), "404": not_here, **unauthorized},
        }},
        **{f"/pipeline/{{pipeline_id}}/{action}": {"post": {
            "summary": summary,
            "parameters": [_PIPELINE_ID],
            "requestBody": {"required": False, "content": {"application/json": {
                "schema": {"type": "object", "properties": props}}}},
            "responses": {"200": _json(_PIPELINE, "the pipeline after the request"),
                          "400": _err("a bad body"), "404": not_here,
                          "409": _err("the pipeline's state refuses the request (the message "
                                      "says why)"), **unauthorized},
        }} for action, summary, props in (
            ("stop", ("Stop a running pipeline: with a savepoint (default; resumable) once a "
                      "checkpoint taken now is committed, or at once"),
             {"savepoint": {"type": "boolean", "default": True}}),
            ("resume", ("Start a stopped pipeline again from its savepoint, on `instances` "
                        "tasks (default: as before; another number re-cuts its state)"),
             {"instances": {"type": "integer", "minimum": 1}}),
            ("cancel", "End a pipeline", {}))},
    }


def openapi_document(auth: bool, processors: list[str] | None = None) -> dict[str, Any]:
    """The document; ``auth`` says whether this node requires the bearer token, ``processors``
    are the names this node runs (listed as the accepted values of ``processor_func``)."""
    doc: dict[str, Any] = {
        "openapi": "3.0.3",
        "info": {
            "title": "Sabot node HTTP API",
            "version": __version__,
            "description": "Single-node, coordinator and worker nodes serve this API. Errors "
                           "are JSON objects {\"error\": ..., \"status\": ...}.",
        },
        "paths": _paths(),
        "components": {"schemas": copy.deepcopy(_SCHEMAS)},
    }
    if processors:
        for name in ("SubmitInline", "SubmitFile"):
            doc["components"]["schemas"][name]["properties"]["processor_func"]["enum"] = \
                sorted(processors)
    if auth:
        doc["components"]["securitySchemes"] = {"bearer": {"type": "http", "scheme": "bearer"}}
        doc["security"] = [{"bearer": []}]
    else:
        for item in doc["paths"].values():
            for op in item.values():
                op.pop("security", None)
                op["responses"].pop("401", None)
    return doc


__all__ = ["openapi_document"]
