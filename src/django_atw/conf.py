"""The ``ATW`` setting, validated once by a pydantic model and cached.

A typo or a bad value is an error naming the key (``extra="forbid"``), reported by the
system check ``django_atw.E001`` at start-up and raised as ``ConfigurationError`` on use.
The cache is dropped on ``setting_changed``, so ``override_settings(ATW=...)`` works in tests.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any, Literal

from django.conf import settings
from django.core.signals import setting_changed
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator
from pydantic_core import PydanticCustomError

from .exceptions import ConfigurationError


# Result cache: ATW["CACHE"] (docs/cache.md).
class CacheSettings(BaseModel):
    """The result cache's options, under ``ATW["CACHE"]``."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    ENABLED: bool = Field(False, description="Cache task results (add_task(use_cache=False) opts out).")
    BACKEND: Literal["database", "memory", "django"] = Field("database", description="Where entries live.")
    ALIAS: str = Field("atw", min_length=1, description="The CACHES alias of the django backend.")
    DEFAULT_TTL: int | None = Field(3600, ge=0, description="Seconds an entry lives; None or 0: forever.")
    MAX_SIZE: int | None = Field(1000, ge=1, description="Most entries; the least recently read go first.")
    MAX_SERIALIZED_SIZE: int = Field(10 * 1024 * 1024, ge=1, description="Larger values are not cached.")
    VALIDATE_KEYS: bool = Field(False, description="Refuse over-long keys and keys with whitespace.")
    CLEANUP_INTERVAL: float = Field(900, ge=0, description="Seconds between cache cleanups; 0: none.")


class AtwSettings(BaseModel):
    """Every key ``settings.ATW`` may hold, with its default."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    MAX_WORKERS: int = Field(10, ge=1, description="Tasks one worker runs at once.")
    TASK_TIMEOUT: float | None = Field(None, gt=0, description="Default timeout in seconds; None: none.")
    POLL_INTERVAL: float = Field(1.0, gt=0, description="Seconds between polls when nothing wakes a worker.")
    PROGRESS_INTERVAL: float = Field(
        0.1, gt=0, description="Seconds between database writes of one task's progress."
    )
    CLAIM_BATCH_SIZE: int = Field(100, ge=1, le=10_000, description="Most tasks claimed per statement.")
    MAX_QUEUE_SIZE: int | None = Field(None, ge=1, description="Most pending tasks a worker accepts.")
    TASK_RETENTION_DAYS: float | None = Field(
        7, ge=0, description="Finished tasks older than this are deleted; None keeps them."
    )
    CLEANUP_INTERVAL: float = Field(3600, ge=0, description="Seconds between cleanups; 0 disables them.")
    DEFAULT_QUEUE: str = Field("default", min_length=1, max_length=100)
    # Workers on several processes and machines: leases and crash recovery.
    WORKER_LEASE: float = Field(
        30.0, gt=0, description="Seconds without a heartbeat after which a worker's tasks are recovered."
    )
    WORKER_RETENTION: float = Field(
        86400.0,
        gt=0,
        description="Seconds (or a timedelta) a stopped worker's row is kept before live workers prune it.",
    )
    MAX_ARGUMENT_BYTES: int = Field(
        1_048_576,
        ge=1,
        description="Largest size in bytes of a task's args, kwargs and metadata together, as JSON.",
    )
    MAX_RESULT_BYTES: int = Field(
        10_485_760, ge=1, description="Largest task result in bytes, as JSON; a larger one fails the task."
    )
    VACUUM_INTERVAL: float = Field(
        2.0,
        ge=0,
        description="Seconds between a worker's checks of the task table's dead rows, vacuuming it "
        "when claims and completions left many (PostgreSQL); 0 disables.",
    )
    SCHEDULER: bool = Field(
        True, description="Run periodic-task scheduling passes in this process's workers (docs: README)."
    )
    CACHE: CacheSettings = Field(default_factory=lambda: CacheSettings.model_validate({}))
    # HTTP API (django_atw.api)
    API_MAX_BODY: int = Field(
        1_048_576, ge=1, description="Largest request body in bytes the API reads; larger answers 413."
    )
    API_PUBLIC_HEALTH: bool = Field(False, description="Answer GET health without authentication.")
    # Live progress: the worker inside the ASGI server, and the database relay for channel-layer events.
    EMBEDDED_WORKER: bool = Field(True, description="Run a worker inside the ASGI server process.")
    SHUTDOWN_TIMEOUT: float = Field(
        5.0, ge=0, description="Seconds running tasks get at server shutdown before returning to pending."
    )
    RELAY_INTERVAL: float | None = Field(
        0.5, gt=0, description="Seconds between the web process's reads of changes to relay; None: off."
    )

    @field_validator("WORKER_RETENTION", mode="before")
    @classmethod
    def _timedelta_to_seconds(cls, value: Any) -> Any:
        if isinstance(value, timedelta):
            return value.total_seconds()
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise PydanticCustomError(
                "seconds", "Input should be a number of seconds or a datetime.timedelta"
            )
        return value


_cached: AtwSettings | None = None


def _format(exc: ValidationError) -> str:
    lines = []
    for err in exc.errors():
        key = ".".join(str(part) for part in err["loc"])
        lines.append(f'ATW["{key}"]: {err["msg"]} (got {err.get("input")!r}).')
    return " ".join(lines)


def load(raw: Any) -> AtwSettings:
    """Validate a raw ``ATW`` value, raising ``ConfigurationError`` that names each bad key."""
    if raw is None:
        raw = {}
    if not isinstance(raw, dict):
        raise ConfigurationError(f"settings.ATW must be a dict, got {type(raw).__name__}.")
    try:
        return AtwSettings(**raw)
    except ValidationError as exc:
        raise ConfigurationError(_format(exc)) from None


def get_settings() -> AtwSettings:
    """Return the validated ``ATW`` settings (cached until the setting changes)."""
    global _cached
    if _cached is None:
        _cached = load(getattr(settings, "ATW", None))
    return _cached


def _reset(*, setting: str, **kwargs: Any) -> None:
    global _cached
    if setting == "ATW":
        _cached = None


setting_changed.connect(_reset)
