"""Group commit: concurrent enqueues stored by one INSERT and one commit, each failing alone.

A held INSERT stands for a commit in progress: callers that arrive meanwhile queue behind it,
and a ``GroupCommit`` subclass reports each one queued, so a test knows the batch it builds.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable, Iterator, Sequence
from typing import Any

import pytest
from asgiref.sync import sync_to_async
from django.db import connections, transaction
from django.test import override_settings

from django_atw import adding, aenqueue, aenqueue_many, enqueue, enqueue_many, store
from django_atw.exceptions import DuplicateTaskIdError, QueueFullError, TaskArgumentError
from django_atw.group_commit import GroupCommit
from django_atw.models import TaskRecord
from django_atw.values import NewTask

pytestmark = pytest.mark.django_db(transaction=True)
WAIT = 10.0  # seconds before a missing event fails the test (never reached when all is well)


class Observed(GroupCommit[Any, Any]):
    """A group commit that counts each thread that queues behind a running batch."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.queued = threading.Semaphore(0)

    def _follow(self, request: Any) -> Any:
        self.queued.release()  # the request is queued before _follow is called
        return super()._follow(request)


class HeldInserts:
    """``store.add_tasks`` that records each call's size and thread; once armed, holds the next."""

    def __init__(self, real: Callable[..., list[str]]) -> None:
        self.real = real
        self.calls: list[tuple[str, int]] = []
        self.armed = False
        self.entered = threading.Event()
        self.release = threading.Event()

    def __call__(self, new_tasks: Sequence[NewTask], claim_queues: Sequence[str] = ()) -> list[str]:
        self.calls.append((threading.current_thread().name, len(new_tasks)))
        if self.armed:
            self.armed = False
            self.entered.set()
            assert self.release.wait(WAIT)
        return self.real(new_tasks, claim_queues)

    @property
    def sizes(self) -> list[int]:
        return [size for _, size in self.calls]


@pytest.fixture
def group(monkeypatch: pytest.MonkeyPatch) -> Iterator[Observed]:
    observed = Observed(adding._store_batch, max_rows=adding.GROUP_MAX_ROWS, name="atw-enqueue-test")
    monkeypatch.setattr(adding, "_GROUP", observed)
    yield observed
    observed.close()


@pytest.fixture
def inserts(monkeypatch: pytest.MonkeyPatch) -> Iterator[HeldInserts]:
    recorded = HeldInserts(store.add_tasks)
    monkeypatch.setattr(store, "add_tasks", recorded)
    yield recorded
    recorded.release.set()


def stored_ids() -> set[str]:
    return set(TaskRecord.objects.values_list("id", flat=True))


def visible_elsewhere(task_id: str) -> bool:
    """Whether a connection of its own (no thread's, no transaction) sees the task's row."""
    other = connections.create_connection("default")
    try:
        with other.cursor() as cursor:
            cursor.execute(f"SELECT 1 FROM {TaskRecord._meta.db_table} WHERE id = %s", [task_id])
            return cursor.fetchone() is not None
    finally:
        other.close()


class Caller(threading.Thread):
    """A thread that makes one call and keeps its result or exception."""

    def __init__(self, call: Callable[[], Any], name: str) -> None:
        super().__init__(name=name)
        self.call = call
        self.outcome: Any = None

    def run(self) -> None:
        try:
            self.outcome = self.call()
        except Exception as exc:
            self.outcome = exc
        finally:
            connections.close_all()

    def done(self) -> Any:
        self.join(WAIT)
        assert not self.is_alive()
        return self.outcome


def start_leader(call: Callable[[], Any], held: HeldInserts) -> Caller:
    """Start a caller whose INSERT is held: a commit in progress."""
    held.armed = True
    leader = Caller(call, "leader")
    leader.start()
    assert held.entered.wait(WAIT)
    return leader


def queue_behind(group: Observed, calls: list[Callable[[], Any]]) -> list[Caller]:
    """Start one caller per call, in order, each queued before the next starts."""
    callers = []
    for index, call in enumerate(calls):
        caller = Caller(call, f"follower-{index}")
        caller.start()
        assert group.queued.acquire(timeout=WAIT)
        callers.append(caller)
    return callers


# --- threads ----------------------------------------------------------------------------------


