"""PostgreSQL: the statements a worker runs over and over are prepared on the server once."""

from __future__ import annotations

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext

from django_atw import enqueue, store
from django_atw.exceptions import DuplicateTaskIdError

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


def test_prepared_statements_are_logged_and_raise_django_errors(settings):
    settings.DEBUG = True
    with CaptureQueriesContext(connection) as captured:
        enqueue("noop", task_id="taken")
    assert any(
        query["sql"].startswith("INSERT INTO django_atw_taskrecord") for query in captured.captured_queries
    )
    with pytest.raises(DuplicateTaskIdError, match="taken"):
        enqueue("noop", task_id="taken")
    assert store.count_pending() == 1
