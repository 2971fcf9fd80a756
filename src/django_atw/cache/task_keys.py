"""The result cache when a task is added: its key, and a hit found before it is ever claimed.

The key is computed in the adding process, where the key function and the metadata it reads
are at hand; the worker only reads the stored key. A hit found here inserts the task already
completed (see ``store.add_tasks``), so it is never claimed or run.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Sequence
from typing import Any

from ..models import new_task_id
from ..values import NewTask
from .adapter import AsyncCacheAdapter
from .keys import KeyFunction

logger = logging.getLogger(__name__)


def assign_cache_keys(
    new_tasks: Sequence[NewTask],
    adapter: AsyncCacheAdapter,
    *,
    enabled: bool,
    cache_key_fn: KeyFunction | None = None,
) -> None:
    """Store the cache key on each task that will use the cache, in the adding process.

    The cache applies when it is enabled globally (``enabled``, which wins over a per-task
    ``use_cache=True``) and on the adapter (``temporarily_disabled`` turns it off), and the task
    did not opt out with ``use_cache=False``. Computing the key here means the key function and
    the metadata it reads never have to reach the worker: the worker reads the stored key.
    A task without an id gets one now, so a key function can read its ``entry_id``.
    """
    if not enabled or not adapter.enabled:
        return
    for new in new_tasks:
        if new.use_cache is False:
            continue
        if new.id is None:
            new.id = new_task_id()
        entry_id = adapter.generate_entry_id(new.task_type, new.id)
        new.cache_key = adapter.make_key(
            new.task_type, new.args, new.kwargs, cache_key_fn, entry_id, new.metadata
        )


def cached_result_json(value: Any) -> str | None:
    """A cached value as the JSON text a task's result is stored as; None if it is not JSON.

    Both ways a task completes from the cache (when it is added, when it runs) decide with
    this: a value the result column cannot hold is a miss, and the task runs.
    """
    try:
        return json.dumps(value, allow_nan=False)
    except (TypeError, ValueError):
        return None


def complete_from_cache(new: NewTask, result_json: str) -> None:
    """Mark a task being added as completed from the cache: inserted completed, never run.

    The one place an add-time hit is decided, for whatever must follow one (futures, events).
    """
    new.cached_result_json = result_json
    new.claimed_by = None


def _lookups(new_tasks: Sequence[NewTask], adapter: AsyncCacheAdapter) -> list[tuple[str, str | None]]:
    """The ``(key, entry_id)`` pairs to look up when adding: tasks with a key that are due now.

    A task deferred by ``run_after`` is looked up when it runs: the entry may change meanwhile.
    """
    return [
        (new.cache_key, adapter.generate_entry_id(new.task_type, new.id))
        for new in new_tasks
        if new.cache_key and new.run_after is None and new.cached_result_json is None
    ]


def _apply_hits(new_tasks: Sequence[NewTask], values: dict[str, Any]) -> list[NewTask]:
    hits = []
    for new in new_tasks:
        if new.cache_key in values and new.run_after is None:
            result_json = cached_result_json(values[new.cache_key])
            if result_json is not None:
                complete_from_cache(new, result_json)
                hits.append(new)
    return hits


def complete_hits(new_tasks: Sequence[NewTask], adapter: AsyncCacheAdapter) -> None:
    """Look up, with one backend read, the keys ``assign_cache_keys`` gave; mark the hits completed.

    Synchronous (the add path runs on a thread). A cache that fails is logged and every task
    runs: each is looked up again when it is claimed.
    """
    lookups = _lookups(new_tasks, adapter)
    if not lookups:
        return
    try:
        values = adapter.read_entries(lookups)
    except Exception:
        logger.exception("cache lookup failed while adding %d tasks; they run", len(lookups))
    else:
        _apply_hits(new_tasks, values)
