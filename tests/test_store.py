"""store.py: query counts of the hot paths, claims, fencing, cancels."""

import contextlib
import json
import threading
from collections.abc import Iterator
from datetime import timedelta

import pytest
from django.db import DataError, connection, connections, transaction
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from django_atw import enqueue, enqueue_many, store
from django_atw.models import TaskRecord
from django_atw.status import TaskStatus
from django_atw.store import Outcome

pytestmark = pytest.mark.django_db(transaction=True)
TRANSACTION_CONTROL = ("BEGIN", "COMMIT", "ROLLBACK", "SAVEPOINT", "RELEASE SAVEPOINT")


@pytest.fixture(autouse=True)
def _workers() -> None:
    """The workers these tests claim for: a claim needs its worker's row (a live lease)."""
    for worker_id in ("w1", "w9", "someone-else"):
        store.register_worker(worker_id, "test-host", 1, ["default"], 1)


@contextlib.contextmanager
def statements(expected: int) -> Iterator[None]:
    """Assert how many SQL statements ran, not counting transaction control (vendor-specific)."""
    with CaptureQueriesContext(connection) as captured:
        yield
    sql = [q["sql"] for q in captured.captured_queries if not q["sql"].startswith(TRANSACTION_CONTROL)]
    assert len(sql) == expected, sql


def test_add_tasks_is_one_insert_for_many():
    with statements(1):
        ids = enqueue_many("echo", [(i, {"ü": [True, None, 1.5]}) for i in range(2000)], priority=3)
    assert TaskRecord.objects.filter(id__in=ids, priority=3, status="pending").count() == 2000
    record = TaskRecord.objects.get(id=ids[7])
    assert (record.args, record.kwargs, record.metadata) == ([7, {"ü": [True, None, 1.5]}], {}, {})
    assert (record.attempts, record.progress, record.error, record.from_cache) == (0, 0.0, "", False)


def test_enqueue_is_one_query():
    with statements(1):
        enqueue("echo", 1)


def test_claim_batch_is_one_statement_in_priority_then_fifo_order():
    low = enqueue("record", "low", priority=5)
    first = enqueue("record", "first", priority=1)
    second = enqueue("record", "second", priority=1)
    with statements(1):
        claimed = store.claim_batch("w1", ["default"], 2)
    assert [c.id for c in claimed] == [first, second]
    assert [c.attempts for c in claimed] == [1, 1]
    rows = dict(TaskRecord.objects.values_list("id", "status"))
    assert rows == {first: "running", second: "running", low: "pending"}


def test_a_claim_never_starts_a_task_before_it_was_created():
    """A claim reads its clock before its statement runs; on SQLite it may then wait for the write
    lock while an enqueue commits a row created after that reading. Started stays >= created."""
    task_id = enqueue("noop")
    later = timezone.now() + timedelta(seconds=5)
    TaskRecord.objects.filter(id=task_id).update(created_at=later)
    store.claim_batch("w1", ["default"], 1)
    record = TaskRecord.objects.get(id=task_id)
    assert record.started_at is not None
    assert record.started_at >= record.created_at


@pytest.mark.skipif(connection.vendor != "postgresql", reason="a PostgreSQL commit setting")
def test_a_claim_on_postgresql_commits_without_waiting_for_the_wal_flush_in_its_one_round_trip():
    task_id = enqueue("noop")
    with CaptureQueriesContext(connection) as captured:
        assert [c.id for c in store.claim_batch("w1", ["default"], 5)] == [task_id]
    (sql,) = [q["sql"] for q in captured.captured_queries]
    assert sql.startswith("SET LOCAL synchronous_commit TO OFF; ")
    # SET LOCAL lasted for the claim's own transaction only.
    with connection.cursor() as cursor:
        cursor.execute("SHOW synchronous_commit")
        assert cursor.fetchone() == ("on",)


def test_claim_batch_only_takes_the_named_queues():
    enqueue("noop", queue="mail")
    other = enqueue("noop", queue="reports")
    assert [c.id for c in store.claim_batch("w1", ["reports", "video"], 10)] == [other]


def test_write_batch_is_fenced_by_the_claiming_worker():
    task_id = enqueue("noop")
    store.claim_batch("w1", ["default"], 1)
    late = Outcome(task_id=task_id, status=TaskStatus.COMPLETED, progress=1.0, result_json="1")
    assert store.write_batch("someone-else", [(task_id, 0.3)], [late]).outcomes == []
    assert TaskRecord.objects.get(id=task_id).status == "running"
    with statements(2):
        assert store.write_batch("w1", [(task_id, 0.3)], [late]).outcomes == [late]
    record = TaskRecord.objects.get(id=task_id)
    assert (record.status, record.result, record.progress) == ("completed", 1, 1.0)


