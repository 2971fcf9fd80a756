"""The statements run over and over (adds, outcome writes) go through ``hot_cursor``, which
bypasses parts of Django's cursor (PostgreSQL: server-side binding; SQLite: placeholders
converted once per text) and must still behave as Django's cursor does."""

from __future__ import annotations

import pytest
from django.db import connection
from django.db.backends.sqlite3.base import SQLiteCursorWrapper
from django.test.utils import CaptureQueriesContext

from django_atw import TaskStatus, enqueue, store
from django_atw.exceptions import DuplicateTaskIdError
from django_atw.store import Outcome

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.mark.skipif(connection.vendor != "sqlite", reason="PostgreSQL binds on the server instead")
def test_adds_and_writes_do_not_convert_their_placeholders_at_every_run(monkeypatch):
    """Django's cursor converts ``%s`` to ``?`` with a regular expression over the whole text at
    every execute: 22 us of a one-row add's INSERT, 32 us of a worker's claiming one."""
    converted: list[str] = []
    convert = SQLiteCursorWrapper.convert_query

    def counting(self, query, *, param_names=None):
        converted.append(query)
        return convert(self, query, param_names=param_names)

    monkeypatch.setattr(SQLiteCursorWrapper, "convert_query", counting)
    store.register_worker("w", "host", 1, ["default"], 4)
    enqueue("noop")
    enqueue("noop")
    (claim,) = store.claim_batch("w", ["default"], 1)
    outcome = Outcome(claim.id, TaskStatus.COMPLETED, 1.0, result_json="1", attempt=claim.attempts)
    assert store.write_batch("w", [], [outcome]).outcomes == [outcome]
    assert converted  # the test sees conversions: the claim's, the worker's registration
    assert not [query for query in converted if query.startswith("INSERT INTO django_atw_taskrecord")]
    assert not [query for query in converted if query.startswith("UPDATE django_atw_taskrecord AS t")]


def test_hot_statements_are_logged_and_raise_django_errors(settings):
    settings.DEBUG = True
    with CaptureQueriesContext(connection) as captured:
        enqueue("noop", task_id="taken")
    assert any(
        query["sql"].startswith("INSERT INTO django_atw_taskrecord") for query in captured.captured_queries
    )
    with pytest.raises(DuplicateTaskIdError, match="taken"):
        enqueue("noop", task_id="taken")
    assert store.count_pending() == 1
