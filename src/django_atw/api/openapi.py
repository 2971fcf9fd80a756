"""The OpenAPI 3.1 document of the API, built from the pydantic models in ``schemas.py``.

OpenAPI 3.1 schemas are JSON Schema 2020-12, which is what pydantic emits, so each model's
schema goes into ``components`` unchanged; only the query parameters are unfolded from
``TaskListQuery`` into one parameter each.
"""

from __future__ import annotations

from typing import Any

from django.conf import settings
from pydantic import BaseModel
from pydantic.json_schema import JsonSchemaMode, models_json_schema

from .. import registry
from ..conf import get_settings
from .schemas import (
    ErrorResponse,
    HealthErrorResponse,
    HealthResponse,
    TaskListQuery,
    TaskListResponse,
    TaskResponse,
    TaskSubmitRequest,
    TaskTypesResponse,
    ValidationErrorResponse,
)

VERSION = "1"
_REF = "#/components/schemas/{model}"
_MODELS: list[tuple[type[BaseModel], JsonSchemaMode]] = [
    (TaskSubmitRequest, "validation"),
    (TaskResponse, "serialization"),
    (TaskListResponse, "serialization"),
    (TaskTypesResponse, "serialization"),
    (HealthResponse, "serialization"),
    (ErrorResponse, "serialization"),
    (ValidationErrorResponse, "serialization"),
    (HealthErrorResponse, "serialization"),
]
_ERRORS = {
    "400": "The task type is unknown, or the parameters do not fit the task function.",
    "401": "No credentials, or a bearer token that is unknown or revoked.",
    "403": "A permission is missing, or a session request failed the CSRF check.",
    "404": "No such task, or not one the caller may see.",
    "409": "The task id is taken, or the task could not be cancelled.",
    "413": "The request body is larger than ATW['API_MAX_BODY'].",
    "415": "The body is not sent as Content-Type: application/json (UTF-8).",
    "422": "The request does not match the schema; each problem names its field.",
    "503": "The database does not answer.",
}


def _json(ref: str) -> dict[str, Any]:
    return {"application/json": {"schema": {"$ref": ref}}}


def _responses(success: dict[str, Any], errors: str) -> dict[str, Any]:
    responses = dict(success)
    for code in errors.split():
        model = ValidationErrorResponse if code == "422" else ErrorResponse
        response: dict[str, Any] = {"description": _ERRORS[code], "content": _json(_ref(model))}
        if code == "401":
            response["headers"] = {
                "WWW-Authenticate": {"schema": {"type": "string"}, "description": "The Bearer challenge."}
            }
        responses[code] = response
    return responses


def _ref(model: type[BaseModel]) -> str:
    return _REF.format(model=model.__name__)


def _without_null(schema: dict[str, Any]) -> dict[str, Any]:
    """A query parameter is absent rather than null: drop the null branch of ``X | None``."""
    options = schema.get("anyOf")
    if not options:
        return schema
    rest = [option for option in options if option.get("type") != "null"]
    trimmed = {key: value for key, value in schema.items() if key != "anyOf"}
    if len(rest) == 1:
        return {**rest[0], **trimmed}
    return {**trimmed, "anyOf": rest}


def _query_parameters(defs: dict[str, Any]) -> list[dict[str, Any]]:
    schema = TaskListQuery.model_json_schema(ref_template=_REF)
    defs.update(schema.pop("$defs", {}))
    parameters = []
    for name, prop in schema["properties"].items():
        prop = _without_null(prop)
        prop.pop("title", None)
        if prop.get("default", 0) is None:
            del prop["default"]
        description = prop.pop("description", None)
        parameter: dict[str, Any] = {"name": name, "in": "query", "required": False, "schema": prop}
        if description:
            parameter["description"] = description
        if prop.pop("deprecated", False):
            parameter["deprecated"] = True
        parameters.append(parameter)
    return parameters


def build_document(prefix: str = "/") -> dict[str, Any]:
    """Return the OpenAPI 3.1 document with every path under ``prefix`` (ending in "/")."""
    _, top = models_json_schema(_MODELS, ref_template=_REF)
    schemas: dict[str, Any] = dict(top.get("$defs", {}))
    # The registered types as examples: client generators and fuzzers then reach real tasks.
    known_types = registry.get_all_task_types()
    if known_types:
        schemas["TaskSubmitRequest"]["properties"]["task_type"]["examples"] = known_types
    task_id = {
        "name": "task_id",
        "in": "path",
        "required": True,
        "schema": {"type": "string", "minLength": 1, "maxLength": 255},
    }
    task = {"200": {"description": "The task.", "content": _json(_ref(TaskResponse))}}
    types = {
        "summary": "List the registered task types with their parameter schemas",
        "operationId": "listTaskTypes",
        "responses": _responses(
            {"200": {"description": "Task types.", "content": _json(_ref(TaskTypesResponse))}}, "401 403 413"
        ),
    }
    paths: dict[str, Any] = {
        "tasks": {
            "get": {
                "summary": "List tasks, newest first, one page at a time",
                "operationId": "listTasks",
                "parameters": _query_parameters(schemas),
                "responses": _responses(
                    {"200": {"description": "One page.", "content": _json(_ref(TaskListResponse))}},
                    "401 413 422",
                ),
            },
            "post": {
                "summary": "Submit a task",
                "operationId": "submitTask",
                "requestBody": {"required": True, "content": _json(_ref(TaskSubmitRequest))},
                "responses": _responses(
                    {"201": {"description": "The stored task.", "content": _json(_ref(TaskResponse))}},
                    "400 401 403 409 413 415 422",
                ),
            },
        },
        "tasks/types": {"get": {**types, "operationId": "listTaskTypesUnderTasks"}},
        "tasks/{task_id}": {
            "parameters": [task_id],
            "get": {
                "summary": "Get a task",
                "operationId": "getTask",
                "responses": _responses(task, "401 404 413"),
            },
            "delete": {
                "summary": "Cancel a task (204 too when it had already finished)",
                "operationId": "cancelTask",
                "responses": _responses(
                    {"204": {"description": "Cancelled, cancel requested, or already finished."}},
                    "401 403 404 409 413",
                ),
            },
        },
        "types": {"get": types},
        "health": {
            "get": {
                "summary": "Report workers, queue depth and database reachability",
                "operationId": "health",
                **({"security": []} if get_settings().API_PUBLIC_HEALTH else {}),
                "responses": _responses(
                    {
                        "200": {
                            "description": "The database answers.",
                            "content": _json(_ref(HealthResponse)),
                        },
                        "503": {
                            "description": "The database does not answer.",
                            "content": _json(_ref(HealthErrorResponse)),
                        },
                    },
                    "401 413",
                ),
            }
        },
        "openapi.json": {
            "get": {
                "summary": "This document",
                "operationId": "openapi",
                "responses": _responses(
                    {
                        "200": {
                            "description": "The OpenAPI 3.1 document.",
                            "content": {"application/json": {"schema": {"type": "object"}}},
                        }
                    },
                    "401 413",
                ),
            }
        },
    }
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "django-atw tasks",
            "version": VERSION,
            "description": "Submit, inspect, list and cancel durable background tasks.",
        },
        "paths": {prefix + path: item for path, item in paths.items()},
        "components": {
            "schemas": schemas,
            "securitySchemes": {
                "bearerAuth": {"type": "http", "scheme": "bearer", "description": "manage.py atw_token"},
                "session": {"type": "apiKey", "in": "cookie", "name": settings.SESSION_COOKIE_NAME},
            },
        },
        "security": [{"bearerAuth": []}, {"session": []}],
    }
