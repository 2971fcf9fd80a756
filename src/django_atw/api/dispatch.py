"""The frame every API view runs in: method dispatch, body limit, authentication, error answers."""

from __future__ import annotations

import json
import logging
import traceback
from collections.abc import Awaitable, Callable
from typing import Any

from django.core.exceptions import RequestDataTooBig
from django.db import DatabaseError
from django.http import HttpRequest, HttpResponse
from django.views.decorators.csrf import csrf_exempt

from ..conf import get_settings
from ..jsonvalues import MAX_JSON_DEPTH
from .auth import Caller, authenticate
from .errors import ApiError, ErrorKind, error_body, invalid_value, json_response

logger = logging.getLogger(__name__)

Handler = Callable[..., Awaitable[HttpResponse]]
# Asked on each request: True lets it through unauthenticated (its handler gets caller=None).
PublicWhen = Callable[[], bool]


def _body_limit_error(limit: int) -> ApiError:
    return ApiError(
        413,
        "body_too_large",
        f"The request body is larger than ATW['API_MAX_BODY'] = {limit} bytes.",
    )


def read_body(request: HttpRequest) -> bytes:
    """Return the body, or raise 413 when it exceeds ``ATW["API_MAX_BODY"]``.

    The declared length is checked first, so an oversize body is refused without being parsed.
    """
    limit = get_settings().API_MAX_BODY
    try:
        declared = int(request.META.get("CONTENT_LENGTH") or 0)
    except ValueError:
        declared = 0
    if declared > limit:
        raise _body_limit_error(limit)
    try:
        body = request.body
    except RequestDataTooBig:  # beyond Django's own DATA_UPLOAD_MAX_MEMORY_SIZE
        raise _body_limit_error(limit) from None
    if len(body) > limit:
        raise _body_limit_error(limit)
    return body


def _refuse_constant(name: str) -> Any:
    raise ValueError(f"{name} is not a JSON value")


def require_json(request: HttpRequest) -> None:
    """Raise 415 unless the body is declared ``application/json`` (UTF-8, the JSON default)."""
    charset = (request.content_params or {}).get("charset", "utf-8").lower()
    if (request.content_type or "").lower() != "application/json" or charset not in ("utf-8", "utf8"):
        declared = request.META.get("CONTENT_TYPE") or "none"
        raise ApiError(
            415,
            "unsupported_media_type",
            f"The body must be sent as Content-Type: application/json (UTF-8), not {declared!r}.",
        )


def parse_json_object(body: bytes) -> dict[str, Any]:
    """Decode a JSON object body, or raise 422 saying what is wrong with it."""
    if not body:
        raise invalid_value(("body",), "The body is empty; send a JSON object.", "missing")
    try:
        value = json.loads(body, parse_constant=_refuse_constant)
    except (ValueError, UnicodeDecodeError) as exc:
        raise invalid_value(("body",), f"The body is not valid JSON: {exc}.", "json_invalid") from None
    except RecursionError:  # arrays or objects nested thousands deep: refused long before any use
        raise invalid_value(
            ("body",),
            f"The body is nested too deep to read; at most {MAX_JSON_DEPTH} levels are accepted in a value.",
            "json_invalid",
        ) from None
    if not isinstance(value, dict):
        raise invalid_value(
            ("body",), f"The body must be a JSON object, got {type(value).__name__}.", "model_attributes_type"
        )
    return value


def _internal_error(caller: Caller | None, exc: Exception) -> HttpResponse:
    """Answer 500; only staff users see the exception (as the original shows everyone) and its traceback."""
    if caller is not None and caller.is_staff:
        body = error_body(
            500, "internal", str(exc), kind=ErrorKind(type(exc).__name__), traceback=traceback.format_exc()
        )
    else:
        body = error_body(500, "internal", "Internal server error; the server log has the details.")
    return json_response(body, 500)


def api_view(
    handlers: dict[str, Handler],
    *,
    public: PublicWhen | None = None,
    unavailable: Callable[[], HttpResponse] | None = None,
) -> Any:
    """Build an async view that runs ``handlers[method](request, caller, **url_kwargs)``.

    Order: 405 for an unknown method, 413 for an oversize body, 401/403 from authentication
    (skipped when ``public()`` says so), then the handler. With ``unavailable``, a database
    error (in authentication too: a token is looked up in the database) is answered by it.
    Any other exception is logged and answered 500 without a traceback, except to staff users.
    """
    allowed = ", ".join(sorted(handlers))

    @csrf_exempt  # authenticate() checks CSRF itself, for session requests only
    async def view(request: HttpRequest, **kwargs: Any) -> HttpResponse:
        caller: Caller | None = None
        try:
            handler = handlers.get(request.method or "")
            if handler is None:
                raise ApiError(
                    405,
                    "method_not_allowed",
                    f"{request.method} is not allowed here; use {allowed}.",
                    headers={"Allow": allowed},
                )
            read_body(request)
            if public is None or not public():
                caller = await authenticate(request)
            return await handler(request, caller, **kwargs)
        except ApiError as exc:
            return exc.response()
        except DatabaseError as exc:
            if unavailable is None:
                logger.exception("API request failed: %s %s", request.method, request.path)
                return _internal_error(caller, exc)
            logger.warning("API request found the database unavailable: %s %s", request.method, request.path)
            return unavailable()
        except Exception as exc:
            logger.exception("API request failed: %s %s", request.method, request.path)
            return _internal_error(caller, exc)

    return view
