"""POST, GET and DELETE of single tasks: success and error paths, as the original's API tests."""

from __future__ import annotations

import pytest
from asgiref.sync import sync_to_async

from django_atw import TaskStatus, aenqueue, aget_task_info, store
from django_atw.models import TaskRecord
from tests.api.conftest import API
from tests.conftest import wait_until
from tests.sampleapp import tasks as sample

pytestmark = pytest.mark.django_db(transaction=True)


async def post(client, body, **kwargs):
    return await client.post(API + "tasks", body, content_type="application/json", **kwargs)


async def test_submit_answers_201_with_the_stored_task(operator):
    response = await post(
        operator.client,
        {"task_type": "echo", "args": [1], "params": {"word": "w"}, "priority": 3, "metadata": {"m": 1}},
    )
    assert response.status_code == 201
    body = response.json()
    assert set(body) == {
        "id", "status", "progress", "created_at", "started_at", "completed_at", "result", "error",
        "metadata", "from_cache", "task_type", "queue", "attempts",
    }  # fmt: skip
    assert (body["status"], body["task_type"], body["queue"], body["metadata"]) == (
        "pending", "echo", "default", {"m": 1, "task_type": "echo"},
    )  # fmt: skip
    assert response["Location"] == f"/atw/tasks/{body['id']}"
    row = await TaskRecord.objects.aget(id=body["id"])
    assert (row.args, row.kwargs, row.priority, row.created_by_id) == ([1], {"word": "w"}, 3, operator.pk)


async def test_post_get_and_list_answers_hold_the_task_type_beside_the_metadata_given(operator):
    posted = (await post(operator.client, {"task_type": "echo", "metadata": {"source": "nightly"}})).json()
    fetched = (await operator.client.get(API + f"tasks/{posted['id']}")).json()
    (listed,) = (await operator.client.get(API + "tasks")).json()["tasks"]
    expected = {"source": "nightly", "task_type": "echo"}
    assert (posted["metadata"], fetched["metadata"], listed["metadata"]) == (expected, expected, expected)


async def test_the_stored_metadata_stays_as_the_caller_gave_it(operator):
    response = await post(operator.client, {"task_type": "echo", "metadata": {"source": "nightly"}})
    task_id = response.json()["id"]
    assert (await aget_task_info(task_id)).metadata == {"source": "nightly"}


async def test_a_task_enqueued_from_python_answers_with_its_type_in_metadata(operator):
    task_id = await aenqueue("noop", created_by=operator)
    assert (await operator.client.get(API + f"tasks/{task_id}")).json()["metadata"] == {"task_type": "noop"}


async def test_metadata_task_type_is_the_tasks_type_even_when_the_caller_set_another(operator):
    response = await post(operator.client, {"task_type": "noop", "metadata": {"task_type": "other", "k": 1}})
    assert response.json()["metadata"] == {"task_type": "noop", "k": 1}


async def test_submit_passes_task_id_queue_timeout_and_cache_options(operator):
    response = await post(
        operator.client,
        {
            "task_type": "noop",
            "task_id": "report:2026",
            "queue": "reports",
            "timeout": 2.5,
            "use_cache": False,
            "cache_ttl": 60,
        },
    )
    assert response.status_code == 201, response.json()
    row = await TaskRecord.objects.aget(id="report:2026")
    assert (row.queue, row.timeout, row.use_cache, row.cache_ttl) == ("reports", 2.5, False, 60)
    assert (await operator.client.get(API + "tasks/report:2026")).json()["queue"] == "reports"


async def test_a_task_stored_with_a_slash_in_its_id_before_ids_were_checked_stays_reachable(operator):
    await aenqueue("noop", task_id="old", queue="reports")
    await TaskRecord.objects.filter(id="old").aupdate(id="report/2026")
    assert (await operator.client.get(API + "tasks/report/2026")).json()["queue"] == "reports"


