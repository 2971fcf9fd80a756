"""The exact body of every error status: the original router's ``detail`` beside our ``error``."""

from __future__ import annotations

from typing import Any

import pytest
from django.db import DatabaseError
from django.middleware.csrf import REASON_NO_CSRF_COOKIE
from django.test import AsyncClient, override_settings

from django_atw import TaskStatus, aenqueue, store
from django_atw.api import views
from django_atw.models import TaskRecord
from django_atw.registry import get_all_task_types
from tests.api.conftest import ALL_PERMS, API, TokenClient

pytestmark = pytest.mark.django_db(transaction=True)

TASK_DEFINITION = {"error_type": "TaskDefinitionError", "category": "ErrorCategory.TASK_DEFINITION"}


def error(code: str, message: str, field: str | None = None, details: Any = ()) -> dict[str, Any]:
    return {"code": code, "message": message, "field": field, "details": list(details), "traceback": None}


def assert_error(response: Any, status: int, detail: Any, expected_error: dict[str, Any]) -> None:
    assert (response.status_code, response["Content-Type"]) == (status, "application/json")
    assert response.json() == {"detail": detail, "error": expected_error}


async def post(client: Any, body: Any) -> Any:
    return await client.post(API + "tasks", body, content_type="application/json")


# --- 400 ------------------------------------------------------------------------------------


async def test_an_unknown_task_type_answers_400_as_the_originals_task_definition_error(operator):
    message = f"Unknown task type 'nope'. Known: {', '.join(get_all_task_types())}."
    assert_error(
        await post(operator.client, {"task_type": "nope"}),
        400,
        {"message": message, **TASK_DEFINITION, "is_retryable": False},
        error("unknown_task_type", message, "task_type"),
    )


async def test_params_that_do_not_bind_answer_400_as_the_type_error_the_call_would_raise(operator):
    message = "Task 'noop' cannot be called so: too many positional arguments."
    assert_error(
        await post(operator.client, {"task_type": "noop", "args": [1]}),
        400,
        {"message": message, "error_type": "TypeError"},
        error("invalid_params", message, "params"),
    )


# --- 401, 403 -------------------------------------------------------------------------------


async def test_no_credentials_answer_401_not_authenticated():
    message = "Authentication required: log in, or send 'Authorization: Bearer <token>'."
    response = await AsyncClient().get(API + "tasks")
    assert_error(
        response,
        401,
        {"message": message, "error_type": "NotAuthenticated"},
        error("not_authenticated", message),
    )
    assert response["WWW-Authenticate"] == 'Bearer realm="django-atw"'


async def test_a_bad_token_answers_401_authentication_failed():
    message = (
        "The bearer token is unknown or revoked, or its user is inactive. "
        "Create a new one with 'manage.py atw_token create <username>'."
    )
    assert_error(
        await AsyncClient().get(API + "tasks", headers={"Authorization": "Bearer atw_wrong"}),
        401,
        {"message": message, "error_type": "AuthenticationFailed"},
        error("invalid_token", message),
    )


async def test_a_missing_permission_answers_403_permission_denied(make_user, make_token):
    client = TokenClient(await make_token(await make_user("reader")))
    message = "You need the permission 'django_atw.add_taskrecord' to submit tasks."
    assert_error(
        await post(client, {"task_type": "noop"}),
        403,
        {"message": message, "error_type": "PermissionDenied"},
        error("permission_denied", message),
    )


async def test_a_failed_csrf_check_answers_403_permission_denied(make_user):
    session = AsyncClient(enforce_csrf_checks=True)
    await session.aforce_login(await make_user("browser", ALL_PERMS))
    message = (
        f"CSRF check failed: {REASON_NO_CSRF_COOKIE} Send the csrftoken cookie's value in the "
        "X-CSRFToken header, or authenticate with a bearer token."
    )
    assert_error(
        await post(session, {"task_type": "noop"}),
        403,
        {"message": message, "error_type": "PermissionDenied"},
        error("csrf_failed", message),
    )


