"""add_task / add_tasks: what is stored, and bad input refused with nothing stored."""

import datetime as dt

import pytest

from django_atw import AsyncTaskWorker, TaskStatus
from django_atw.exceptions import (
    DuplicateTaskIdError,
    QueueFullError,
    TaskArgumentError,
    TaskDefinitionError,
)
from django_atw.models import TaskRecord
from tests.sampleapp import tasks

pytestmark = pytest.mark.django_db(transaction=True)


async def stored_count() -> int:
    return await TaskRecord.objects.acount()


async def test_add_task_on_a_stopped_worker_raises_runtime_error():
    worker = AsyncTaskWorker()
    # The original library's message first, then how to fix it.
    with pytest.raises(RuntimeError, match=r"^Worker pool is not running: .*worker\.start\(\)"):
        await worker.add_task(tasks.noop)


async def test_add_task_stores_arguments_options_and_returns_the_id(worker):
    task_id = await worker.add_task(
        tasks.echo, 1, "two", priority=3, metadata={"k": "v"}, timeout=30, word="x", task_id="custom-1"
    )
    assert task_id == "custom-1"
    info = await worker.get_task_info(task_id)
    assert (info.task_type, info.args, info.kwargs) == ("echo", [1, "two"], {"word": "x"})
    assert (info.priority, info.metadata, info.timeout) == (3, {"k": "v"}, 30.0)
    assert await (await worker.get_task_future(task_id)) == {"args": [1, "two"], "kwargs": {"word": "x"}}


async def test_a_task_type_name_may_be_passed_instead_of_the_function(worker):
    task_id = await worker.add_task("echo", 5)
    assert await (await worker.get_task_future(task_id)) == {"args": [5], "kwargs": {}}


async def test_an_importable_unregistered_function_runs_by_dotted_path(worker):
    task_id = await worker.add_task(tasks.unregistered_but_importable, 41)
    assert await (await worker.get_task_future(task_id)) == 42


@pytest.mark.parametrize(
    ("args", "kwargs", "where"),
    [
        ((dt.date(2024, 1, 1),), {}, "args[0]"),
        ((), {"when": dt.datetime(2024, 1, 1)}, "kwargs['when']"),
        (([1, {"deep": object()}],), {}, "args[0][1]['deep']"),
        ((), {"m": {1: "x"}}, "kwargs['m']"),
        ((float("nan"),), {}, "args[0]"),
    ],
)
async def test_a_non_json_argument_is_named_and_nothing_is_stored(worker, args, kwargs, where):
    with pytest.raises(TaskArgumentError) as excinfo:
        await worker.add_task(tasks.echo, *args, **kwargs)
    assert where in str(excinfo.value)
    assert isinstance(excinfo.value, TypeError)
    assert await stored_count() == 0


async def test_a_function_without_a_findable_name_is_refused(worker):
    async def local_task() -> None: ...

    with pytest.raises(TaskDefinitionError, match="neither registered nor importable"):
        await worker.add_task(local_task)
    assert await stored_count() == 0


async def test_a_sync_function_is_refused(worker):
    def sync_task() -> None: ...

    with pytest.raises(TaskDefinitionError, match="not an async function"):
        await worker.add_task(sync_task)


async def test_an_unknown_task_type_name_lists_the_known_ones(worker):
    with pytest.raises(TaskDefinitionError, match=r"Unknown task type 'nope'.*echo"):
        await worker.add_task("nope")


async def test_a_duplicate_custom_task_id_is_refused_and_the_first_kept(worker):
    gate_id = await worker.add_task(tasks.echo, "first", task_id="same")
    await (await worker.get_task_future(gate_id))
    with pytest.raises(DuplicateTaskIdError, match="'same' is already used"):
        await worker.add_task(tasks.echo, "second", task_id="same")
    info = await worker.get_task_info("same")
    assert info.args == ["first"] and info.status == TaskStatus.COMPLETED


@pytest.mark.parametrize(
    ("option", "match"),
    [
        ({"timeout": -1}, "timeout must be a positive"),
        ({"timeout": 0}, "timeout must be a positive"),
        ({"timeout": "5"}, "timeout must be a number"),
        ({"priority": "high"}, "priority must be an int"),
        ({"metadata": ["x"]}, "metadata must be a dict"),
        ({"task_id": ""}, "task_id must be 1 to 255 of the characters"),
        ({"task_id": "x" * 300}, "task_id must be 1 to 255 of the characters"),
        ({"cache_ttl": -5}, "cache_ttl must be"),
        ({"queue": ""}, "queue must be"),
        ({"cache_key_fn": "key"}, "cache_key_fn must be callable"),
    ],
)
async def test_bad_options_get_a_specific_error(worker, option, match):
    with pytest.raises(TaskArgumentError, match=match):
        await worker.add_task(tasks.noop, **option)
    assert await stored_count() == 0


async def test_progress_callback_cannot_be_passed_by_the_caller(worker):
    with pytest.raises(TaskArgumentError, match="progress_callback"):
        await worker.add_task(tasks.process_data, [1], progress_callback=print)


async def test_max_queue_size_bounds_pending_tasks(make_worker):
    worker = await make_worker(max_workers=1, max_queue_size=2)
    first = await worker.add_task(tasks.wait_for_gate, "busy")
    await tasks.started_event("busy").wait()
    await worker.add_task(tasks.noop, priority=1)
    await worker.add_task(tasks.noop, priority=1)
    with pytest.raises(QueueFullError, match="max_queue_size is 2"):
        await worker.add_task(tasks.noop)
    assert await stored_count() == 3
    tasks.gate("busy").set()
    assert await (await worker.get_task_future(first)) == "busy"


async def test_add_tasks_runs_each_call_with_its_arguments(worker):
    ids = await worker.add_tasks(tasks.echo, [(1,), [2, 3], {"word": "w"}], priority=2)
    results = await worker.wait_for_tasks(ids, timeout=10)
    assert results == [
        {"args": [1], "kwargs": {}},
        {"args": [2, 3], "kwargs": {}},
        {"args": [], "kwargs": {"word": "w"}},
    ]


async def test_add_tasks_refuses_the_whole_batch_when_one_call_is_bad(worker):
    with pytest.raises(TaskArgumentError, match=r"calls\[1\]: args\[0\]"):
        await worker.add_tasks(tasks.echo, [(1,), (object(),)])
    with pytest.raises(TaskArgumentError, match=r"calls\[0\] is a int"):
        await worker.add_tasks(tasks.echo, [5])  # type: ignore[list-item]
    assert await stored_count() == 0


@pytest.mark.parametrize(
    ("option", "match"),
    [
        ({"max_workers": 0}, "max_workers"),
        ({"task_timeout": -1}, "task_timeout"),
        ({"worker_poll_interval": 0}, "worker_poll_interval"),
        ({"cleanup_interval": -1}, "cleanup_interval"),
        ({"queues": []}, "queues"),
    ],
)
def test_bad_constructor_arguments_are_named(option, match):
    with pytest.raises(ValueError, match=match):
        AsyncTaskWorker(**option)
