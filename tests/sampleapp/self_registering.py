"""A module whose import registers a task type under a dotted path that names no async function.

As a django.tasks ``Task`` does: the attribute is an object, and its definition registers a
wrapper function under the object's path (see django_atw.backend).
"""

from __future__ import annotations

from django_atw import register_task


async def _run() -> str:
    return "ran"


class _Definition:
    """Not a function: resolving the path by import alone finds nothing to run."""


runner = _Definition()
register_task(f"{__name__}.runner", _run)