# --- 404, 405 -------------------------------------------------------------------------------


@pytest.mark.parametrize("method", ["get", "delete"])
async def test_an_unknown_task_answers_404_as_the_originals_resource_error(operator, method):
    message = "No task with id 'missing'."
    assert_error(
        await getattr(operator.client, method)(API + "tasks/missing"),
        404,
        {
            "message": message,
            "error_type": "TaskError",
            "category": "ErrorCategory.RESOURCE",
            "task_id": "missing",
            "is_retryable": False,
        },
        error("not_found", message, "task_id"),
    )


async def test_a_path_under_the_api_that_names_no_endpoint_answers_404_not_found():
    message = "No API endpoint at '/atw/nothing/here'; see openapi.json."
    assert_error(
        await AsyncClient().get(API + "nothing/here"),
        404,
        {"message": message, "error_type": "NotFound"},
        error("not_found", message),
    )


async def test_an_unsupported_method_answers_405_method_not_allowed(operator):
    message = "PUT is not allowed here; use GET, POST."
    response = await operator.client.put(API + "tasks")
    assert_error(
        response,
        405,
        {"message": message, "error_type": "MethodNotAllowed"},
        error("method_not_allowed", message),
    )
    assert response["Allow"] == "GET, POST"


# --- 409 ------------------------------------------------------------------------------------


async def test_a_taken_task_id_answers_409_naming_the_task(operator):
    await aenqueue("noop", task_id="once")
    message = "task_id 'once' is already used by another task; pass a new id or none."
    assert_error(
        await post(operator.client, {"task_type": "noop", "task_id": "once"}),
        409,
        {
            "message": message,
            "error_type": "DuplicateTaskIdError",
            "category": "ErrorCategory.TASK_DEFINITION",
            "task_id": "once",
            "is_retryable": False,
        },
        error("duplicate_task_id", message, "task_id"),
    )


async def test_a_cancel_that_loses_the_race_answers_409_as_the_originals_cancellation_error(
    operator, monkeypatch
):
    task_id = await aenqueue("noop", task_id="racing")
    real_cancel = store.cancel

    def finish_then_cancel(target: str) -> Any:
        TaskRecord.objects.filter(id=target).update(status=TaskStatus.COMPLETED.value)
        return real_cancel(target)

    monkeypatch.setattr(store, "cancel", finish_then_cancel)
    message = "Task 'racing' could not be cancelled: it finished meanwhile."
    assert_error(
        await operator.client.delete(API + f"tasks/{task_id}"),
        409,
        {
            "message": message,
            "error_type": "TaskCancellationError",
            "category": "ErrorCategory.CANCELLATION",
            "task_id": "racing",
            "is_retryable": False,
        },
        error("not_cancellable", message),
    )


# --- 413, 422 -------------------------------------------------------------------------------


@override_settings(ATW={"API_MAX_BODY": 20})
async def test_an_oversize_body_answers_413_request_data_too_big(operator):
    message = "The request body is larger than ATW['API_MAX_BODY'] = 20 bytes."
    assert_error(
        await post(operator.client, {"task_type": "noop", "metadata": {"pad": "x" * 20}}),
        413,
        {"message": message, "error_type": "RequestDataTooBig"},
        error("body_too_large", message),
    )


async def test_a_body_that_breaks_the_schema_answers_422_listing_each_problem_as_fastapi_does(operator):
    response = await post(operator.client, {"task_type": "noop", "timeout": -1, "colour": "red"})
    problems = [
        ("timeout", "Input should be greater than 0", "greater_than"),
        ("colour", "Extra inputs are not permitted", "extra_forbidden"),
    ]
    assert_error(
        response,
        422,
        [{"loc": ["body", field], "msg": msg, "type": kind} for field, msg, kind in problems],
        error(
            "invalid",
            "; ".join(f"{field}: {msg}" for field, msg, _ in problems),
            "timeout",
            [{"field": field, "message": msg} for field, msg, _ in problems],
        ),
    )


