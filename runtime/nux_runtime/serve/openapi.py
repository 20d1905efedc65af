"""The OpenAPI document of a served workbook, written from its typed inputs and output.

FastAPI describes the routes; this module replaces the request and response bodies with the
workbook's own JSON schemas (the served inputs, ``spec.served.inputs``, without those only
evaluation reads, and ``spec.output_schema()``), and documents every error status with the one
error shape, ``{error, field, detail}``.
"""

from __future__ import annotations

import copy
from typing import Any

from nux_runtime.spec import WorkbookSpec

__all__ = ["FEEDBACK_SCHEMA", "workbook_openapi"]

FEEDBACK_SCHEMA: dict[str, Any] = {
    "type": "object",
    "properties": {
        "request_id": {"type": "string", "minLength": 1, "maxLength": 64,
                       "pattern": "^[A-Za-z0-9_.-]+$"},
        "score": {"type": "number", "minimum": 0, "maximum": 1},
        "thumbs": {"type": "string", "enum": ["up", "down"]},
        "comment": {"type": "string", "maxLength": 2000},
    },
    "required": ["request_id"],
    "anyOf": [{"required": ["score"]}, {"required": ["thumbs"]}],
    "additionalProperties": False,
}

_PROBLEM = {
    "type": "object",
    "properties": {"error": {"type": "string"}, "field": {"type": "string"},
                   "detail": {"type": "string"}},
    "required": ["error", "field", "detail"],
}

_STAGE_TRACE = {
    "type": "object",
    "properties": {
        "status": {"type": "string", "enum": ["ok", "error", "skipped"]},
        "latency_ms": {"type": "number"}, "tokens_in": {"type": "integer"},
        "tokens_out": {"type": "integer"}, "cost_usd": {"type": "number"},
        "cache_hit": {"type": "boolean"}, "output_preview": {"type": "string"},
        "reason": {"type": "string"},
    },
}

_ERRORS = {
    "400": "Malformed body or text refused by the injection policy",
    "401": "No API key", "403": "Unknown API key", "413": "Body too large",
    "422": "Inputs do not match the workbook's input schema, or a stage refused them",
    "429": "Rate limit reached (see Retry-After)",
    "500": "A stage failed", "502": "The answer failed validation and so did its fallback",
    "503": "A stage is unavailable", "504": "A stage timed out",
}


def _problem_responses(*codes: str) -> dict[str, Any]:
    return {code: {"description": _ERRORS[code], "content": {
        "application/json": {"schema": {"$ref": "#/components/schemas/Problem"}}}}
        for code in codes}


def workbook_openapi(base: dict[str, Any], spec: WorkbookSpec, *,
                     keys_required: bool = True) -> dict[str, Any]:
    """``base`` (FastAPI's document, with the API-key security schemes its routes depend on)
    with the workbook's request and response schemas; without required keys, each secured
    operation also admits no key (an empty security requirement)."""
    doc = copy.deepcopy(base)
    if not keys_required:
        for operations in doc.get("paths", {}).values():
            for operation in operations.values():
                if isinstance(operation, dict) and operation.get("security"):
                    operation["security"] = [*operation["security"], {}]
    doc["info"] = {"title": f"{spec.name} (NUX workbook)", "version": spec.hash[:12],
                   "description": spec.description or f"The {spec.name} workbook, served."}
    schemas = doc.setdefault("components", {}).setdefault("schemas", {})
    inputs = copy.deepcopy(spec.served.inputs)  # no input that only evaluation reads
    schemas["Inputs"] = inputs
    schemas["Output"] = copy.deepcopy(spec.output_schema()) or {}
    schemas["Problem"] = _PROBLEM
    schemas["StageTrace"] = _STAGE_TRACE
    schemas["RunResponse"] = {
        "type": "object",
        "properties": {
            "output": {"$ref": "#/components/schemas/Output"},
            "request_id": {"type": "string"},
            "spec_hash": {"type": "string"},
            "cache": {"type": ["string", "null"], "enum": ["exact", "semantic", None]},
            "fallback": {"type": ["string", "null"]},
            "stages": {"type": "object",
                       "additionalProperties": {"$ref": "#/components/schemas/StageTrace"}},
        },
        "required": ["output", "request_id", "stages"],
    }
    schemas["Feedback"] = FEEDBACK_SCHEMA
    body = {"required": True, "content": {"application/json": {
        "schema": {"$ref": "#/components/schemas/Inputs"}}}}
    paths = doc.setdefault("paths", {})
    run = paths.setdefault("/v1/run", {}).setdefault("post", {})
    run.update(summary="Run the workbook on one request", requestBody=body, responses={
        "200": {"description": "The answer", "content": {"application/json": {
            "schema": {"$ref": "#/components/schemas/RunResponse"}}}},
        **_problem_responses("400", "401", "403", "413", "422", "429", "500", "502", "503",
                            "504")})
    stream = paths.setdefault("/v1/run/stream", {}).setdefault("post", {})
    stream.update(summary="Run the workbook; the answer's tokens as server-sent events",
                  requestBody=copy.deepcopy(body), responses={
                      "200": {"description": "`token` events, then `done` (or `error`)",
                              "content": {"text/event-stream": {"schema": {"type": "string"}}}},
                      **_problem_responses("400", "401", "403", "413", "422", "429")})
    feedback = paths.setdefault("/v1/feedback", {}).setdefault("post", {})
    feedback.update(summary="Score an answer (0..1) or give it a thumbs up or down",
                    requestBody={"required": True, "content": {"application/json": {
                        "schema": {"$ref": "#/components/schemas/Feedback"}}}},
                    responses={"202": {"description": "Recorded", "content": {
                        "application/json": {"schema": {"type": "object"}}}},
                        **_problem_responses("400", "401", "403", "413", "422", "429")})
    return doc
