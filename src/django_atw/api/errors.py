"""API errors: one exception carrying the HTTP status, answered as ``{"error": {...}}``."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from django.http import HttpResponse
from pydantic import BaseModel, ValidationError

from .schemas import Error, ErrorDetail, ErrorResponse


class ApiError(Exception):
    """Raised by a view to answer ``status`` with an error body; never leaves the API."""

    def __init__(
        self,
        status: int,
        code: str,
        message: str,
        *,
        field: str | None = None,
        details: Sequence[ErrorDetail] = (),
        headers: Mapping[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.body = ErrorResponse(error=Error(code=code, message=message, field=field, details=list(details)))
        self.headers = dict(headers or {})

    def response(self) -> HttpResponse:
        response = json_response(self.body, self.status)
        for name, value in self.headers.items():
            response[name] = value
        return response


def json_response(body: BaseModel, status: int = 200) -> HttpResponse:
    """Serialise a pydantic model as the JSON body of a response."""
    return HttpResponse(body.model_dump_json(), status=status, content_type="application/json")


def _path(location: Sequence[int | str], prefix: str) -> str:
    return ".".join([prefix, *(str(part) for part in location)] if prefix else [str(p) for p in location])


def invalid(exc: ValidationError, where: str = "") -> ApiError:
    """Turn a pydantic error into a 422 that names each bad field by its dotted path."""
    details = [
        ErrorDetail(field=_path(err["loc"], where) or None, message=err["msg"]) for err in exc.errors()
    ]
    summary = "; ".join(f"{d.field}: {d.message}" if d.field else d.message for d in details)
    return ApiError(422, "invalid", summary, field=details[0].field if details else None, details=details)
