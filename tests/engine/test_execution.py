"""Running tasks: order, progress, timeouts, failures, results."""

import asyncio
import re

import pytest
from django.test import override_settings

from django_atw import TaskStatus, aenqueue, aget_task_info
from django_atw.exceptions import TaskError, TaskExecutionError, TaskTimeoutError
from django_atw.jsonvalues import MAX_JSON_DEPTH, json_depth
from tests.conftest import wait_until
from tests.sampleapp import tasks

pytestmark = pytest.mark.django_db(transaction=True)


async def test_lower_priority_runs_first_and_fifo_within_a_priority(make_worker):
    for label, priority in [("c1", 2), ("a1", 0), ("b1", 1), ("a2", 0), ("c2", 2), ("a3", 0)]:
        await aenqueue(tasks.record, label, priority=priority)
    worker = await make_worker(max_workers=1)
    ids = [t.id for t in await worker.get_all_tasks()]
    await worker.wait_for_tasks(ids, timeout=10)
    assert tasks.runs == ["a1", "a2", "a3", "b1", "c1", "c2"]


async def test_a_bulk_add_keeps_fifo_order(make_worker):
    worker = await make_worker(max_workers=1, claim_batch_size=3)
    await worker.stop()
    from django_atw import aenqueue_many

    ids = await aenqueue_many(tasks.record, [(f"t{i}",) for i in range(10)])
    worker = await make_worker(max_workers=1, claim_batch_size=3)
    await worker.wait_for_tasks(ids, timeout=10)
    assert tasks.runs == [f"t{i}" for i in range(10)]


async def test_progress_is_visible_in_the_record_while_the_task_runs(make_worker):
    worker = await make_worker(progress_interval=0.01)
    task_id = await worker.add_task(tasks.wait_for_gate, "p")
    await tasks.started_event("p").wait()
    # In memory at once...
    assert (await worker.get_task_info(task_id)).progress == 0.5
    # ...and written to the row by the flusher (read by a module function, as another process would).
    # No event crosses from the writer's commit to a reader, so wait for the row itself.
    stored = await wait_until(lambda: aget_task_info(task_id), lambda info: info.progress == 0.5)
    assert stored.status == TaskStatus.RUNNING
    tasks.gate("p").set()
    await (await worker.get_task_future(task_id))
    assert (await aget_task_info(task_id)).progress == 1.0


async def test_every_later_progress_value_reaches_the_record_too(make_worker):
    worker = await make_worker(progress_interval=0.01)
    task_id = await worker.add_task(tasks.two_steps, "steps")
    await tasks.started_event("steps-1").wait()
    await wait_until(lambda: aget_task_info(task_id), lambda info: info.progress == 0.25)
    tasks.gate("steps-1").set()
    await tasks.started_event("steps-2").wait()
    stored = await wait_until(lambda: aget_task_info(task_id), lambda info: info.progress == 0.75)
    assert stored.status == TaskStatus.RUNNING
    tasks.gate("steps-2").set()
    assert await (await worker.get_task_future(task_id)) == "steps"


def test_the_tracker_reports_changes_after_each_flush():
    from django_atw.engine.executor import ProgressTracker

    armed: list[bool] = []
    tracker = ProgressTracker(lambda: armed.append(True))
    callback = tracker.callback_for("t")
    callback(0.1)
    assert tracker.take_dirty() == [("t", 0.1)]
    callback(0.2)
    callback(0.3)
    assert tracker.take_dirty() == [("t", 0.3)]
    assert armed == [True, True]  # the flush timer is armed once per flush, not per call


async def test_progress_callback_is_only_passed_to_functions_that_accept_it(worker):
    plain = await worker.add_task(tasks.no_progress_param, 7)
    with_kwargs = await worker.add_task(tasks.kwargs_progress)
    assert await worker.wait_for_tasks([plain, with_kwargs], timeout=10) == [7, True]


async def test_progress_values_are_clamped_to_0_1(worker):
    # kwargs_progress reports 2.0 and completes; the quick-start task reports (i+1)/n.
    task_id = await worker.add_task(tasks.kwargs_progress)
    await (await worker.get_task_future(task_id))
    assert (await worker.get_task_info(task_id)).progress == 1.0


