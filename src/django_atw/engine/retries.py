"""When a failed run is tried again, and after how long."""

from __future__ import annotations

import random

from .. import registry
from ..exceptions import TaskTimeoutError
from ..status import TaskStatus
from ..values import ClaimedTask, Outcome
from .futures import TIMEOUT_ERROR_TYPE

# The longest wait between retries, however many attempts a task type allows.
MAX_RETRY_DELAY = 3600.0


def retry_delay(backoff: float, attempt: int) -> float:
    """Seconds before the retry after failed ``attempt`` (1-based): exponential, with jitter.

    ``backoff * 2**(attempt-1)``, capped, then drawn from its upper half ("equal jitter"), so
    tasks that failed together do not all come back in the same instant.
    """
    delay = min(MAX_RETRY_DELAY, backoff * 2.0 ** (attempt - 1))
    return delay / 2 + random.uniform(0, delay / 2)


def should_retry(claim: ClaimedTask, outcome: Outcome) -> bool:
    """Return True if a failed run may be tried again: attempts remain and its type retries it.

    A timeout is a ``TaskTimeoutError`` (also matched by ``TimeoutError`` in ``retry_on``).
    """
    if outcome.status is not TaskStatus.FAILED or claim.attempts >= claim.max_attempts:
        return False
    retry_on = registry.options_for(claim.task_type).retry_on
    if not retry_on:
        return False
    if outcome.error_type == TIMEOUT_ERROR_TYPE:
        return issubclass(TaskTimeoutError, retry_on) or issubclass(TimeoutError, retry_on)
    return outcome.exception is not None and isinstance(outcome.exception, retry_on)