async def test_a_query_that_breaks_the_schema_answers_422_with_query_locations(operator):
    msg = "Input should be greater than or equal to 1"
    assert_error(
        await operator.client.get(API + "tasks?limit=0"),
        422,
        [{"loc": ["query", "limit"], "msg": msg, "type": "greater_than_equal"}],
        error("invalid", f"limit: {msg}", "limit", [{"field": "limit", "message": msg}]),
    )


@pytest.mark.parametrize(
    ("raw", "message", "kind"),
    [
        (b"", "The body is empty; send a JSON object.", "missing"),
        (
            b"{no",
            "The body is not valid JSON: Expecting property name enclosed in double quotes: "
            "line 1 column 2 (char 1).",
            "json_invalid",
        ),
        (b"[1]", "The body must be a JSON object, got list.", "model_attributes_type"),
    ],
)
async def test_a_body_that_is_no_json_object_answers_422_located_at_the_body(operator, raw, message, kind):
    assert_error(
        await operator.client.post(API + "tasks", raw, content_type="application/json"),
        422,
        [{"loc": ["body"], "msg": message, "type": kind}],
        error("invalid", message, "body", [{"field": "body", "message": message}]),
    )


async def test_a_value_no_column_can_hold_answers_422_at_its_full_location(operator):
    message = (
        "params['note']['deep'][1] holds a NUL character (\\u0000), which the database cannot store. "
        "Remove it, or encode binary data (for example as base64)."
    )
    assert_error(
        await post(operator.client, {"task_type": "echo", "params": {"note": {"deep": ["ok", "a\x00b"]}}}),
        422,
        [{"loc": ["body", "params", "note", "deep", 1], "msg": message, "type": "value_error"}],
        error(
            "invalid", message, "params.note.deep.1", [{"field": "params.note.deep.1", "message": message}]
        ),
    )


# --- 500, 503 -------------------------------------------------------------------------------


@pytest.fixture
def broken_reads(monkeypatch: pytest.MonkeyPatch) -> None:
    async def fail(*args: Any) -> Any:
        raise RuntimeError("internal detail")

    monkeypatch.setattr(views, "_get_visible_task", fail)


async def test_an_internal_error_answers_500_without_the_exception_to_non_staff(operator, broken_reads):
    message = "Internal server error; the server log has the details."
    assert_error(
        await operator.client.get(API + "tasks/any"),
        500,
        {"message": message, "error_type": "InternalServerError"},
        error("internal", message),
    )


async def test_an_internal_error_answers_500_with_the_exception_to_staff(make_user, make_token, broken_reads):
    client = TokenClient(await make_token(await make_user("admin", ALL_PERMS, staff=True)))
    response = await client.get(API + "tasks/any")
    body = response.json()
    traceback = body["error"].pop("traceback")
    assert "RuntimeError: internal detail" in traceback
    assert (response.status_code, body) == (
        500,
        {
            "detail": {"message": "internal detail", "error_type": "RuntimeError"},
            "error": {"code": "internal", "message": "internal detail", "field": None, "details": []},
        },
    )


async def test_an_unreachable_database_answers_503_with_the_health_and_error_fields(operator, monkeypatch):
    async def unreachable(*args: Any, **kwargs: Any) -> Any:
        raise DatabaseError("connection refused")

    monkeypatch.setattr(views, "_read_health", unreachable)
    response = await operator.client.get(API + "health")
    message = "The database does not answer; no task can be stored or run."
    assert (response.status_code, response.json()) == (
        503,
        {
            "status": "stopped",
            "worker_count": 0,
            "worker_processes": 0,
            "queue_size": 0,
            "local_worker": False,
            "queue_depth": {},
            "database": False,
            "detail": {"message": message, "error_type": "ServiceUnavailable"},
            "error": error("unavailable", message),
        },
    )