def test_the_progress_callback_clamps_and_refuses_nan():
    from django_atw.engine.executor import ProgressTracker

    tracker = ProgressTracker(lambda: None)
    callback = tracker.callback_for("t")
    callback(-3)
    assert tracker.values["t"] == 0.0
    callback(7)
    assert tracker.values["t"] == 1.0
    with pytest.raises(ValueError, match="between 0.0 and 1.0"):
        callback(float("nan"))
    with pytest.raises(TypeError):
        callback(None)  # type: ignore[arg-type]


async def test_a_per_task_timeout_fails_the_task_saying_so(worker):
    task_id = await worker.add_task(tasks.sleep, 30, timeout=0.05)
    future = await worker.get_task_future(task_id)
    with pytest.raises(TaskTimeoutError, match=r"timed out after 0.05 seconds") as excinfo:
        await future
    # The original library's wording and category, for code ported from it.
    assert excinfo.value.category == "timeout"
    info = await worker.get_task_info(task_id)
    assert info.status == TaskStatus.FAILED
    assert info.error == "Task timed out after 0.05 seconds"


async def test_the_default_timeout_applies_when_the_task_has_none(make_worker):
    worker = await make_worker(task_timeout=0.05)
    task_id = await worker.add_task(tasks.sleep, 30)
    with pytest.raises(TaskTimeoutError, match="timed out after 0.05 seconds"):
        await (await worker.get_task_future(task_id))


async def test_a_per_task_timeout_overrides_the_default(make_worker):
    worker = await make_worker(task_timeout=0.01)
    task_id = await worker.add_task(tasks.sleep, 0.05, timeout=10)
    assert await (await worker.get_task_future(task_id)) == 0.05


async def test_a_failing_task_stores_its_error_and_the_future_chains_the_exception(worker):
    task_id = await worker.add_task(tasks.fail, "Value cannot be negative")
    future = await worker.get_task_future(task_id)
    with pytest.raises(TaskExecutionError, match="Value cannot be negative") as excinfo:
        await future
    assert isinstance(excinfo.value, TaskError)
    assert isinstance(excinfo.value.__cause__, ValueError)
    info = await worker.get_task_info(task_id)
    assert info.status == TaskStatus.FAILED
    assert info.error == "Value cannot be negative"
    assert info.error_type == "ValueError"
    from django_atw.models import TaskRecord

    record = await TaskRecord.objects.aget(id=task_id)
    assert "raise ValueError(message)" in record.traceback


async def test_a_result_that_is_not_json_fails_the_task_clearly(worker):
    task_id = await worker.add_task(tasks.returns_set)
    with pytest.raises(TaskExecutionError, match="returned a set, which cannot be stored as JSON"):
        await (await worker.get_task_future(task_id))


async def test_a_task_whose_type_is_not_registered_here_fails_with_a_clear_error(worker):
    from django_atw.models import TaskRecord

    # Parked on a queue nobody serves until its type is changed to one no process knows.
    await aenqueue(tasks.noop, task_id="ghost", queue="parked")
    await TaskRecord.objects.filter(id="ghost").aupdate(task_type="gone.away", queue="default")
    with pytest.raises(TaskExecutionError, match="'gone.away' is not registered in this worker"):
        await (await worker.get_task_future("ghost"))


async def test_concurrency_is_bounded_by_max_workers(make_worker):
    worker = await make_worker(max_workers=2)
    ids = [await worker.add_task(tasks.wait_for_gate, f"g{i}") for i in range(3)]
    await tasks.started_event("g0").wait()
    await tasks.started_event("g1").wait()
    assert len(worker.running_task_ids()) == 2
    assert (await worker.get_task_info(ids[2])).status == TaskStatus.PENDING
    tasks.gate("g0").set()
    await tasks.started_event("g2").wait()
    tasks.gate("g1").set()
    tasks.gate("g2").set()
    assert await worker.wait_for_tasks(ids, timeout=10) == ["g0", "g1", "g2"]


async def test_a_task_added_to_an_idle_worker_starts_without_a_claim(make_worker, monkeypatch):
    import threading

    from django_atw import store

    claims: list[int] = []
    idle = threading.Event()
    real_claim = store.claim_batch

    def counting_claim(*args: object) -> list[store.ClaimedTask]:
        claimed = real_claim(*args)  # type: ignore[arg-type]
        claims.append(len(claimed))
        if not claimed:
            idle.set()
        return claimed

    monkeypatch.setattr(store, "claim_batch", counting_claim)
    worker = await make_worker(worker_poll_interval=60)
    await asyncio.to_thread(idle.wait, 10)  # the first claim found the queue empty
    before = len(claims)
    task_id = await worker.add_task(tasks.echo, (1, 2))
    # A claim would have read the arguments back from JSON; the fast path does the same.
    assert await (await worker.get_task_future(task_id)) == {"args": [[1, 2]], "kwargs": {}}
    assert len(claims) == before
    info = await worker.get_task_info(task_id)
    assert (info.status, info.attempts, info.worker_id) == (TaskStatus.COMPLETED, 1, worker.worker_id)