def test_write_batch_returns_only_the_progress_it_stored():
    """A task cancelled elsewhere, or run by another worker now: its progress is not this worker's
    to announce."""
    mine, cancelled, taken = enqueue_many("noop", [(), (), ()])
    store.claim_batch("w1", ["default"], 3)
    TaskRecord.objects.filter(id=cancelled).update(status="cancelled")
    TaskRecord.objects.filter(id=taken).update(worker_id="w9")
    written = store.write_batch("w1", [(mine, 0.5), (cancelled, 0.5), (taken, 0.5)], [])
    assert written == ([], [(mine, 0.5)])
    assert dict(TaskRecord.objects.values_list("id", "progress")) == {mine: 0.5, cancelled: 0.0, taken: 0.0}


def test_write_batch_stores_plain_completions_beside_other_outcomes():
    plain, cached, failed, retried = enqueue_many("noop", [(), (), (), ()])
    claims = {c.id: c for c in store.claim_batch("w1", ["default"], 4)}
    outcomes = [
        Outcome(task_id=plain, status=TaskStatus.COMPLETED, progress=1.0, result_json='{"a": [1]}'),
        Outcome(task_id=cached, status=TaskStatus.COMPLETED, progress=1.0, result_json="3", from_cache=True),
        Outcome(task_id=failed, status=TaskStatus.FAILED, progress=0.5, error="boom", error_type="E"),
        Outcome(task_id=retried, status=TaskStatus.PENDING, progress=0.2, error="again", error_type="K"),
    ]
    for outcome in outcomes:
        outcome.attempt = claims[outcome.task_id].attempts
    with statements(3):
        assert store.write_batch("w1", [], outcomes).outcomes == outcomes
    rows = {
        row[0]: row[1:]
        for row in TaskRecord.objects.values_list(
            "id", "status", "result", "progress", "from_cache", "error", "error_type", "worker_id"
        )
    }
    assert rows[plain] == ("completed", {"a": [1]}, 1.0, False, "", "", "w1")
    assert rows[cached] == ("completed", 3, 1.0, True, "", "", "w1")
    assert rows[failed] == ("failed", None, 0.5, False, "boom", "E", "w1")
    assert rows[retried] == ("pending", None, 0.0, False, "again", "K", None)


def test_write_batch_takes_whole_and_fractional_progress_in_one_batch():
    """PostgreSQL receives each column as one binary array, which must hold one Python type."""
    ran, done, other = enqueue_many("noop", [(), (), ()])
    claims = {c.id: c.attempts for c in store.claim_batch("w1", ["default"], 3)}
    outcomes = [
        Outcome(task_id=done, status=TaskStatus.COMPLETED, progress=1, result_json="1", attempt=claims[done]),
        Outcome(task_id=other, status=TaskStatus.FAILED, progress=0.25, error="x", attempt=claims[other]),
    ]
    assert store.write_batch("w1", [(ran, 1), (other, 0.5)], outcomes).outcomes == outcomes
    progress = dict(TaskRecord.objects.values_list("id", "progress"))
    assert progress == {ran: 1.0, done: 1.0, other: 0.25}


def test_reads_by_id_never_split_an_id_that_holds_a_comma():
    """PostgreSQL reads long id lists as one comma-joined text: an id with a comma matches nothing."""
    first, second = enqueue("noop", task_id="a"), enqueue("noop", task_id="b")
    store.cancel(first)
    assert store.watch_states(["a,b"]) == (["a,b"], {})
    assert store.finished_ids_among(["a,b", second]) == []
    missing, finished = store.watch_states([first, second])
    assert (missing, list(finished)) == ([], [first])
    assert store.watch_states([]) == ([], {})


# Values no database or only PostgreSQL refuses (SQLite stores them as they are).
UNSTORABLE = {
    "nul-in-result": ({"status": TaskStatus.COMPLETED, "result_json": json.dumps("a\x00b")}, {"postgresql"}),
    "surrogate-in-result": (
        {"status": TaskStatus.COMPLETED, "result_json": json.dumps("\ud800")},
        {"postgresql"},
    ),
    "nul-in-error": ({"status": TaskStatus.FAILED, "error": "a\x00b"}, {"postgresql"}),
    "surrogate-in-error": ({"status": TaskStatus.FAILED, "error": "a\ud800b"}, {"postgresql", "sqlite"}),
    "long-error-type": ({"status": TaskStatus.FAILED, "error_type": "E" * 256}, {"postgresql"}),
}


@pytest.mark.parametrize("kind", UNSTORABLE)
def test_write_batch_stores_nothing_of_a_batch_with_a_value_the_database_refuses(kind):
    """The writer relies on this: a refused value raises a data error (not a connection error)."""
    fields, refused_by = UNSTORABLE[kind]
    good, bad = enqueue_many("noop", [(), ()])
    claims = {c.id: c.attempts for c in store.claim_batch("w1", ["default"], 2)}
    outcomes = [
        Outcome(task_id=good, status=TaskStatus.COMPLETED, progress=1, result_json="1", attempt=claims[good]),
        Outcome(task_id=bad, progress=0.5, attempt=claims[bad], **fields),
    ]
    if connection.vendor in refused_by:
        with pytest.raises((DataError, ValueError)):
            store.write_batch("w1", [], outcomes)
        assert set(TaskRecord.objects.values_list("status", flat=True)) == {"running"}
    else:
        assert store.write_batch("w1", [], outcomes).outcomes == outcomes