def test_eight_threads_store_every_task_and_each_is_visible_elsewhere_when_its_call_returns():
    per_thread = 25
    invisible: list[str] = []
    ids: list[list[str]] = [[] for _ in range(8)]

    def calls(mine: list[str]) -> None:
        for n in range(per_thread):
            task_id = enqueue("echo", n)
            if not visible_elsewhere(task_id):
                invisible.append(task_id)
            mine.append(task_id)

    threads = [Caller(lambda mine=mine: calls(mine), f"caller-{i}") for i, mine in enumerate(ids)]
    for thread in threads:
        thread.start()
    assert [thread.done() for thread in threads] == [None] * 8
    every = [task_id for mine in ids for task_id in mine]
    assert len(set(every)) == len(every) == 8 * per_thread
    assert stored_ids() == set(every)
    assert invisible == []


def test_calls_made_during_a_commit_are_stored_together_by_one_of_them(group, inserts):
    leader = start_leader(lambda: enqueue("noop"), inserts)
    followers = queue_behind(group, [lambda n=n: enqueue("echo", n) for n in range(7)])
    inserts.release.set()
    ids = [leader.done(), *(follower.done() for follower in followers)]
    assert inserts.sizes == [1, 7]  # the seven waiting calls: one INSERT, by one of their threads
    assert inserts.calls[1][0].startswith("follower-")
    assert stored_ids() == set(ids) and len(set(ids)) == 8
    echoed = dict(TaskRecord.objects.filter(task_type="echo").values_list("id", "args"))
    assert [echoed[task_id] for task_id in ids[1:]] == [[n] for n in range(7)]


def test_a_bad_call_in_a_batch_fails_alone_with_the_error_it_gets_alone(group, inserts):
    enqueue("noop", task_id="taken")
    limited = override_settings(ATW={"POLL_INTERVAL": 0.2, "CLEANUP_INTERVAL": 0, "MAX_QUEUE_SIZE": 10})
    with limited:
        leader = start_leader(lambda: enqueue("noop"), inserts)
        followers = queue_behind(
            group,
            [
                lambda: enqueue("record", "first"),
                lambda: enqueue("noop", task_id="taken"),  # stored before the batch
                lambda: enqueue("record", "twin-1", task_id="twin"),
                lambda: enqueue("record", "twin-2", task_id="twin"),  # taken by the call before
                lambda: enqueue_many("noop", [()] * 20),  # does not fit
                lambda: enqueue("record", "last"),
            ],
        )
        inserts.release.set()
        outcomes = [follower.done() for follower in followers]
        assert isinstance(leader.done(), str)
    first, taken, twin, twin_again, many, last = outcomes
    assert isinstance(taken, DuplicateTaskIdError)
    assert str(taken) == "task_id 'taken' is already used by another task; pass a new id or none."
    assert twin == "twin"
    assert isinstance(twin_again, DuplicateTaskIdError) and twin_again.task_id == "twin"
    assert isinstance(many, QueueFullError)
    # Checked as if stored one by one: taken, the leader's, first and twin are pending.
    assert str(many).startswith("4 tasks are pending and max_queue_size is 10; 20 more do not fit.")
    assert stored_ids() == {"taken", leader.outcome, first, "twin", last}
    labels = dict(TaskRecord.objects.filter(task_type="record").values_list("id", "args"))
    assert labels == {first: ["first"], "twin": ["twin-1"], last: ["last"]}


def test_enqueue_inside_atomic_uses_the_callers_transaction_and_connection(group, inserts):
    leader = start_leader(lambda: enqueue("noop"), inserts)  # a batch in progress: it is not waited for
    with transaction.atomic():
        task_id = enqueue("record", "mine")
        assert inserts.calls[-1][0] == threading.current_thread().name
        assert TaskRecord.objects.filter(id=task_id).exists()
        assert not visible_elsewhere(task_id)
    assert visible_elsewhere(task_id)
    inserts.release.set()
    leader_id = leader.done()
    assert stored_ids() == {leader_id, task_id}


