"""The notifier: added tasks NOTIFY other processes after their commit, once per queue per burst."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Sequence

import pytest
from asgiref.sync import sync_to_async
from django.db import OperationalError, connection, transaction

from django_atw import aenqueue, enqueue, enqueue_many, store, wakeup
from django_atw.models import TaskRecord
from django_atw.notifier import NOTIFIER, Notifier

pytestmark = pytest.mark.django_db(transaction=True)
WAIT = 10.0  # seconds before a missing event fails the test (never reached when all is well)


@pytest.mark.skipif(connection.vendor != "postgresql", reason="LISTEN/NOTIFY is PostgreSQL's")
async def test_an_enqueue_wakes_a_postgres_listener_on_another_connection_after_its_commit():
    woken = asyncio.Event()
    listener = wakeup.PostgresListener("probe", ["probe"], woken.set, lambda task_id: None)
    listener.start()
    try:
        async with asyncio.timeout(WAIT):
            await listener.connected.wait()
        for add in (
            lambda: aenqueue("noop", queue="probe"),
            lambda: sync_to_async(enqueue)("noop", queue="probe"),
        ):
            woken.clear()
            await add()
            async with asyncio.timeout(WAIT):
                await woken.wait()
    finally:
        await listener.stop()


def test_enqueue_inside_atomic_notifies_other_processes_only_once_committed(monkeypatch):
    sent: list[tuple[set[str], bool]] = []

    def record(queues: Sequence[str]) -> None:
        sent.append((set(queues), connection.in_atomic_block))

    monkeypatch.setattr(NOTIFIER, "send", record)  # PostgreSQL
    monkeypatch.setattr(wakeup, "broadcast", record)  # other databases: the channel layer
    with pytest.raises(ZeroDivisionError), transaction.atomic():
        enqueue("noop")
        enqueue_many("noop", [(), ()], queue="other")
        1 / 0  # noqa: B018
    assert sent == []
    assert TaskRecord.objects.count() == 0
    with transaction.atomic():
        enqueue("noop")
        assert sent == []
    assert sent == [({"default"}, False)]


def test_the_notifier_sends_each_queue_once_per_burst(monkeypatch):
    sent: list[list[str]] = []
    entered, release = threading.Event(), threading.Event()

    def announce(queues: Sequence[str]) -> None:
        sent.append(list(queues))
        if len(sent) == 1:
            entered.set()
            assert release.wait(WAIT)

    monkeypatch.setattr(store, "announce_added", announce)
    notifier = Notifier()
    notifier.send(["a"])
    assert entered.wait(WAIT)  # the first NOTIFY is in flight: what follows waits for it
    for queues in (["b"], ["a"], ["b", "a"]):
        notifier.send(queues)
    release.set()
    assert notifier.flush(WAIT)
    assert sent == [["a"], ["a", "b"]]
    notifier.close()


def test_a_notify_follows_the_last_one_only_after_the_gap_or_a_close(monkeypatch):
    """A stream of adds sent a NOTIFY per commit: each a statement here and a wake-up and a
    claim in every listening worker (W1e: 4,700 enqueues/s from 8 threads, 5,800 with the gap)."""
    sent: list[list[str]] = []
    monkeypatch.setattr(store, "announce_added", lambda queues: sent.append(list(queues)))
    notifier = Notifier(gap=3600)
    notifier.send(["a"])
    assert notifier.flush(WAIT)  # the first after a quiet moment goes at once
    notifier.send(["b"])
    notifier.send(["c"])
    assert not notifier.flush(0.2)  # held for the rest of the gap, gathering the burst...
    assert sent == [["a"]]
    notifier.close()  # ...but what a close finds pending is sent
    assert sent == [["a"], ["b", "c"]]


def test_a_send_during_the_gap_does_not_wake_the_thread(monkeypatch):
    """Waking the thread at every add during its gap cost a thread switch per add: one enqueue
    at a time on PostgreSQL took 411-432 us of CPU instead of 356-369 (bench.py, W1a)."""
    sent: list[list[str]] = []
    monkeypatch.setattr(store, "announce_added", lambda queues: sent.append(list(queues)))
    notifier = Notifier(gap=3600)
    notifier.send(["a"])
    assert notifier.flush(WAIT)
    notifier.send(["b"])  # wakes the idle thread, which then waits out its gap
    assert not notifier.flush(0.2)
    wakes = []
    original = notifier._changed.notify_all
    monkeypatch.setattr(notifier._changed, "notify_all", lambda: (wakes.append(1), original()))
    for queue in ("c", "b", "d"):
        notifier.send([queue])
    assert wakes == []
    notifier.close()
    assert sent == [["a"], ["b", "c", "d"]]


def test_a_failing_notify_is_logged_and_the_notifier_goes_on(monkeypatch, caplog):
    sent: list[list[str]] = []
    failing = [True]

    def announce(queues: Sequence[str]) -> None:
        if failing[0]:
            raise OperationalError("server closed the connection unexpectedly")
        sent.append(list(queues))

    monkeypatch.setattr(store, "announce_added", announce)
    notifier = Notifier()
    notifier.send(["a"])
    assert notifier.flush(WAIT)
    assert "could not NOTIFY added tasks (OperationalError: server closed" in caplog.text
    failing[0] = False
    notifier.send(["b"])
    assert notifier.flush(WAIT)
    assert sent == [["b"]]  # "a" was dropped: its workers poll
    notifier.close()
