"""Request and response bodies of the HTTP API, as pydantic models.

The views validate with them and serialise through them, and ``openapi.py`` builds the
OpenAPI document from the same models, so the document cannot drift from what is served.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Literal

from pydantic import (
    AwareDatetime,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    SerializerFunctionWrapHandler,
    StringConstraints,
    model_serializer,
)

from ..status import TaskInfo, TaskStatus
from ..validation import MAX_TASK_ID_LENGTH, TASK_ID_PATTERN

# PostgreSQL text cannot hold NUL characters, so no string that reaches a column may contain one.
_NO_NUL = r"^[^\x00]*$"
TaskId = Annotated[
    str, StringConstraints(min_length=1, max_length=MAX_TASK_ID_LENGTH, pattern=TASK_ID_PATTERN)
]
TaskType = Annotated[str, StringConstraints(min_length=1, max_length=255, pattern=_NO_NUL)]
QueueName = Annotated[str, StringConstraints(min_length=1, max_length=100, pattern=_NO_NUL)]


def _json_number(value: Any) -> Any:
    """Refuse what pydantic's lax mode would turn into a number but JSON Schema calls no number.

    JSON ``true`` is not 1 and ``"5"`` is not 5; ``5.0`` is an integer, as JSON Schema says.
    """
    if isinstance(value, (bool, str)):
        raise ValueError(f"Input should be a number, not {type(value).__name__}")
    return value


# After the constraints in Annotated[...]: placed before them, pydantic would write the
# constraints into the JSON Schema under its own names ("gt") instead of "exclusiveMinimum".
_NUMBER = BeforeValidator(_json_number)
JsonInt = Annotated[int, _NUMBER]


def _iso_text(value: Any) -> Any:
    """Refuse a number as a date-time: lax mode would read it as a Unix timestamp, the schema says string."""
    if value is not None and not isinstance(value, str):
        raise ValueError(f"Input should be an ISO 8601 date-time string, not {type(value).__name__}")
    return value


IsoDatetime = Annotated[AwareDatetime, BeforeValidator(_iso_text)]
# The longest older_than_minutes: 100 years, far inside what a datetime can subtract.
MAX_AGE_MINUTES = 100 * 366 * 24 * 60


class TaskSubmitRequest(BaseModel):
    """POST tasks: what to run and how (the original's TaskSubmitRequest, plus args, queue, run_after)."""

    model_config = ConfigDict(extra="forbid")

    task_type: TaskType
    params: dict[str, Any] = Field(default_factory=dict, description="Keyword arguments of the task.")
    args: list[Any] = Field(default_factory=list, description="Positional arguments of the task.")
    priority: JsonInt = Field(0, ge=-(2**31), le=2**31 - 1, description="Lower runs first.")
    task_id: TaskId | None = Field(
        None,
        description="A custom id: letters, digits and . _ : - (not '.' or '..'); a new UUID when omitted.",
    )
    metadata: dict[str, Any] | None = None
    timeout: Annotated[float, Field(gt=0, le=2**31 - 1, allow_inf_nan=False), _NUMBER] | None = Field(
        None, description="Seconds."
    )
    use_cache: bool | None = Field(None, strict=True)
    cache_ttl: Annotated[int, Field(ge=0, le=2**31 - 1), _NUMBER] | None = Field(
        None, description="Seconds a cached result lives."
    )
    queue: QueueName | None = None
    run_after: IsoDatetime | None = Field(None, description="Not before this time (ISO 8601 with offset).")


class TaskListQuery(BaseModel):
    """GET tasks query parameters; an unknown parameter is an error, so a typo never goes unnoticed."""

    model_config = ConfigDict(extra="forbid")

    status: TaskStatus | None = None
    task_status: TaskStatus | None = Field(
        # Marked deprecated in the document only: pydantic's deprecated= would warn on every read.
        None,
        json_schema_extra={"deprecated": True},
        description="The original router's name for status; status wins.",
    )
    task_type: TaskType | None = None
    queue: QueueName | None = None
    older_than_minutes: int | None = Field(None, ge=0, le=MAX_AGE_MINUTES, description="Created before.")
    created_by: Literal["me"] | None = Field(None, description="'me': only tasks the caller created.")
    limit: int = Field(50, ge=1, le=100)
    cursor: Annotated[str, StringConstraints(max_length=1000)] | None = Field(
        None, description="The 'next' value of the previous page."
    )


class TaskResponse(BaseModel):
    """One task: the original's TaskResponse fields plus task_type, queue and attempts.

    ``metadata`` holds ``task_type`` too, as in the original's answers.
    """

    id: str
    status: TaskStatus
    progress: float
    created_at: datetime
    started_at: datetime | None
    completed_at: datetime | None
    result: Any = None
    error: str | None
    metadata: dict[str, Any] = Field(description="The task's metadata, with task_type set to its type.")
    from_cache: bool
    task_type: str
    queue: str
    attempts: int

    @classmethod
    def from_info(cls, info: TaskInfo) -> TaskResponse:
        return cls(
            id=info.id,
            status=info.status,
            progress=info.progress,
            created_at=info.created_at,
            started_at=info.started_at,
            completed_at=info.completed_at,
            result=info.result,
            error=info.error,
            # The original's router adds the task type to the metadata it stores; here the stored
            # metadata stays the caller's, and every answer adds the type, whoever enqueued the task.
            metadata={**info.metadata, "task_type": info.task_type},
            from_cache=info.from_cache,
            task_type=info.task_type,
            queue=info.queue,
            attempts=info.attempts,
        )


class TaskListResponse(BaseModel):
    """GET tasks: one page, newest first; ``next`` is the cursor of the following page, or null."""

    tasks: list[TaskResponse]
    count: int = Field(description="Tasks on this page.")
    next: str | None = Field(description="Pass as ?cursor= for the next page; null on the last.")


class TaskTypeInfo(BaseModel):
    """One registered task type and the parameters its function takes."""

    name: str
    description: str = Field(description="The first line of the function's docstring.")
    parameters: dict[str, Any] = Field(description="JSON Schema of ``params``, from the signature.")
    accepts_args: bool = Field(description="Whether ``args`` (positional arguments) can be given.")


class TaskTypesResponse(BaseModel):
    """GET types: the original's ``task_types`` names, plus each type's parameter schema."""

    task_types: list[str]
    types: list[TaskTypeInfo]


class HealthResponse(BaseModel):
    """GET health: the original's status, worker_count and queue_size, plus django_atw's details."""

    status: Literal["ok", "stopped"] = Field(description="ok when at least one worker is alive.")
    worker_count: int = Field(
        description="Task slots, as in the original: the max_workers of every live worker, summed."
    )
    worker_processes: int = Field(
        description="Live workers: each atw_worker process and each embedded worker counts one."
    )
    queue_size: int = Field(description="Pending tasks.")
    local_worker: bool = Field(description="Whether a worker runs in the process that answered.")
    queue_depth: dict[str, int] = Field(description="Tasks per unfinished status (pending, running).")
    database: bool = Field(description="Whether the database answered; false gives 503.")


class ErrorDetail(BaseModel):
    """One problem with a request: where it is (a dotted field path) and what is wrong."""

    field: str | None
    message: str


class Error(BaseModel):
    code: str = Field(description="A stable machine-readable code, e.g. invalid, not_found.")
    message: str
    field: str | None = None
    details: list[ErrorDetail] = Field(default_factory=list)
    traceback: Annotated[str | None, Field(description="Only for staff users, on internal errors.")] = None


class ApiErrorDetail(BaseModel):
    """The original router's error detail; the fields it has no value for are left out."""

    message: str
    error_type: str = Field(description="What failed, e.g. TaskError, TaskDefinitionError, NotAuthenticated.")
    category: str | None = Field(None, description="As the original spells it, e.g. ErrorCategory.RESOURCE.")
    task_id: str | None = None
    is_retryable: bool | None = None

    @model_serializer(mode="wrap")
    def _leave_out_unset(self, handler: SerializerFunctionWrapHandler) -> dict[str, Any]:
        # The original dumps its detail with exclude_none=True.
        return {key: value for key, value in handler(self).items() if value is not None}


class ValidationProblem(BaseModel):
    """One schema violation, as FastAPI reports it: ``loc`` starts with "body" or "query"."""

    loc: list[str | int]
    msg: str
    type: str = Field(description="pydantic's error type, e.g. missing, int_parsing, extra_forbidden.")


class ErrorResponse(BaseModel):
    """Every error answer but 422: the original's ``detail`` and django-atw's ``error``."""

    detail: ApiErrorDetail
    error: Error


class ValidationErrorResponse(BaseModel):
    """422: ``detail`` lists every problem as FastAPI does, ``error`` as in every error."""

    detail: list[ValidationProblem]
    error: Error


class HealthErrorResponse(HealthResponse):
    """GET health's 503: the health fields (``database`` false) and the error fields."""

    detail: ApiErrorDetail
    error: Error