async def test_a_web_only_process_stores_the_task_for_a_worker_and_the_worker_runs_it(operator, make_worker):
    task_id = (await post(operator.client, {"task_type": "echo", "args": ["web"]})).json()["id"]
    assert (await aget_task_info(task_id)).status == TaskStatus.PENDING  # no worker here yet
    worker = await make_worker()
    await wait_until(lambda: aget_task_info(task_id), lambda info: info.status == TaskStatus.COMPLETED)
    body = (await operator.client.get(API + f"tasks/{task_id}")).json()
    assert (body["status"], body["result"], body["attempts"]) == (
        "completed", {"args": ["web"], "kwargs": {}}, 1,
    )  # fmt: skip
    assert body["started_at"] and body["completed_at"]
    await worker.stop()


async def test_submit_passes_run_after_to_enqueue(operator, worker):
    delayed = await post(
        operator.client, {"task_type": "noop", "priority": -1, "run_after": "2099-01-01T00:00:00+00:00"}
    )
    assert delayed.status_code == 201, delayed.json()
    now = (await post(operator.client, {"task_type": "noop"})).json()["id"]
    await wait_until(lambda: aget_task_info(now), lambda info: info.status == TaskStatus.COMPLETED)
    # Had run_after been dropped, the delayed task (a lower priority number) would have run first.
    assert (await aget_task_info(delayed.json()["id"])).status == TaskStatus.PENDING


async def test_run_after_must_be_an_iso_string_not_a_timestamp(operator):
    response = await post(operator.client, {"task_type": "noop", "run_after": 0})
    assert (response.status_code, response.json()["error"]["details"][0]["field"]) == (422, "run_after")
    assert not await TaskRecord.objects.aexists()


async def test_an_unknown_task_type_answers_400_naming_the_known_ones(operator):
    response = await post(operator.client, {"task_type": "nope"})
    error = response.json()["error"]
    assert (response.status_code, error["code"], error["field"]) == (400, "unknown_task_type", "task_type")
    assert "'nope'" in error["message"] and "process_data" in error["message"]


async def test_a_dotted_path_that_is_not_registered_is_refused(operator):
    response = await post(operator.client, {"task_type": "tests.sampleapp.tasks.unregistered_but_importable"})
    assert response.status_code == 400
    assert not await TaskRecord.objects.aexists()


@pytest.mark.parametrize(
    ("body", "named"),
    [
        ({"task_type": "process_data"}, "'data'"),
        ({"task_type": "process_data", "params": {"data": [1], "bogus": 1}}, "'bogus'"),
        ({"task_type": "noop", "args": [1]}, "too many positional arguments"),
    ],
)
async def test_params_that_do_not_bind_answer_400_naming_the_parameter(operator, body, named):
    response = await post(operator.client, body)
    error = response.json()["error"]
    assert (response.status_code, error["code"], error["field"]) == (400, "invalid_params", "params")
    assert named in error["message"]
    assert not await TaskRecord.objects.aexists()


@pytest.mark.parametrize("name", ["priority", "created_by", "task_func"])
async def test_a_param_named_like_an_enqueue_argument_is_refused(operator, name):
    response = await post(operator.client, {"task_type": "echo", "params": {name: 1}})
    assert (response.status_code, response.json()["error"]["field"]) == (400, f"params.{name}")


async def test_progress_callback_is_not_a_param_a_client_may_pass(operator):
    response = await post(
        operator.client, {"task_type": "process_data", "params": {"data": [], "progress_callback": 1}}
    )
    assert response.status_code == 400
    assert "progress_callback" in response.json()["error"]["message"]


