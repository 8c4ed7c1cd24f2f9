"""OpenAPI 3.1 description of the worker's operator API (``/api/openapi.json``).

Written by hand rather than generated, because Faust views carry no schema; a unit test checks that
every route the worker registers is described here and that the examples the test builds validate
against these schemas, so the document cannot silently drift from the code.
"""

from __future__ import annotations

from typing import Any

from streams.web.board import STATES

_STATE_ENUM = list(STATES)
_OUTAGE_STATES = ["suspected", "open", "degraded", "resolved"]


def _ref(name: str) -> dict[str, str]:
    return {"$ref": f"#/components/schemas/{name}"}


def _json(schema: dict[str, Any], description: str) -> dict[str, Any]:
    return {"description": description, "content": {"application/json": {"schema": schema}}}


_NULLABLE_INT = {"type": ["integer", "null"]}
_NULLABLE_STR = {"type": ["string", "null"]}

SCHEMAS: dict[str, Any] = {
    "Cell": {
        "type": "object",
        "description": "One (exchange, chain) as the detector and the chain monitor see it now.",
        "required": ["exchange", "chain", "state", "label", "hourly", "hourly_start"],
        "properties": {
            "exchange": {"type": "string"},
            "chain": {"type": "string"},
            "state": {"type": "string", "enum": _STATE_ENUM},
            "label": {"type": "string", "description": "Human-readable state."},
            "chain_state": {"type": ["string", "null"], "enum": ["ok", "chain_stalled", "no_data", None]},
            "outage_id": _NULLABLE_STR,
            "last_withdrawal_time": {**_NULLABLE_INT, "description": "Block time (s) of the last withdrawal."},
            "last_withdrawal_tx": _NULLABLE_STR,
            "head_number": {"type": "integer"},
            "head_time": _NULLABLE_INT,
            "since_last_withdrawal_s": {**_NULLABLE_INT, "description": "Chain time from the last withdrawal to "
                                                                        "the newest block."},
            "withdrawals_seen": {"type": "integer"},
            "expected_rate_per_hour": {"type": "number"},
            "hourly_start": {"type": "integer", "description": "Epoch seconds of the first hourly bucket."},
            "hourly": {"type": "array", "items": {"type": "integer", "minimum": 0}, "minItems": 24, "maxItems": 24,
                       "description": "Withdrawals per hour of chain time, oldest first."},
        },
    },
    "Chain": {
        "type": "object",
        "required": ["chain", "state", "head_number"],
        "properties": {
            "chain": {"type": "string"},
            "state": {"type": "string", "enum": ["ok", "chain_stalled", "no_data"]},
            "head_number": {"type": "integer"},
            "head_time": {"type": "integer"},
            "last_received_at": {"type": "number", "description": "Wall-clock seconds."},
            "node_head_number": _NULLABLE_INT,
        },
    },
    "Incident": {
        "type": "object",
        "description": "Latest version of an outage (the outage.v1 record plus duration and grouping).",
        "required": ["outage_id", "version", "exchange", "scope", "state", "started_at", "duration_s", "confidence"],
        "properties": {
            "outage_id": {"type": "string"},
            "version": {"type": "integer"},
            "exchange": {"type": "string"},
            "scope": {"type": "array", "items": {"type": "string"}},
            "state": {"type": "string", "enum": _OUTAGE_STATES},
            "started_at": {"type": "integer"},
            "detected_at": {"type": "integer"},
            "resolved_at": _NULLABLE_INT,
            "duration_s": {"type": "integer", "description": "Chain time from start to resolution (or to now)."},
            "confidence": {"type": "number", "minimum": 0, "maximum": 1},
            "p_value": {"type": "number"},
            "expected_count": {"type": "number"},
            "observed_count": {"type": "integer"},
            "reason": {"type": "string"},
            "correlated_incident_id": _NULLABLE_STR,
        },
    },
    "Correlated": {
        "type": "object",
        "required": ["incident_id", "exchanges", "outage_ids"],
        "properties": {
            "incident_id": {"type": "string"},
            "version": {"type": "integer"},
            "exchanges": {"type": "array", "items": {"type": "string"}},
            "outage_ids": {"type": "array", "items": {"type": "string"}},
            "started_at": {"type": "integer"},
            "likely_cause": {"type": "string"},
            "common": {"type": "object", "additionalProperties": {"type": "string"}},
        },
    },
    "Status": {
        "type": "object",
        "required": ["generated_at", "version", "states", "counts", "exchanges", "chains", "cells", "incidents",
                     "correlated"],
        "properties": {
            "generated_at": {"type": "number"},
            "version": {"type": "integer"},
            "states": {"type": "array", "items": {"type": "object", "required": ["state", "label"], "properties": {
                "state": {"type": "string", "enum": _STATE_ENUM}, "label": {"type": "string"}}}},
            "counts": {"type": "object", "additionalProperties": {"type": "integer"}},
            "exchanges": {"type": "array", "items": {"type": "string"}},
            "chains": {"type": "array", "items": _ref("Chain")},
            "cells": {"type": "array", "items": _ref("Cell")},
            "incidents": {"type": "array", "items": _ref("Incident")},
            "correlated": {"type": "array", "items": _ref("Correlated")},
            "budgets": {"type": "array", "items": _ref("Budget")},
        },
    },
    "Budget": {
        "type": "object",
        "description": "An exchange's false-alarm budget and the rate its thresholds are estimated to give on "
                       "its own normal traffic (null while learning).",
        "required": ["exchange", "budget", "budget_days", "estimated", "state", "passed", "expected"],
        "properties": {
            "exchange": {"type": "string"},
            "budget": {"type": "number"},
            "budget_days": {"type": "number"},
            "estimated": {"type": ["number", "null"]},
            "state": {"type": "string", "enum": ["kept", "over", "erratic", "learning"]},
            "passed": {"type": "number"},
            "expected": {"type": "number"},
        },
    },
    "Check": {
        "type": "object",
        "required": ["name", "status", "reason"],
        "properties": {
            "name": {"type": "string", "enum": ["kafka", "clickhouse", "chains"]},
            "status": {"type": "string", "enum": ["ok", "degraded", "failing"]},
            "reason": {"type": "string"},
        },
    },
    "Health": {
        "type": "object",
        "required": ["status"],
        "properties": {
            "status": {"type": "string", "enum": ["ok", "degraded", "failing"]},
            "reason": {"type": "string"},
            "checks": {"type": "array", "items": _ref("Check")},
        },
    },
}