@pytest.mark.parametrize("backend", ["database", "memory"])
@pytest.mark.parametrize("batch_fails", [False, True], ids=["batch-stored", "batch-retried-call-by-call"])
def test_an_add_time_cache_hit_in_a_batch_is_stored_completed(group, inserts, backend, batch_fails):
    from asgiref.sync import async_to_sync

    from django_atw.cache.adapter import default_adapter
    from tests.cache import cache_tasks

    enqueue("noop", task_id="taken")
    cache = {"ENABLED": True, "BACKEND": backend, "DEFAULT_TTL": 60}
    with override_settings(ATW={"POLL_INTERVAL": 0.2, "CLEANUP_INTERVAL": 0, "CACHE": cache}):
        adapter = default_adapter()
        async_to_sync(adapter.set_entry)(
            adapter.make_key("cache_square", [4], {}), 16, task_type="cache_square"
        )
        leader = start_leader(lambda: enqueue("noop"), inserts)
        calls = [lambda: enqueue(cache_tasks.square, 4), lambda: enqueue(cache_tasks.square, 5)]
        if batch_fails:
            calls.append(lambda: enqueue("noop", task_id="taken"))
        followers = queue_behind(group, calls)
        inserts.release.set()
        hit, miss, *refused = [follower.done() for follower in followers]
        leader.done()
    assert [type(error) for error in refused] == ([DuplicateTaskIdError] if batch_fails else [])
    rows = dict(TaskRecord.objects.values_list("id", "status"))
    assert (rows[hit], rows[miss]) == ("completed", "pending")
    record = TaskRecord.objects.get(id=hit)
    assert (record.from_cache, record.result, record.progress) == (True, 16, 1.0)


# --- coroutines -------------------------------------------------------------------------------


async def test_aenqueue_from_many_coroutines_stores_every_task_off_the_shared_thread(inserts):
    per_coroutine = 25

    async def calls(worker: int) -> list[str]:
        return [await aenqueue("echo", worker, n) for n in range(per_coroutine)]

    ids = [task_id for mine in await asyncio.gather(*(calls(w) for w in range(8))) for task_id in mine]
    assert len(set(ids)) == len(ids) == 8 * per_coroutine
    assert await sync_to_async(stored_ids)() == set(ids)
    assert {name.rpartition("_")[0] for name, _ in inserts.calls} == {"atw-enqueue"}
    assert sum(inserts.sizes) == len(ids)


async def test_aenqueue_many_is_stored_by_the_group_commit_too(inserts):
    ids = await aenqueue_many("echo", [(n,) for n in range(5)], queue="other")
    assert inserts.sizes == [5]
    assert await sync_to_async(stored_ids)() == set(ids)


BAD_CALLS: dict[str, tuple[tuple[Any, ...], dict[str, Any]]] = {
    "unknown-task": (("no-such-task",), {}),
    "bad-argument": (("echo", object()), {}),
    "bad-priority": (("noop",), {"priority": "high"}),
    "taken-id": (("noop",), {"task_id": "taken"}),
    "unknown-owner": (("noop",), {"created_by": 123456}),
    "bad-key-function": (("noop",), {"cache_key_fn": "not callable"}),
}


@pytest.mark.parametrize("kind", BAD_CALLS)
async def test_aenqueue_raises_what_enqueue_raises(kind):
    args, options = BAD_CALLS[kind]
    await sync_to_async(enqueue)("noop", task_id="taken")
    with pytest.raises(Exception) as sync_error:
        await sync_to_async(enqueue)(*args, **options)
    with pytest.raises(Exception) as async_error:
        await aenqueue(*args, **options)
    assert type(async_error.value) is type(sync_error.value)
    assert str(async_error.value) == str(sync_error.value)


async def test_aenqueue_many_raises_what_enqueue_many_raises():
    with pytest.raises(TaskArgumentError) as sync_error:
        await sync_to_async(enqueue_many)("echo", [(1,), (object(),)])
    with pytest.raises(TaskArgumentError) as async_error:
        await aenqueue_many("echo", [(1,), (object(),)])
    assert str(async_error.value) == str(sync_error.value)


# --- the group commit alone -------------------------------------------------------------------


