"""Cache backends behind one interface (``base.CacheBackend``), chosen by name."""

from __future__ import annotations

from typing import Literal

from .base import CacheBackend

BackendName = Literal["database", "memory", "django"]
BACKEND_NAMES: tuple[BackendName, ...] = ("database", "memory", "django")


def create_backend(name: str, *, max_size: int | None, alias: str = "atw") -> CacheBackend:
    """Build the backend called ``name`` (``database``, ``memory`` or ``django``)."""
    if name == "database":
        from .database import DatabaseBackend

        return DatabaseBackend(max_size=max_size)
    if name == "memory":
        from .memory import MemoryBackend

        return MemoryBackend(max_size=max_size)
    if name == "django":
        from .django_cache import DjangoCacheBackend

        return DjangoCacheBackend(alias=alias, max_size=max_size)
    raise ValueError(f"backend must be one of {', '.join(BACKEND_NAMES)} or a backend object, got {name!r}.")


__all__ = ["BACKEND_NAMES", "BackendName", "CacheBackend", "create_backend"]
