"""GET types, tasks/types, health and openapi.json."""

from __future__ import annotations

from datetime import timedelta
from types import SimpleNamespace
from typing import Any

import pytest
from asgiref.sync import sync_to_async
from django.test import override_settings
from django.utils import timezone
from pydantic import BaseModel

from django_atw import aenqueue, asgi, register_task, store
from django_atw.api.openapi import build_document
from django_atw.api.signatures import parameters_schema
from django_atw.models import WorkerProcess
from django_atw.registry import unregister_task
from tests.api.conftest import API

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.mark.parametrize("path", ["types", "tasks/types"])
async def test_types_lists_registered_types_with_schemas_from_their_signatures(operator, path):
    body = (await operator.client.get(API + path)).json()
    assert "process_data" in body["task_types"] and body["task_types"] == sorted(body["task_types"])
    described = {entry["name"]: entry for entry in body["types"]}
    process = described["process_data"]
    assert process["description"] == "The original README's quick-start task, without its sleep."
    assert process["parameters"] == {
        "type": "object",
        "properties": {"data": {"type": "array", "items": {"type": "integer"}}},
        "required": ["data"],
        "additionalProperties": False,
    }
    assert described["fail"]["parameters"]["properties"]["message"] == {"type": "string", "default": "boom"}
    assert (
        described["echo"]["accepts_args"] is True
        and "additionalProperties" not in described["echo"]["parameters"]
    )
    assert described["noop"]["accepts_args"] is False


class Opaque:
    """A type pydantic cannot describe."""


class Point(BaseModel):
    x: int


async def draw(
    points: list[Point], *, label: Opaque, scale: float = 1.0, progress_callback: Any = None
) -> None:
    return None


def test_parameter_schemas_lift_nested_definitions_and_describe_unknown_types_as_any():
    schema, accepts_args = parameters_schema(draw)
    assert accepts_args is True
    assert schema["properties"]["points"] == {"type": "array", "items": {"$ref": "#/$defs/Point"}}
    assert schema["$defs"]["Point"]["properties"] == {"x": {"title": "X", "type": "integer"}}
    assert schema["properties"]["label"] == {}
    assert schema["properties"]["scale"] == {"type": "number", "default": 1.0}
    assert schema["required"] == ["points", "label"] and "progress_callback" not in schema["properties"]


async def test_a_type_registered_later_appears(operator):
    async def late(n: int) -> int:
        return n

    register_task("registered_late", late)
    try:
        body = (await operator.client.get(API + "types")).json()
        assert "registered_late" in body["task_types"]
    finally:
        unregister_task("registered_late")


async def test_health_without_a_worker_says_stopped_and_no_local_worker(operator):
    await aenqueue("noop")
    body = (await operator.client.get(API + "health")).json()
    assert body == {
        "status": "stopped",
        "worker_count": 0,
        "worker_processes": 0,
        "queue_size": 1,
        "local_worker": False,
        "queue_depth": {"pending": 1, "running": 0},
        "database": True,
    }


async def test_health_with_a_worker_in_the_process_says_ok(operator, worker):
    from tests.sampleapp import tasks as sample

    await worker.add_task(sample.wait_for_gate, "health")
    await sample.started_event("health").wait()
    response = await operator.client.get(API + "health")
    body = response.json()
    assert (response.status_code, body["status"], body["local_worker"]) == (200, "ok", True)
    assert (body["worker_count"], body["worker_processes"]) == (5, 1)  # the fixture's max_workers=5
    assert body["queue_depth"] == {"pending": 0, "running": 1}


def _register(worker_id: str, concurrency: int) -> None:
    store.register_worker(worker_id, "host", 1, ["default"], concurrency)


@pytest.fixture
async def workers_of_every_state() -> None:
    """Two live workers (3 and 7 slots), one silent for an hour (11) and one stopping (13)."""
    for worker_id, concurrency in [("live-a", 3), ("live-b", 7), ("silent", 11), ("stopping", 13)]:
        await sync_to_async(_register)(worker_id, concurrency)
    await WorkerProcess.objects.filter(id="silent").aupdate(
        last_heartbeat=timezone.now() - timedelta(hours=1)
    )
    await sync_to_async(store.mark_worker_stopped)("stopping")


async def test_health_worker_count_sums_the_task_slots_of_live_workers_only(operator, workers_of_every_state):
    body = (await operator.client.get(API + "health")).json()
    assert (body["status"], body["worker_count"], body["worker_processes"]) == ("ok", 10, 2)