PATHS: dict[str, Any] = {
    "/ui": {"get": {"summary": "The live status page (HTML).", "responses": {
        "200": {"description": "HTML page", "content": {"text/html": {}}}}}},
    "/api/status": {"get": {
        "summary": "Exchanges x chains grid, chain states and recent incidents, from the worker's memory.",
        "responses": {"200": _json(_ref("Status"), "The current picture.")}}},
    "/api/events": {"get": {
        "summary": "Server-sent events: an `event: status` with the /api/status body whenever it changes.",
        "responses": {"200": {"description": "An endless text/event-stream.",
                              "content": {"text/event-stream": {"schema": {"type": "string"}}}},
                      "503": {"description": "Too many open streams."}}}},
    "/api/outages": {"get": {
        "summary": "Recent incidents known to this worker (latest version each), newest first.",
        "description": "For the full history use /outages (ClickHouse).",
        "parameters": [
            {"name": "exchange", "in": "query", "schema": {"type": "string"}},
            {"name": "state", "in": "query", "schema": {"type": "string", "enum": _OUTAGE_STATES}},
            {"name": "limit", "in": "query", "schema": {"type": "integer", "minimum": 1, "default": 100}},
        ],
        "responses": {"200": _json({"type": "array", "items": _ref("Incident")}, "Incidents."),
                      "400": _json({"type": "object", "properties": {"error": {"type": "string"}}},
                                   "A bad parameter.")}}},
    "/api/openapi.json": {"get": {"summary": "This document.", "responses": {
        "200": _json({"type": "object"}, "OpenAPI 3.1 document.")}}},
    "/health/live": {"get": {"summary": "Liveness: the process answers and the app has not crashed.", "responses": {
        "200": _json(_ref("Health"), "Alive."), "503": _json(_ref("Health"), "Crashed: restart it.")}}},
    "/health/ready": {"get": {
        "summary": "Readiness: Kafka and ClickHouse reachable (503 if not); a chain without data is `degraded` "
                   "(still 200).",
        "responses": {"200": _json(_ref("Health"), "Ready (ok or degraded)."),
                      "503": _json(_ref("Health"), "Not ready: a failing check says why.")}}},
    "/metrics": {"get": {"summary": "Prometheus metrics of the worker.", "responses": {
        "200": {"description": "Prometheus text format", "content": {"text/plain": {}}}}}},
}


def openapi_document() -> dict[str, Any]:
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "haltwatch worker operator API",
            "version": "1",
            "description": "Live withdrawal status of the exchanges this worker owns, health and metrics. "
                           "Stored history is under /outages and /status (ClickHouse).",
        },
        "paths": PATHS,
        "components": {"schemas": SCHEMAS},
    }
