"""Who may do what: the permission matrix, CSRF on session requests, bearer tokens, body limit, 500s."""

from __future__ import annotations

from typing import Any

import pytest
from asgiref.sync import sync_to_async
from django.db import DatabaseError
from django.test import AsyncClient, override_settings
from django.utils.crypto import get_random_string

from django_atw import TaskStatus, aenqueue, aget_task_info
from django_atw.api import views
from django_atw.models import TaskRecord
from django_atw.tokens import revoke_token
from tests.api.conftest import ALL_PERMS, API, TokenClient

pytestmark = pytest.mark.django_db(transaction=True)

NOOP = {"task_type": "noop"}


@pytest.fixture
async def actors(make_user, make_token) -> dict[str, Any]:
    """anonymous; a user without permissions; an owner who may add and cancel but not view all;
    a staff user with every permission. ``own`` was created by the owner, ``foreign`` by nobody."""
    clients: dict[str, Any] = {"anonymous": AsyncClient()}
    for name, perms, staff in [
        ("no_perms", (), False),
        ("owner", ("add_taskrecord", "change_taskrecord"), False),
        ("staff", ALL_PERMS, True),
    ]:
        user = await make_user(name, perms, staff=staff)
        clients[name] = TokenClient(await make_token(user))
        clients[name + "_user"] = user
    clients["own"] = await aenqueue("noop", created_by=clients["owner_user"])
    clients["foreign"] = await aenqueue("noop")
    return clients


MATRIX = [
    # (method, path, body, {actor: expected status})
    ("get", "tasks/{own}", None, {"anonymous": 401, "no_perms": 404, "owner": 200, "staff": 200}),
    ("get", "tasks/{foreign}", None, {"anonymous": 401, "no_perms": 404, "owner": 404, "staff": 200}),
    ("get", "tasks", None, {"anonymous": 401, "no_perms": 200, "owner": 200, "staff": 200}),
    ("post", "tasks", NOOP, {"anonymous": 401, "no_perms": 403, "owner": 201, "staff": 201}),
    ("delete", "tasks/{own}", None, {"anonymous": 401, "no_perms": 403, "owner": 204, "staff": 204}),
    ("delete", "tasks/{foreign}", None, {"anonymous": 401, "no_perms": 403, "owner": 404, "staff": 204}),
    ("get", "types", None, {"anonymous": 401, "no_perms": 403, "owner": 200, "staff": 200}),
    ("get", "tasks/types", None, {"anonymous": 401, "no_perms": 403, "owner": 200, "staff": 200}),
    ("get", "health", None, {"anonymous": 401, "no_perms": 200, "owner": 200, "staff": 200}),
    ("get", "openapi.json", None, {"anonymous": 401, "no_perms": 200, "owner": 200, "staff": 200}),
]


@pytest.mark.parametrize(("method", "path", "body", "expected"), MATRIX)
@pytest.mark.parametrize("actor", ["anonymous", "no_perms", "owner", "staff"])
async def test_permission_matrix(actors, actor, method, path, body, expected):
    client = actors[actor]
    url = API + path.format(own=actors["own"], foreign=actors["foreign"])
    if body is None:
        response = await getattr(client, method)(url)
    else:
        response = await client.post(url, body, content_type="application/json")
    assert response.status_code == expected[actor], response.content
    if response.status_code == 401:
        assert response["WWW-Authenticate"].startswith("Bearer")


@pytest.mark.parametrize(
    ("actor", "sees"), [("no_perms", []), ("owner", ["own"]), ("staff", ["foreign", "own"])]
)
async def test_the_list_shows_only_own_tasks_without_the_view_permission(actors, actor, sees):
    body = (await actors[actor].get(API + "tasks")).json()
    assert [task["id"] for task in body["tasks"]] == [actors[name] for name in sees]


async def test_a_refused_cancel_leaves_the_task_pending(actors):
    await actors["no_perms"].delete(API + f"tasks/{actors['own']}")
    await actors["owner"].delete(API + f"tasks/{actors['foreign']}")
    for name in ("own", "foreign"):
        assert (await aget_task_info(actors[name])).status == TaskStatus.PENDING


# --- sessions and CSRF ----------------------------------------------------------------------


@pytest.fixture
async def session(make_user) -> AsyncClient:
    """A logged-in browser session whose client enforces CSRF like a real browser request."""
    client = AsyncClient(enforce_csrf_checks=True)
    await client.aforce_login(await make_user("browser", ALL_PERMS))
    return client


def csrf(client: AsyncClient) -> dict[str, str]:
    secret = get_random_string(32)
    client.cookies["csrftoken"] = secret
    return {"X-CSRFToken": secret}


async def test_a_session_post_without_a_csrf_token_is_refused(session):
    response = await session.post(API + "tasks", NOOP, content_type="application/json")
    assert (response.status_code, response.json()["error"]["code"]) == (403, "csrf_failed")
    assert not await TaskRecord.objects.aexists()


async def test_a_session_post_with_the_csrf_token_is_accepted(session):
    response = await session.post(API + "tasks", NOOP, content_type="application/json", headers=csrf(session))
    assert response.status_code == 201


