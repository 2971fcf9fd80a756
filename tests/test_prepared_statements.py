"""PostgreSQL: the statements a worker runs over and over are prepared on the server once."""

from __future__ import annotations

import pytest
from django.db import connection

from django_atw import enqueue, store, validation

pytestmark = [
    pytest.mark.django_db(transaction=True),
    pytest.mark.skipif(connection.vendor != "postgresql", reason="SQLite has no server to prepare on"),
]


def _prepared_inserts() -> int:
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT count(*) FROM pg_prepared_statements WHERE statement LIKE %s",
            ["INSERT INTO django_atw_taskrecord%"],
        )
        (count,) = cursor.fetchone()
    return int(count)


def test_an_add_is_prepared_once_and_reused():
    """Django binds on the client, so the server parsed and planned every one-row INSERT anew."""
    enqueue("noop")
    enqueue("noop")
    assert _prepared_inserts() == 1


@pytest.mark.parametrize(
    ("setting", "value"),
    [("DISABLE_SERVER_SIDE_CURSORS", True), ("OPTIONS", {"prepare_threshold": None})],
    ids=["server-side-cursors-disabled", "prepare-threshold-none"],
)
def test_behind_a_transaction_pooler_nothing_is_prepared(monkeypatch, setting, value):
    """Either setting says a pooler may hand each transaction another server connection."""
    monkeypatch.setitem(connection.settings_dict, setting, value)
    enqueue("noop")
    enqueue("noop")
    assert _prepared_inserts() == 0


def _plans(prefix: str) -> list[tuple[int, int]]:
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT generic_plans, custom_plans FROM pg_prepared_statements WHERE statement LIKE %s",
            [prefix + "%"],
        )
        return [(int(generic), int(custom)) for generic, custom in cursor.fetchall()]


def test_a_worker_s_claiming_add_settles_on_one_plan():
    """A prepared statement only saves the planning when PostgreSQL settles on its generic plan.
    With the worker's queues as one array of unknown length it never did: each add was planned
    again (0.47 ms a one-row add instead of 0.29 ms)."""
    store.register_worker("w", "host", 1, ["default", "other"], 10)
    for _ in range(10):
        new = validation.build("noop", (), {}, default_queue="default")
        new.claimed_by = "w"
        store.add_tasks([new], claim_queues=["default", "other"])
    # PostgreSQL plans the first five runs for their values, then weighs the generic plan.
    ((generic, custom),) = _plans("INSERT INTO django_atw_taskrecord")
    assert (generic, custom) == (5, 5)
