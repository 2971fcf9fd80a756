"""API errors: one helper builds every error body, in the original router's shape and ours.

The original router (async-task-worker's FastAPI ``api.py``) answers a failure with
``{"detail": {"message", "error_type", "category", "task_id", "is_retryable"}}``, leaving out the
fields it has no value for, and a schema violation with FastAPI's 422,
``{"detail": [{"loc", "msg", "type"}, ...]}``. Clients of the original parse ``detail``; our own
clients read ``error.code``. Every body carries both.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence

from django.http import HttpResponse
from pydantic import BaseModel, ValidationError

from .schemas import (
    ApiErrorDetail,
    Error,
    ErrorDetail,
    ErrorResponse,
    ValidationErrorResponse,
    ValidationProblem,
)


@dataclasses.dataclass(frozen=True, slots=True)
class ErrorKind:
    """What ``detail`` names besides the message: the original's exception class and category."""

    error_type: str
    category: str | None = None
    is_retryable: bool | None = None


# The original formats its category with str(), so ErrorCategory.RESOURCE goes on the wire as
# "ErrorCategory.RESOURCE", not "resource"; a client that matches on it expects that spelling.
_TASK_DEFINITION = ErrorKind("TaskDefinitionError", "ErrorCategory.TASK_DEFINITION", False)
# Each code's detail. The first four are what the original sends for the same failure, and
# duplicate_task_id is how it would describe our TaskDefinitionError subclass. invalid_params is
# the TypeError a call with such params raises (the original answers so a param that repeats an
# add_task option). The rest have no counterpart in the original and take the names Django or
# Django REST framework give their exceptions for the same failure.
KINDS: dict[str, ErrorKind] = {
    "unknown_task_type": _TASK_DEFINITION,
    "invalid_task": _TASK_DEFINITION,
    "not_found": ErrorKind("TaskError", "ErrorCategory.RESOURCE", False),
    "not_cancellable": ErrorKind("TaskCancellationError", "ErrorCategory.CANCELLATION", False),
    "duplicate_task_id": ErrorKind("DuplicateTaskIdError", "ErrorCategory.TASK_DEFINITION", False),
    "invalid_params": ErrorKind("TypeError"),
    "not_authenticated": ErrorKind("NotAuthenticated"),
    "invalid_token": ErrorKind("AuthenticationFailed"),
    "permission_denied": ErrorKind("PermissionDenied"),
    "csrf_failed": ErrorKind("PermissionDenied"),
    "method_not_allowed": ErrorKind("MethodNotAllowed"),
    "body_too_large": ErrorKind("RequestDataTooBig"),
    "unsupported_media_type": ErrorKind("UnsupportedMediaType"),
    "unavailable": ErrorKind("ServiceUnavailable"),
    "internal": ErrorKind("InternalServerError"),
}
# A path under the API that names no endpoint (code not_found, but no task is involved).
NO_ENDPOINT = ErrorKind("NotFound")


@dataclasses.dataclass(frozen=True, slots=True)
class Problem:
    """One schema violation: where (FastAPI's ``loc``: "body" or "query", then the path), what, and
    pydantic's error type."""

    loc: tuple[str | int, ...]
    message: str
    type: str = "value_error"

    @property
    def field(self) -> str:
        """The dotted path inside the body or query (``params.items.2``), or "body" for all of it."""
        return ".".join(str(part) for part in self.loc[1:]) or str(self.loc[0])


def error_body(
    status: int,
    code: str,
    message: str,
    *,
    field: str | None = None,
    task_id: str | None = None,
    problems: Sequence[Problem] = (),
    kind: ErrorKind | None = None,
    traceback: str | None = None,
) -> ErrorResponse | ValidationErrorResponse:
    """Build the body of every error answer: the original's ``detail`` beside our ``error``.

    A 422 lists ``problems`` in ``detail`` as FastAPI does; any other status gets the detail of
    ``kind``, by default the one ``KINDS`` gives ``code``.
    """
    error = Error(
        code=code,
        message=message,
        field=field,
        details=[ErrorDetail(field=p.field, message=p.message) for p in problems],
        traceback=traceback,
    )
    if status == 422:
        detail = [ValidationProblem(loc=list(p.loc), msg=p.message, type=p.type) for p in problems]
        return ValidationErrorResponse(detail=detail, error=error)
    kind = kind or KINDS[code]
    return ErrorResponse(
        detail=ApiErrorDetail(
            message=message,
            error_type=kind.error_type,
            category=kind.category,
            task_id=task_id,
            is_retryable=kind.is_retryable,
        ),
        error=error,
    )


class ApiError(Exception):
    """Raised by a view to answer ``status`` with an error body; never leaves the API."""

    def __init__(
        self,
        status: int,
        code: str,
        message: str,
        *,
        field: str | None = None,
        task_id: str | None = None,
        problems: Sequence[Problem] = (),
        kind: ErrorKind | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.body = error_body(
            status, code, message, field=field, task_id=task_id, problems=problems, kind=kind
        )
        self.headers = dict(headers or {})

    def response(self) -> HttpResponse:
        response = json_response(self.body, self.status)
        for name, value in self.headers.items():
            response[name] = value
        return response


def json_response(body: BaseModel, status: int = 200) -> HttpResponse:
    """Serialise a pydantic model as the JSON body of a response."""
    return HttpResponse(body.model_dump_json(), status=status, content_type="application/json")


def invalid_value(loc: tuple[str | int, ...], message: str, type: str = "value_error") -> ApiError:
    """A 422 for one problem a view found itself; ``loc`` starts with "body" or "query"."""
    problem = Problem(loc, message, type)
    return ApiError(422, "invalid", message, field=problem.field, problems=[problem])


def invalid(exc: ValidationError, where: str) -> ApiError:
    """Turn a pydantic error on the ``where`` ("body" or "query") into a 422 naming each field."""
    problems = [Problem((where, *err["loc"]), err["msg"], err["type"]) for err in exc.errors()]
    summary = "; ".join(f"{p.field}: {p.message}" for p in problems)
    return ApiError(422, "invalid", summary, field=problems[0].field if problems else None, problems=problems)