@pytest.mark.parametrize(("silent_for", "counted"), [(45, 1), (75, 0)])
async def test_health_counts_a_worker_while_its_last_heartbeat_is_within_the_lease(
    operator, silent_for, counted
):
    await sync_to_async(_register)("quiet", 2)
    last = timezone.now() - timedelta(seconds=silent_for)
    await WorkerProcess.objects.filter(id="quiet").aupdate(last_heartbeat=last)
    with override_settings(ATW={"WORKER_LEASE": 60}):
        body = (await operator.client.get(API + "health")).json()
    assert (body["worker_processes"], body["worker_count"]) == (counted, 2 * counted)


async def test_health_counts_the_embedded_worker_even_when_its_heartbeat_is_late(
    operator, workers_of_every_state, monkeypatch
):
    # A running embedded worker whose row is not live (no row at all here).
    monkeypatch.setattr(
        asgi.engine, "worker", SimpleNamespace(worker_id="embedded", max_workers=4, running=True)
    )
    body = (await operator.client.get(API + "health")).json()
    assert (body["worker_count"], body["worker_processes"]) == (14, 3)


async def test_health_counts_the_embedded_worker_once_when_its_row_is_live(operator, worker, monkeypatch):
    monkeypatch.setattr(asgi.engine, "worker", worker)
    body = (await operator.client.get(API + "health")).json()
    assert (body["worker_count"], body["worker_processes"]) == (5, 1)


async def test_health_leaves_out_an_embedded_worker_that_is_not_running(operator, monkeypatch):
    monkeypatch.setattr(
        asgi.engine, "worker", SimpleNamespace(worker_id="embedded", max_workers=4, running=False)
    )
    body = (await operator.client.get(API + "health")).json()
    assert (body["status"], body["worker_count"], body["worker_processes"]) == ("stopped", 0, 0)


async def test_openapi_document_is_3_1_with_paths_under_the_include_prefix(operator):
    response = await operator.client.get(API + "openapi.json")
    document = response.json()
    assert (response.status_code, document["openapi"]) == (200, "3.1.0")
    assert set(document["paths"]) == {
        "/atw/tasks", "/atw/tasks/types", "/atw/tasks/{task_id}", "/atw/types", "/atw/health",
        "/atw/openapi.json",
    }  # fmt: skip
    schemas = document["components"]["schemas"]
    assert {"TaskSubmitRequest", "TaskResponse", "TaskListResponse", "ErrorResponse"} <= set(schemas)
    assert set(schemas["TaskResponse"]["properties"]) >= {
        "id",
        "status",
        "progress",
        "from_cache",
        "attempts",
    }
    submit = document["paths"]["/atw/tasks"]["post"]
    assert set(submit["responses"]) == {"201", "400", "401", "403", "409", "413", "415", "422"}
    listing = {p["name"] for p in document["paths"]["/atw/tasks"]["get"]["parameters"]}
    assert listing == {
        "status", "task_status", "task_type", "queue", "older_than_minutes", "created_by", "limit", "cursor",
    }  # fmt: skip
    # The fuzz test (test_fuzz.py) loads build_document directly: it is what is served.
    assert document == build_document("/atw/")


def test_every_api_view_is_async_so_django_runs_it_on_the_event_loop():
    from asgiref.sync import iscoroutinefunction

    from django_atw.api import urls

    # Together with Django's SynchronousOnlyOperation guard (any ORM call made on the loop
    # raises, and every test here would fail), this keeps database work off the event loop.
    assert all(iscoroutinefunction(pattern.callback) for pattern in urls.urlpatterns)


@pytest.mark.parametrize("path", ["tasks/", "task", "nothing/here"])
async def test_an_unknown_path_under_the_api_answers_a_json_404(path):
    from django.test import AsyncClient

    response = await AsyncClient().get(API + path)
    assert (response.status_code, response.json()["error"]["code"]) == (404, "not_found")


def test_the_document_gives_422_fastapis_body_and_every_other_error_the_detail_body():
    paths = build_document("/atw/")["paths"]

    def schema(path: str, method: str, status: str) -> str:
        ref: str = paths[path][method]["responses"][status]["content"]["application/json"]["schema"]["$ref"]
        return ref.rsplit("/", 1)[1]

    assert schema("/atw/tasks", "post", "422") == "ValidationErrorResponse"
    assert {
        schema("/atw/tasks", "post", status) for status in ("400", "401", "403", "409", "413", "415")
    } == {"ErrorResponse"}
    assert schema("/atw/tasks/{task_id}", "get", "404") == "ErrorResponse"
    assert schema("/atw/health", "get", "503") == "HealthErrorResponse"


async def test_the_document_marks_health_public_when_the_setting_does(operator):
    with override_settings(ATW={"API_PUBLIC_HEALTH": True}):
        document = (await operator.client.get(API + "openapi.json")).json()
    assert document["paths"]["/atw/health"]["get"]["security"] == []
    assert "security" not in build_document("/atw/")["paths"]["/atw/health"]["get"]
