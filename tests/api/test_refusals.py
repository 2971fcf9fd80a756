"""Input the API refuses before anything is stored: each refusal is a 4xx naming the field."""

from __future__ import annotations

from typing import Any

import pytest
from django.db import DatabaseError

from django_atw.api import auth, views
from django_atw.jsonvalues import MAX_JSON_DEPTH
from django_atw.models import TaskRecord
from tests.api.conftest import API

pytestmark = pytest.mark.django_db(transaction=True)


async def post(client: Any, body: Any, **kwargs: Any) -> Any:
    return await client.post(API + "tasks", body, content_type="application/json", **kwargs)


def nested(depth: int) -> str:
    """JSON text of a dict nested ``depth`` levels deep (the client's encoder stops at ~1000)."""
    return '{"a": ' * (depth - 1) + "{}" + "}" * (depth - 1)


async def post_raw(client: Any, text: str) -> Any:
    return await client.post(API + "tasks", text.encode(), content_type="application/json")


def refused_at(response: Any, status: int, field: str) -> str:
    """Assert the answer refuses ``field`` with ``status``; return its message."""
    body = response.json()
    assert (response.status_code, body["error"]["field"]) == (status, field), body
    return str(body["error"]["message"])


# --- depth and size -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("field", "depth", "named"),
    [("metadata", 600, "metadata"), ("params", 900, "params.deep"), ("args", 600, "args.0")],
)
async def test_json_nested_too_deep_answers_422_naming_the_field_and_the_limit(operator, field, depth, named):
    value = {"params": '{"deep": %s}', "args": "[%s]", "metadata": "%s"}[field] % nested(depth)
    response = await post_raw(operator.client, f'{{"task_type": "echo", "{field}": {value}}}')
    message = refused_at(response, 422, named)
    assert f"at most {MAX_JSON_DEPTH} levels are accepted" in message
    assert await TaskRecord.objects.acount() == 0


async def test_the_list_still_answers_after_a_deep_post(operator):
    await post_raw(operator.client, f'{{"task_type": "echo", "metadata": {nested(600)}}}')
    response = await operator.client.get(API + "tasks")
    assert response.status_code == 200


async def test_a_body_nested_beyond_the_parsers_recursion_answers_422(operator):
    response = await post_raw(operator.client, f'{{"task_type": "echo", "metadata": {nested(100_000)}}}')
    assert refused_at(response, 422, "body").startswith("The body is nested too deep")


# --- task ids -------------------------------------------------------------------------------


@pytest.mark.parametrize("task_id", ["../../admin", "a/b", ".", "..", "a b", "nul\x00", "x" * 256])
async def test_a_task_id_outside_the_alphabet_answers_422_and_stores_nothing(operator, task_id):
    response = await post(operator.client, {"task_type": "noop", "task_id": task_id})
    assert response.status_code == 422
    assert response.json()["detail"][0]["loc"] == ["body", "task_id"]
    assert "Location" not in response
    assert await TaskRecord.objects.acount() == 0


# --- run_after, content type, health --------------------------------------------------------


@pytest.mark.parametrize("run_after", ["9999-12-31T23:59:59-23:59", "0001-01-01T00:00:00+01:00"])
async def test_a_run_after_out_of_range_answers_422(operator, run_after):
    response = await post(operator.client, {"task_type": "noop", "run_after": run_after})
    assert "between 0001-01-02 and 9999-12-30" in refused_at(response, 422, "run_after")
    assert await TaskRecord.objects.acount() == 0


@pytest.mark.parametrize(
    "content_type", ["text/plain", "application/x-www-form-urlencoded", "application/json; charset=latin-1"]
)
async def test_a_body_that_is_not_declared_json_answers_415(operator, content_type):
    response = await operator.client.post(API + "tasks", b'{"task_type": "noop"}', content_type=content_type)
    body = response.json()
    assert (response.status_code, body["error"]["code"]) == (415, "unsupported_media_type"), body
    assert body["detail"]["error_type"] == "UnsupportedMediaType"
    assert await TaskRecord.objects.acount() == 0


@pytest.mark.parametrize(
    "content_type", ["application/json", "application/json; charset=utf-8", "Application/JSON"]
)
async def test_a_json_body_with_or_without_utf8_charset_is_accepted(operator, content_type):
    response = await operator.client.post(API + "tasks", b'{"task_type": "noop"}', content_type=content_type)
    assert response.status_code == 201, response.json()


async def test_health_answers_503_when_the_database_fails_the_token_lookup(operator, monkeypatch):
    async def unreachable(*args: Any, **kwargs: Any) -> Any:
        raise DatabaseError("connection refused")

    monkeypatch.setattr(auth, "auser_for_token", unreachable)
    monkeypatch.setattr(views, "_read_health", unreachable)
    response = await operator.client.get(API + "health")
    body = response.json()
    assert (response.status_code, body["database"], body["error"]["code"]) == (503, False, "unavailable")


# --- repeated query parameters ---------------------------------------------------------------


async def test_a_repeated_query_parameter_answers_422_naming_it(operator):
    response = await operator.client.get(API + "tasks?status=pending&status=failed")
    message = refused_at(response, 422, "status")
    assert message.startswith("status is given 2 times")
    assert response.json()["detail"][0]["loc"] == ["query", "status"]
