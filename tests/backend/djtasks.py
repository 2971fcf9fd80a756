"""Sample django.tasks tasks for the backend tests (Django 6 only: imported after the skip)."""

from __future__ import annotations

import asyncio
import threading
from typing import Any

import django
from django.tasks import TaskContext, task

from django_atw.backend import AtwTask

runs: list[str] = []
contexts: list[dict[str, Any]] = []
# Two sync tasks meet here: they pass only if they run at the same time, on two threads.
barrier = threading.Barrier(2, timeout=10)


@task
def add(a: int, b: int) -> int:
    return a + b


@task
async def async_add(a: int, b: int) -> int:
    await asyncio.sleep(0)
    return a + b


@task
def echo(*args: Any, **kwargs: Any) -> dict[str, Any]:
    return {"args": list(args), "kwargs": kwargs}


@task
def thread_name() -> str:
    return threading.current_thread().name


@task
async def async_thread_name() -> str:
    return threading.current_thread().name


@task
def meet() -> str:
    barrier.wait()
    return threading.current_thread().name


@task
def fail(message: str) -> None:
    raise ValueError(message)


@task
def record(label: str) -> str:
    runs.append(label)
    return label


@task(queue_name="other")
def in_other_queue() -> str:
    return "other"


@task(takes_context=True)
def whoami(context: TaskContext) -> dict[str, Any]:
    return {"id": context.task_result.id, "attempt": context.attempt, "status": context.task_result.status}


class Flaky(Exception):
    pass


def flaky(context: TaskContext, failures: int) -> int:
    """Fail the first ``failures`` attempts, then return the attempt number."""
    contexts.append({"attempt": context.attempt, "errors": len(context.task_result.errors)})
    if context.attempt <= failures:
        raise Flaky(f"attempt {context.attempt}")
    return context.attempt


# Built as @task(max_attempts=3, retry_on=..., retry_backoff=0) builds it on Django 6.1, so that
# Django 6.0 (whose @task takes no extra keywords) runs the same test.
flaky = AtwTask(  # type: ignore[assignment]
    func=flaky,
    priority=0,
    backend="default",
    queue_name="default",
    run_after=None,
    takes_context=True,
    max_attempts=3,
    retry_on=(Flaky,),
    retry_backoff=0.0,
)


if django.VERSION >= (6, 1):

    @task(timeout=5.0, max_attempts=2, use_cache=False)
    def with_options() -> str:
        return "ok"


@task
def report_progress(progress_callback: Any = None) -> str:
    progress_callback(0.5)
    return threading.current_thread().name
