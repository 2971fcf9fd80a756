"""The one add path: workers are woken after the commit, and a taken id is reported inside a transaction."""

from __future__ import annotations

import pytest
from django.db import connection, transaction

from django_atw import enqueue, enqueue_many, wakeup
from django_atw.exceptions import DuplicateTaskIdError
from django_atw.models import TaskRecord
from tests.sampleapp import tasks

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def wakes(monkeypatch: pytest.MonkeyPatch) -> list[tuple[set[str], bool]]:
    """Each local wake-up sent: its queues, and whether a transaction was still open then."""
    sent: list[tuple[set[str], bool]] = []
    monkeypatch.setattr(
        wakeup, "notify", lambda queues: sent.append((set(queues), connection.in_atomic_block))
    )
    return sent


def test_enqueue_inside_atomic_wakes_workers_only_once_committed(wakes):
    with transaction.atomic():
        enqueue(tasks.noop)
        enqueue_many(tasks.noop, [()], queue="other")
        assert wakes == []
    assert wakes == [({"default"}, False), ({"other"}, False)]


def test_enqueue_in_a_rolled_back_transaction_wakes_no_worker(wakes):
    with pytest.raises(ZeroDivisionError), transaction.atomic():
        enqueue(tasks.noop)
        1 / 0  # noqa: B018
    assert wakes == []
    assert TaskRecord.objects.count() == 0


def test_enqueue_outside_a_transaction_wakes_workers_at_once(wakes):
    enqueue(tasks.noop)
    assert wakes == [({"default"}, False)]


def test_a_taken_task_id_inside_atomic_raises_duplicate_task_id_error_and_keeps_the_transaction():
    enqueue(tasks.noop, task_id="taken")
    with transaction.atomic():
        with pytest.raises(DuplicateTaskIdError, match="'taken' is already used"):
            enqueue(tasks.noop, task_id="taken")
        # The caller's transaction is still usable (on PostgreSQL an error aborts it).
        enqueue(tasks.noop, task_id="fresh")
    assert set(TaskRecord.objects.values_list("id", flat=True)) == {"taken", "fresh"}