@pytest.mark.parametrize(
    ("body", "fields"),
    [
        ({"params": {}}, ["task_type"]),
        ({"task_type": "noop", "priority": "high", "timeout": -1}, ["priority", "timeout"]),
        ({"task_type": "noop", "params": [1]}, ["params"]),
        ({"task_type": "noop", "metadata": {"a": 1}, "colour": "red"}, ["colour"]),
        ({"task_type": "noop", "run_after": "2099-01-01T00:00:00"}, ["run_after"]),
        ({"task_type": "noop", "task_id": ""}, ["task_id"]),
    ],
)
async def test_invalid_bodies_answer_422_with_each_field_path(operator, body, fields):
    response = await post(operator.client, body)
    error = response.json()["error"]
    assert (response.status_code, error["code"]) == (422, "invalid")
    assert [detail["field"] for detail in error["details"]] == fields
    assert all(detail["message"] for detail in error["details"])


async def test_a_nested_problem_names_its_full_path(operator):
    response = await post(
        operator.client, {"task_type": "echo", "params": {"note": {"deep": ["ok", "a\x00b"]}}}
    )
    assert (response.status_code, response.json()["error"]["field"]) == (422, "params.note.deep.1")


@pytest.mark.parametrize("raw", [b"{not json", b"[1, 2]", b'{"task_type": "noop", "timeout": NaN}', b""])
async def test_a_body_that_is_not_a_json_object_answers_422(operator, raw):
    response = await operator.client.post(API + "tasks", raw, content_type="application/json")
    assert (response.status_code, response.json()["error"]["field"]) == (422, "body")


async def test_a_taken_task_id_answers_409_and_keeps_the_stored_task(operator):
    assert (
        await post(operator.client, {"task_type": "record", "task_id": "once", "params": {"label": "a"}})
    ).status_code == 201
    response = await post(
        operator.client, {"task_type": "record", "task_id": "once", "params": {"label": "b"}}
    )
    assert (response.status_code, response.json()["error"]["code"]) == (409, "duplicate_task_id")
    assert (await TaskRecord.objects.aget(id="once")).kwargs == {"label": "a"}


async def test_get_an_unknown_task_answers_404(operator):
    response = await operator.client.get(API + "tasks/missing")
    assert (response.status_code, response.json()["error"]["code"]) == (404, "not_found")


async def test_cancel_a_pending_task_answers_204_and_cancels_it(operator):
    task_id = await aenqueue("noop", created_by=operator)
    assert (await operator.client.delete(API + f"tasks/{task_id}")).status_code == 204
    body = (await operator.client.get(API + f"tasks/{task_id}")).json()
    assert (body["status"], body["completed_at"] is not None) == ("cancelled", True)


async def test_cancel_a_running_task_answers_204_and_the_worker_stops_it(operator, worker):
    task_id = await worker.add_task(sample.wait_for_gate, "held")
    await sample.started_event("held").wait()
    assert (await operator.client.delete(API + f"tasks/{task_id}")).status_code == 204
    info = await wait_until(lambda: aget_task_info(task_id), lambda info: info.is_terminal_state())
    assert info.status == TaskStatus.CANCELLED


async def test_cancel_a_finished_task_answers_204_and_leaves_it_unchanged(operator, worker):
    task_id = await worker.add_task(sample.echo, "done")
    await (await worker.get_task_future(task_id))
    before = await aget_task_info(task_id)
    assert (await operator.client.delete(API + f"tasks/{task_id}")).status_code == 204
    assert await aget_task_info(task_id) == before


async def test_cancel_an_unknown_task_answers_404(operator):
    assert (await operator.client.delete(API + "tasks/missing")).status_code == 404


async def test_cancel_answers_409_when_the_task_finishes_before_the_cancel_lands(operator, monkeypatch):
    task_id = await aenqueue("noop")
    real_cancel = store.cancel

    def finish_then_cancel(target: str):
        # The race: a worker completes the task between the view's read and its cancel.
        TaskRecord.objects.filter(id=target).update(status=TaskStatus.COMPLETED.value)
        return real_cancel(target)

    monkeypatch.setattr(store, "cancel", finish_then_cancel)
    response = await operator.client.delete(API + f"tasks/{task_id}")
    assert (response.status_code, response.json()["error"]["code"]) == (409, "not_cancellable")
    assert (await sync_to_async(store.get_task)(task_id)).status == TaskStatus.COMPLETED
