"""Module functions for code without a running worker: sync views, async views, the shell."""

import threading

import pytest

from django_atw import TaskStatus, aenqueue, cancel_task, enqueue, get_all_tasks, get_task_info
from django_atw.exceptions import TaskArgumentError
from django_atw.models import TaskRecord
from tests.sampleapp import tasks

pytestmark = pytest.mark.django_db(transaction=True)


def test_enqueue_stores_a_pending_task_for_any_worker():
    task_id = enqueue(tasks.echo, 1, priority=4, metadata={"source": "view"}, word="w")
    info = get_task_info(task_id)
    assert (info.status, info.priority, info.args, info.kwargs) == (TaskStatus.PENDING, 4, [1], {"word": "w"})
    assert info.metadata == {"source": "view"}
    assert info.queue == "default"


def test_enqueue_records_the_user_it_was_created_by(django_user_model):
    user = django_user_model.objects.create(username="owner")
    task_id = enqueue("noop", created_by=user)
    assert TaskRecord.objects.get(id=task_id).created_by_id == user.pk


def test_enqueue_validates_like_add_task():
    with pytest.raises(TaskArgumentError, match=r"args\[0\]"):
        enqueue(tasks.echo, {1, 2})
    assert TaskRecord.objects.count() == 0


def test_enqueue_works_from_another_thread_like_a_wsgi_view():
    ids: list[str] = []
    thread = threading.Thread(target=lambda: ids.append(enqueue("noop")))
    thread.start()
    thread.join()
    assert get_task_info(ids[0]).status == TaskStatus.PENDING


def test_cancel_task_cancels_pending_and_refuses_unknown():
    task_id = enqueue("noop")
    assert cancel_task(task_id) is True
    assert get_task_info(task_id).status == TaskStatus.CANCELLED
    assert cancel_task(task_id) is False
    assert cancel_task("missing") is False
    assert get_task_info("missing") is None


async def test_aenqueue_from_an_async_view_is_run_by_a_worker_in_the_process(worker):
    task_id = await aenqueue(tasks.echo, "async-view")
    # aenqueue wakes the local worker at once; the future resolves when the outcome is stored.
    assert await (await worker.get_task_future(task_id)) == {"args": ["async-view"], "kwargs": {}}


def test_get_all_tasks_lists_newest_first_with_filters():
    first = enqueue("noop")
    second = enqueue("noop")
    cancel_task(first)
    assert [t.id for t in get_all_tasks()] == [second, first]
    assert [t.id for t in get_all_tasks(status="cancelled")] == [first]
    assert [t.id for t in get_all_tasks(limit=1)] == [second]
    with pytest.raises(ValueError, match="limit must be"):
        get_all_tasks(limit=-1)