def test_a_plain_completion_is_fenced_by_its_attempt():
    task_id = enqueue("noop")
    (claim,) = store.claim_batch("w1", ["default"], 1)
    stale = Outcome(task_id=task_id, status=TaskStatus.COMPLETED, progress=1.0, attempt=claim.attempts + 1)
    assert store.write_batch("w1", [], [stale]).outcomes == []
    assert TaskRecord.objects.get(id=task_id).status == "running"


def test_an_outcome_never_overwrites_a_task_cancelled_meanwhile():
    task_id = enqueue("noop")
    store.claim_batch("w1", ["default"], 1)
    TaskRecord.objects.filter(id=task_id).update(status="cancelled")
    store.write_batch("w1", [], [Outcome(task_id=task_id, status=TaskStatus.COMPLETED, progress=1.0)])
    assert TaskRecord.objects.get(id=task_id).status == "cancelled"


def test_cancel_of_pending_running_and_finished_tasks():
    pending = enqueue("noop")
    assert store.cancel(pending) == (store.CANCELLED_PENDING, None)
    running = enqueue("noop")
    store.claim_batch("w9", ["default"], 1)
    assert store.cancel(running) == (store.CANCEL_REQUESTED, "w9")
    assert store.cancel_requested_among("w9", [running]) == [running]
    assert store.cancel(pending) == (store.NOT_CANCELLABLE, None)
    assert store.cancel("unknown") == (store.NOT_CANCELLABLE, None)


def test_release_returns_tasks_to_pending_without_counting_the_attempt():
    task_id = enqueue("noop")
    store.claim_batch("w1", ["default"], 1)
    assert store.release("w1", [task_id]) == 1
    record = TaskRecord.objects.get(id=task_id)
    assert (record.status, record.worker_id, record.attempts) == ("pending", None, 0)


def test_release_without_ids_returns_every_task_running_under_the_worker_and_no_other():
    """A process exiting at once releases what it claimed, started by its engine or not yet."""
    mine_a, mine_b, theirs = enqueue_many("noop", [(), (), ()])
    store.claim_batch("w1", ["default"], 2)
    store.claim_batch("w9", ["default"], 1)
    assert store.release("w1") == 2
    statuses = dict(TaskRecord.objects.values_list("id", "status"))
    assert statuses == {mine_a: "pending", mine_b: "pending", theirs: "running"}
    assert store.release("w1", []) == 0


def test_release_cancels_a_task_whose_cancel_was_requested_and_never_hands_it_out_again():
    flagged, other = enqueue_many("noop", [(), ()])
    store.claim_batch("w1", ["default"], 2)
    assert store.cancel(flagged) == (store.CANCEL_REQUESTED, "w1")
    assert store.release("w1", [flagged, other]) == 1  # only the other goes back to pending
    record = TaskRecord.objects.get(id=flagged)
    assert (record.status, record.error, record.error_type) == (
        "cancelled",
        "Task cancelled while running",
        "TaskCancellationError",
    )
    assert record.completed_at is not None
    assert [c.id for c in store.claim_batch("w1", ["default"], 2)] == [other]


def test_claim_never_takes_a_task_whose_cancel_was_requested():
    flagged, other = enqueue_many("noop", [(), ()])
    TaskRecord.objects.filter(id=flagged).update(cancel_requested=True)
    assert [c.id for c in store.claim_batch("w1", ["default"], 2)] == [other]
    assert TaskRecord.objects.get(id=flagged).status == "pending"


def test_delete_finished_before_works_in_batches():
    ids = enqueue_many("noop", [() for _ in range(7)])
    from django.utils import timezone

    TaskRecord.objects.filter(id__in=ids[:5]).update(status="completed", completed_at=timezone.now())
    cutoff = timezone.now()
    assert store.delete_finished_before(cutoff, batch_size=2) == 5
    assert TaskRecord.objects.count() == 2


@pytest.mark.skipif(connection.vendor != "postgresql", reason="SKIP LOCKED is PostgreSQL's")
def test_claim_skips_rows_locked_by_another_worker():
    ids = enqueue_many("noop", [() for _ in range(4)])
    locked = threading.Event()
    release = threading.Event()

    def hold_first_two() -> None:
        try:
            with transaction.atomic():
                list(TaskRecord.objects.select_for_update().filter(id__in=ids[:2]))
                locked.set()
                release.wait(10)
        finally:
            connections.close_all()

    holder = threading.Thread(target=hold_first_two)
    holder.start()
    try:
        assert locked.wait(10)
        claimed = store.claim_batch("w1", ["default"], 4)
    finally:
        release.set()
        holder.join()
    assert [c.id for c in claimed] == ids[2:]
