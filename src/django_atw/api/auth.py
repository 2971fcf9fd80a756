"""Who is calling, and what they may do: sessions with CSRF, bearer tokens, model permissions.

A request with an ``Authorization`` header is judged by its token alone (scripts send no
cookies, so there is nothing to forge and no CSRF check). Any other request uses the Django
session, and unsafe methods must carry a CSRF token, as a form post would.
"""

from __future__ import annotations

import dataclasses
from typing import Any

from asgiref.sync import sync_to_async
from django.http import HttpRequest, HttpResponse
from django.middleware.csrf import CsrfViewMiddleware

from ..tokens import auser_for_token
from .errors import ApiError

VIEW = "django_atw.view_taskrecord"
ADD = "django_atw.add_taskrecord"
CHANGE = "django_atw.change_taskrecord"
SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS", "TRACE"})
CHALLENGE = {"WWW-Authenticate": 'Bearer realm="django-atw"'}


@dataclasses.dataclass(frozen=True, slots=True)
class Caller:
    """The authenticated user of a request, and how they proved it."""

    user: Any
    via_token: bool

    async def may(self, permission: str) -> bool:
        return bool(await self.user.ahas_perm(permission))

    async def require(self, permission: str, action: str) -> None:
        """Raise 403 naming the missing permission unless the user has it."""
        if not await self.may(permission):
            raise ApiError(403, "permission_denied", f"You need the permission {permission!r} to {action}.")

    async def owner_filter(self) -> int | None:
        """None when the user may view every task, else their pk: they see only their own."""
        return None if await self.may(VIEW) else self.user.pk

    @property
    def is_staff(self) -> bool:
        return bool(getattr(self.user, "is_staff", False))


class _CsrfCheck(CsrfViewMiddleware):
    """Django's CSRF check, answering the reason for a rejection instead of a 403 page."""

    def _reject(self, request: HttpRequest, reason: str) -> Any:
        return reason


def _csrf_rejection(request: HttpRequest) -> str | None:
    check = _CsrfCheck(lambda request: HttpResponse())
    check.process_request(request)  # reads the CSRF cookie (or session) into request.META
    reason = check.process_view(request, lambda request: HttpResponse(), (), {})
    return reason if isinstance(reason, str) else None


async def authenticate(request: HttpRequest) -> Caller:
    """Return the caller, or raise 401 (no or bad credentials) or 403 (CSRF failure)."""
    header = request.headers.get("Authorization")
    if header is not None:
        scheme, _, credentials = header.partition(" ")
        if scheme.lower() != "bearer" or not credentials.strip():
            raise ApiError(
                401,
                "invalid_token",
                "The Authorization header must read 'Bearer <token>'.",
                headers=CHALLENGE,
            )
        user = await auser_for_token(credentials.strip())
        if user is None:
            raise ApiError(
                401,
                "invalid_token",
                "The bearer token is unknown or revoked, or its user is inactive. "
                "Create a new one with 'manage.py atw_token create <username>'.",
                headers=CHALLENGE,
            )
        return Caller(user, via_token=True)
    auser = getattr(request, "auser", None)
    user = await auser() if auser is not None else None
    if user is None or not user.is_authenticated:
        raise ApiError(
            401,
            "not_authenticated",
            "Authentication required: log in, or send 'Authorization: Bearer <token>'.",
            headers=CHALLENGE,
        )
    if request.method not in SAFE_METHODS:
        # Thread: with CSRF_USE_SESSIONS the check reads the session from the database.
        reason = await sync_to_async(_csrf_rejection)(request)
        if reason is not None:
            raise ApiError(
                403,
                "csrf_failed",
                f"CSRF check failed: {reason} Send the csrftoken cookie's value in the X-CSRFToken "
                "header, or authenticate with a bearer token.",
            )
    return Caller(user, via_token=False)