@pytest.mark.parametrize(
    ("unstorable", "named"), [("nul", "a NUL character"), ("surrogate", "an unpaired surrogate")]
)
async def test_a_result_the_database_cannot_store_fails_that_task_alone(make_worker, unstorable, named):
    worker = await make_worker(progress_interval=0.01)
    bad = await worker.add_task(tasks.return_at_gate, "bad", "end", unstorable)
    good = await worker.add_task(tasks.return_at_gate, "good", "end")
    bad_future, good_future = await worker.get_task_futures([bad, good])
    await tasks.started_event("bad").wait()
    await tasks.started_event("good").wait()
    tasks.gate("end").set()  # both end now: their outcomes go in one write
    async with asyncio.timeout(10):
        with pytest.raises(TaskExecutionError, match=f"result contains {named}"):
            await bad_future
        assert await good_future == "good"
    info = await aget_task_info(bad)
    assert (info.status, info.error_type, info.result) == (TaskStatus.FAILED, "TaskResultError", None)
    assert (await aget_task_info(good)).status == TaskStatus.COMPLETED
    # The worker goes on storing progress and outcomes.
    after = await worker.add_task(tasks.wait_for_gate, "after")
    await tasks.started_event("after").wait()
    await wait_until(lambda: aget_task_info(after), lambda info: info.progress == 0.5)
    tasks.gate("after").set()
    async with asyncio.timeout(10):
        assert await (await worker.get_task_future(after)) == "after"


async def test_an_error_the_database_cannot_store_is_stored_cleaned_up(worker):
    from django_atw.models import TaskRecord

    task_id = await worker.add_task(tasks.fail_unstorably)
    async with asyncio.timeout(10):
        with pytest.raises(TaskExecutionError, match="^bad ab a"):
            await (await worker.get_task_future(task_id))
    record = await TaskRecord.objects.aget(id=task_id)
    assert (record.status, record.error) == ("failed", "bad ab a\\ud800b")
    assert record.error_type == f"tests.sampleapp.tasks.{'E' * 300}"[:255]
    assert "\x00" not in record.traceback and "raise unwieldy" in record.traceback


async def test_a_running_task_reads_its_id_attempt_and_worker_from_current_run(make_worker):
    worker = await make_worker()
    task_id = await worker.add_task(tasks.whoami)
    run = await (await worker.get_task_future(task_id))
    assert run == {"task_id": task_id, "attempt": 1, "worker_id": worker.worker_id}


@pytest.mark.parametrize("depth", [MAX_JSON_DEPTH + 1, 600, 5000])
async def test_a_result_nested_too_deep_fails_the_task_naming_the_limit(worker, depth):
    task_id = await worker.add_task(tasks.returns_nested, depth)
    message = f"The task's result is nested {depth} levels deep; at most {MAX_JSON_DEPTH} levels are stored."
    with pytest.raises(TaskExecutionError, match=re.escape(message)):
        await (await worker.get_task_future(task_id))
    assert (await worker.get_task_info(task_id)).error_type == "TaskResultError"


async def test_a_result_nested_as_deep_as_the_limit_is_stored(worker):
    task_id = await worker.add_task(tasks.returns_nested, MAX_JSON_DEPTH)
    assert json_depth(await (await worker.get_task_future(task_id))) == MAX_JSON_DEPTH


@override_settings(ATW={"MAX_RESULT_BYTES": 100})
async def test_a_result_larger_than_max_result_bytes_fails_the_task_naming_the_limit(worker):
    task_id = await worker.add_task(tasks.returns_text, 99)
    message = "The task's result takes 101 bytes as JSON; at most ATW['MAX_RESULT_BYTES'] = 100 are stored."
    with pytest.raises(TaskExecutionError, match=re.escape(message)):
        await (await worker.get_task_future(task_id))
    task_id = await worker.add_task(tasks.returns_text, 98)
    assert await (await worker.get_task_future(task_id)) == "x" * 98
