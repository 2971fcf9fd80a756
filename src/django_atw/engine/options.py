"""Check AsyncTaskWorker's constructor arguments, naming the bad one and what it must be."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from ..conf import get_settings


def _positive(name: str, value: Any, *, allow_none: bool = False, allow_zero: bool = False) -> None:
    if value is None and allow_none:
        return
    ok = isinstance(value, (int, float)) and not isinstance(value, bool)
    if ok:
        ok = value >= 0 if allow_zero else value > 0
    if not ok:
        what = "a non-negative number" if allow_zero else "a positive number"
        raise ValueError(f"{name} must be {what}{' or None' if allow_none else ''}, got {value!r}.")


def check_options(
    *,
    max_workers: Any,
    task_timeout: Any,
    worker_poll_interval: Any,
    cache_ttl: Any,
    max_queue_size: Any,
    task_retention_days: Any,
    cleanup_interval: Any,
    progress_interval: Any,
    worker_lease: Any,
    claim_batch_size: Any,
    queues: Sequence[str],
) -> None:
    """Raise ``ValueError`` for the first argument that is out of range or of the wrong type."""
    if isinstance(max_workers, bool) or not isinstance(max_workers, int) or max_workers < 1:
        raise ValueError(f"max_workers must be a positive int, got {max_workers!r}.")
    _positive("task_timeout", task_timeout, allow_none=True)
    _positive("worker_poll_interval", worker_poll_interval)
    _positive("cache_ttl", cache_ttl, allow_none=True, allow_zero=True)
    _positive("max_queue_size", max_queue_size, allow_none=True)
    _positive("task_retention_days", task_retention_days, allow_none=True, allow_zero=True)
    _positive("cleanup_interval", cleanup_interval, allow_zero=True)
    _positive("progress_interval", progress_interval)
    _positive("worker_lease", worker_lease)
    if isinstance(claim_batch_size, bool) or not isinstance(claim_batch_size, int) or claim_batch_size < 1:
        raise ValueError(f"claim_batch_size must be a positive int, got {claim_batch_size!r}.")
    if isinstance(queues, str) or not queues or not all(isinstance(q, str) and q for q in queues):
        raise ValueError(f"queues must be a non-empty list of queue names, got {queues!r}.")


def options_from_settings() -> dict[str, Any]:
    """``AsyncTaskWorker``'s keyword arguments as ``settings.ATW`` gives them."""
    conf = get_settings()
    return {
        "max_workers": conf.MAX_WORKERS,
        "task_timeout": conf.TASK_TIMEOUT,
        "worker_poll_interval": conf.POLL_INTERVAL,
        "max_queue_size": conf.MAX_QUEUE_SIZE,
        "task_retention_days": conf.TASK_RETENTION_DAYS,
        "cleanup_interval": conf.CLEANUP_INTERVAL,
        "queues": [conf.DEFAULT_QUEUE],
        "progress_interval": conf.PROGRESS_INTERVAL,
        "claim_batch_size": conf.CLAIM_BATCH_SIZE,
        "worker_lease": conf.WORKER_LEASE,
        "cache_enabled": conf.CACHE.ENABLED,
        "cache_ttl": conf.CACHE.DEFAULT_TTL,
        "cache_max_size": conf.CACHE.MAX_SIZE,
        "cache_cleanup_interval": conf.CACHE.CLEANUP_INTERVAL,
    }