async def test_a_session_delete_needs_the_csrf_token(session):
    task_id = await aenqueue("noop")
    refused = await session.delete(API + f"tasks/{task_id}")
    assert (refused.status_code, refused.json()["error"]["code"]) == (403, "csrf_failed")
    assert (await aget_task_info(task_id)).status == TaskStatus.PENDING
    assert (await session.delete(API + f"tasks/{task_id}", headers=csrf(session))).status_code == 204


async def test_a_session_get_needs_no_csrf_token(session):
    assert (await session.get(API + "tasks")).status_code == 200


async def test_a_bearer_request_needs_no_csrf_token(operator):
    client = TokenClient(operator.client.token_headers["Authorization"].split()[1], enforce_csrf_checks=True)
    assert (await client.post(API + "tasks", NOOP, content_type="application/json")).status_code == 201


# --- bearer tokens --------------------------------------------------------------------------


async def test_a_revoked_token_is_refused(operator):
    assert (await operator.client.get(API + "tasks")).status_code == 200
    token = operator.client.token_headers["Authorization"].split()[1]
    await sync_to_async(revoke_token)(token[:12])
    response = await operator.client.get(API + "tasks")
    assert (response.status_code, response.json()["error"]["code"]) == (401, "invalid_token")


@pytest.mark.parametrize("header", ["Bearer atw_wrong", "Bearer ", "Basic b3BlcmF0b3I6cHc=", "atw_no_scheme"])
async def test_a_wrong_or_malformed_authorization_header_is_refused(operator, header):
    response = await AsyncClient().get(API + "tasks", headers={"Authorization": header})
    assert (response.status_code, response.json()["error"]["code"]) == (401, "invalid_token")


async def test_a_bad_token_is_refused_even_with_a_valid_session(session):
    response = await session.get(API + "tasks", headers={"Authorization": "Bearer atw_wrong"})
    assert response.status_code == 401


async def test_a_token_of_a_deactivated_user_is_refused(make_user, make_token):
    user = await make_user("leaver", ALL_PERMS)
    client = TokenClient(await make_token(user))
    user.is_active = False
    await user.asave()
    assert (await client.get(API + "tasks")).status_code == 401


# --- body limit and internal errors ---------------------------------------------------------

LIMITED = {"POLL_INTERVAL": 0.2, "CLEANUP_INTERVAL": 0, "API_MAX_BODY": 200}


def _body_of(size: int) -> str:
    prefix = '{"task_type": "echo", "metadata": {"pad": "'
    return prefix + "x" * (size - len(prefix) - 3) + '"}}'


@override_settings(ATW=LIMITED)
async def test_a_body_over_api_max_body_answers_413_and_stores_nothing(operator):
    response = await operator.client.post(API + "tasks", _body_of(201), content_type="application/json")
    assert (response.status_code, response.json()["error"]["code"]) == (413, "body_too_large")
    assert "200 bytes" in response.json()["error"]["message"]
    assert not await TaskRecord.objects.aexists()


@override_settings(ATW=LIMITED)
async def test_a_body_of_exactly_api_max_body_is_accepted(operator):
    body = _body_of(200)
    assert len(body.encode()) == 200
    response = await operator.client.post(API + "tasks", body, content_type="application/json")
    assert response.status_code == 201


@override_settings(ATW=LIMITED)
async def test_an_oversize_body_is_refused_before_authentication():
    response = await AsyncClient().post(API + "tasks", _body_of(5000), content_type="application/json")
    assert response.status_code == 413


@pytest.fixture
def broken_reads(monkeypatch):
    async def fail(*args: Any) -> Any:
        raise RuntimeError("internal detail that must not leak")

    monkeypatch.setattr(views, "_get_visible_task", fail)


@override_settings(DEBUG=True)
async def test_an_internal_error_shows_no_traceback_to_non_staff(operator, broken_reads):
    response = await operator.client.get(API + "tasks/any")
    assert (response.status_code, response["Content-Type"]) == (500, "application/json")
    assert response.json()["error"]["code"] == "internal"
    assert b"internal detail" not in response.content and b"Traceback" not in response.content


async def test_an_internal_error_shows_the_traceback_to_staff(make_user, make_token, broken_reads):
    client = TokenClient(await make_token(await make_user("admin", ALL_PERMS, staff=True)))
    response = await client.get(API + "tasks/any")
    assert response.status_code == 500
    assert "RuntimeError: internal detail" in response.json()["error"]["traceback"]


async def test_an_unreachable_database_makes_health_answer_503(operator, monkeypatch):
    async def unreachable(*args: Any, **kwargs: Any) -> Any:
        raise DatabaseError("connection refused")

    monkeypatch.setattr(views, "_read_health", unreachable)
    response = await operator.client.get(API + "health")
    assert (response.status_code, response.json()["database"]) == (503, False)


@pytest.mark.parametrize(("public", "expected"), [(True, 200), (False, 401)])
async def test_health_is_public_only_when_the_setting_says_so(public, expected):
    with override_settings(ATW={"API_PUBLIC_HEALTH": public}):
        assert (await AsyncClient().get(API + "health")).status_code == expected


async def test_an_unsupported_method_answers_405_with_allow(operator):
    response = await operator.client.put(API + "tasks", NOOP, content_type="application/json")
    assert (response.status_code, response["Allow"]) == (405, "GET, POST")