def test_a_thread_in_a_batch_leads_it_and_a_coroutine_in_it_gets_its_outcome():
    log: list[tuple[str, list[int]]] = []
    entered, release = threading.Event(), threading.Event()

    def execute(items: list[int]) -> list[int]:
        log.append((threading.current_thread().name, list(items)))
        if items == [1]:
            entered.set()
            assert release.wait(WAIT)
        return [item * 10 for item in items]

    group = Observed(execute, max_rows=100, name="test-group")
    leader = Caller(lambda: group.run(1), "leader")
    leader.start()
    assert entered.wait(WAIT)

    async def main() -> tuple[int, Any]:
        awaited = asyncio.create_task(group.arun(2))
        await asyncio.sleep(0)  # one turn of the loop: arun runs up to its await, queued
        (follower,) = queue_behind(group, [lambda: group.run(3)])
        release.set()
        return await awaited, follower.done()

    assert asyncio.run(main()) == (20, 30)
    assert leader.done() == 10
    assert log == [("leader", [1]), ("follower-0", [2, 3])]
    group.close()


def test_coroutines_alone_are_led_by_the_groups_own_thread():
    names: list[str] = []

    def execute(items: list[int]) -> list[int]:
        names.append(threading.current_thread().name)
        return [-item for item in items]

    group = Observed(execute, max_rows=100, name="test-group")

    async def main() -> list[int]:
        return list(await asyncio.gather(*(group.arun(n) for n in range(5))))

    assert asyncio.run(main()) == [0, -1, -2, -3, -4]
    assert set(names) == {"test-group_0"}
    group.close()


def test_a_batch_takes_queued_calls_up_to_max_rows_and_an_error_fails_only_its_batch():
    log: list[list[int]] = []
    entered, release = threading.Event(), threading.Event()

    def execute(items: list[int]) -> list[int | BaseException]:
        log.append(list(items))
        if items == [0]:
            entered.set()
            assert release.wait(WAIT)
        if 3 in items:
            raise RuntimeError("batch broken")
        return [item for item in items]

    group = Observed(execute, max_rows=4, name="test-group")
    leader = Caller(lambda: group.run(0, rows=1), "leader")
    leader.start()
    assert entered.wait(WAIT)
    followers = queue_behind(group, [lambda n=n: group.run(n, rows=2) for n in (1, 2, 3)])
    release.set()
    outcomes = [follower.done() for follower in followers]
    assert leader.done() == 0
    assert log == [[0], [1, 2], [3]]
    assert outcomes[:2] == [1, 2]
    assert isinstance(outcomes[2], RuntimeError)
    group.close()


def test_with_two_lanes_a_call_during_a_commit_gets_a_batch_of_its_own_and_a_third_waits():
    log: list[tuple[str, list[int]]] = []
    entered = {1: threading.Event(), 2: threading.Event()}
    release = threading.Event()

    def execute(items: list[int]) -> list[int]:
        log.append((threading.current_thread().name, list(items)))
        if items[0] in entered:
            entered[items[0]].set()
            assert release.wait(WAIT)
        return [-item for item in items]

    group = Observed(execute, max_rows=100, name="test-group", lanes=lambda: 2)
    first = Caller(lambda: group.run(1), "first")
    first.start()
    assert entered[1].wait(WAIT)
    second = Caller(lambda: group.run(2), "second")
    second.start()
    assert entered[2].wait(WAIT)  # not queued behind the held commit: a second lane
    (third,) = queue_behind(group, [lambda: group.run(3)])  # both lanes busy: it waits
    release.set()
    assert (first.done(), second.done(), third.done()) == (-1, -2, -3)
    assert sorted(log) == [("first", [1]), ("follower-0", [3]), ("second", [2])]
    group.close()


def test_coroutine_batches_share_the_lanes_and_close_reaches_every_thread():
    """Two held coroutine batches run at once, each on one of the group's threads with its own
    connection; close() closes both connections (a thread it missed would keep one open)."""
    held = threading.Barrier(3)
    opened: list[Any] = []

    def execute(items: list[int]) -> list[int]:
        connection = connections["default"]
        connection.ensure_connection()
        opened.append(connection)
        if items[0] < 2:
            held.wait(WAIT)  # both batches are in: neither waited for the other
        return [-item for item in items]

    group = Observed(execute, max_rows=1, name="test-group", lanes=lambda: 2)

    async def main() -> list[int]:
        batches = asyncio.gather(group.arun(0), group.arun(1), group.arun(2))
        await asyncio.to_thread(held.wait, WAIT)
        return list(await batches)

    assert asyncio.run(main()) == [0, -1, -2]
    assert len({id(connection) for connection in opened}) == 2
    group.close()
    assert all(connection.connection is None for connection in opened)
