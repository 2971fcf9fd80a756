"""The housekeeper's duties that no other test drives directly: retention in chunks."""

from __future__ import annotations

import asyncio
from datetime import timedelta
from typing import Any

import pytest
from django.utils import timezone

from django_atw import TaskStatus, aenqueue_many
from django_atw.engine.housekeeping import delete_finished_in_chunks
from django_atw.models import TaskRecord
from django_atw.store.thread import DatabaseThread

pytestmark = pytest.mark.django_db(transaction=True)


async def test_retention_cleanup_lets_a_query_queued_meanwhile_through_after_one_chunk():
    ids = await aenqueue_many("noop", [()] * 5)
    old = timezone.now() - timedelta(days=1)
    await TaskRecord.objects.filter(id__in=ids).aupdate(status=TaskStatus.COMPLETED.value, completed_at=old)
    db = DatabaseThread("atw-test-cleanup")
    order: list[str] = []
    claim: asyncio.Future[None] | None = None

    async def run(func: Any, *args: Any, **kwargs: Any) -> Any:
        nonlocal claim
        chunk = asyncio.ensure_future(db.run(lambda: (order.append("chunk"), func(*args, **kwargs))[1]))
        if claim is None:  # a claim for the same thread, queued while the first chunk runs
            claim = asyncio.ensure_future(db.run(order.append, "claim"))
        return await chunk

    try:
        deleted = await delete_finished_in_chunks(run, timezone.now(), batch_size=2)
        await claim
    finally:
        await db.close()

    assert deleted == 5 and not await TaskRecord.objects.aexists()
    assert order == ["chunk", "claim", "chunk", "chunk"]
