"""Tasks for the cache tests; each call is counted, so a test can tell a hit from a run."""

from __future__ import annotations

import asyncio
from collections import Counter
from typing import Any

from django_atw import task

calls: Counter[str] = Counter()
gates: dict[str, asyncio.Event] = {}
started: dict[str, asyncio.Event] = {}


def gate(name: str) -> asyncio.Event:
    return gates.setdefault(name, asyncio.Event())


def started_event(name: str) -> asyncio.Event:
    return started.setdefault(name, asyncio.Event())


@task("cache_square")
async def square(x: int) -> int:
    calls["cache_square"] += 1
    return x * x


@task("cache_double")
async def double(x: int) -> int:
    calls["cache_double"] += 1
    return x * 2


@task("cache_describe")
async def describe(a: int = 0, b: int = 0, progress_callback: Any = None) -> dict[str, Any]:
    calls["cache_describe"] += 1
    return {"a": a, "b": b, "items": [a, b]}


@task("get_user_data")
async def get_user_data(user_id: int, region: str = "global") -> dict[str, Any]:
    calls["get_user_data"] += 1
    return {"user_id": user_id, "region": region, "call": calls["get_user_data"]}


@task("tenant_process_data")
async def process_data(dataset: str) -> str:
    calls["tenant_process_data"] += 1
    return f"{dataset}:{calls['tenant_process_data']}"


@task("get_regional_data")
async def get_regional_data(user_id: int, region: str) -> str:
    calls["get_regional_data"] += 1
    return f"{user_id}@{region}"


@task("cache_big")
async def big(size: int) -> str:
    calls["cache_big"] += 1
    return "x" * size


@task("cache_gated")
async def gated(name: str, fail: bool = False) -> str:
    """Count the run, signal ``started[name]``, wait for ``gate(name)``; fail if asked."""
    calls["cache_gated"] += 1
    started_event(name).set()
    await gate(name).wait()
    if fail:
        raise RuntimeError(f"{name} failed")
    return f"{name} done"
