"""Fixtures for the HTTP API tests: users with chosen permissions, tokens, an async client."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from typing import Any

import pytest
from asgiref.sync import sync_to_async
from django.contrib.auth.models import Permission
from django.test import AsyncClient

from django_atw.tokens import create_token

API = "/atw/"
ALL_PERMS = ("view_taskrecord", "add_taskrecord", "change_taskrecord")


def _make_user(username: str, perms: Sequence[str], staff: bool, active: bool) -> Any:
    from django.contrib.auth import get_user_model

    user = get_user_model().objects.create_user(username=username, is_staff=staff, is_active=active)
    user.user_permissions.set(
        Permission.objects.filter(content_type__app_label="django_atw", codename__in=perms)
    )
    return user


@pytest.fixture
def make_user() -> Callable[..., Awaitable[Any]]:
    """Create a user holding the named django_atw permissions (codenames)."""

    async def factory(
        username: str, perms: Sequence[str] = (), *, staff: bool = False, active: bool = True
    ) -> Any:
        return await sync_to_async(_make_user)(username, perms, staff, active)

    return factory


@pytest.fixture
def make_token() -> Callable[[Any], Awaitable[str]]:
    async def factory(user: Any) -> str:
        token, _row = await sync_to_async(create_token)(user.get_username())
        return token

    return factory


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


class TokenClient(AsyncClient):
    """An async test client that sends a bearer token with every request.

    (AsyncClient(headers=...) turns its default headers into WSGI names, which an ASGI request
    does not read; per-request headers work, so they are added here.)
    """

    def __init__(self, token: str, **defaults: Any) -> None:
        super().__init__(**defaults)
        self.token_headers = bearer(token)

    def generic(self, *args: Any, headers: dict[str, str] | None = None, **kwargs: Any) -> Any:
        return super().generic(*args, headers={**self.token_headers, **(headers or {})}, **kwargs)


@pytest.fixture
async def operator(
    make_user: Callable[..., Awaitable[Any]], make_token: Callable[..., Awaitable[str]]
) -> Any:
    """A user with every task permission, and a client that sends their bearer token."""
    user = await make_user("operator", ALL_PERMS)
    user.client = TokenClient(await make_token(user))
    return user
