"""Bearer tokens for the HTTP API: create, check, revoke, list.

A token is 32 random bytes, URL-safe, prefixed ``atw_`` so that secret scanners and people can
recognise it. Only its SHA-256 digest is stored: the token has full entropy, so a fast hash is
enough (a slow password hash guards guessable secrets), and a lookup by digest is one index probe.
"""

from __future__ import annotations

import dataclasses
import hashlib
import secrets
from datetime import datetime, timedelta
from typing import Any

from asgiref.sync import sync_to_async
from django.contrib.auth import get_user_model
from django.utils import timezone

from .models import ApiToken

TOKEN_PREFIX = "atw_"
# Characters of the token kept in clear to tell tokens apart ("atw_" + 8 random characters).
SHOWN_PREFIX_LENGTH = 12
# last_used_at is refreshed at most this often, so a busy script does not write on every request.
LAST_USED_RESOLUTION = timedelta(minutes=1)


@dataclasses.dataclass(frozen=True, slots=True)
class TokenSummary:
    """A stored token as ``atw_token list`` and the admin show it (never the secret)."""

    id: int
    prefix: str
    username: str
    name: str
    created_at: datetime
    last_used_at: datetime | None
    revoked_at: datetime | None


def digest(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def create_token(username: str, name: str = "") -> tuple[str, ApiToken]:
    """Make a token for ``username`` and return it in clear (the only time) with its row.

    Raises ``LookupError`` naming the user when no such user exists.
    """
    user_model = get_user_model()
    try:
        user = user_model._default_manager.get_by_natural_key(username)
    except user_model.DoesNotExist:
        raise LookupError(f"No user with username {username!r}.") from None
    token = TOKEN_PREFIX + secrets.token_urlsafe(32)
    row = ApiToken.objects.create(
        user=user, name=name, prefix=token[:SHOWN_PREFIX_LENGTH], digest=digest(token)
    )
    return token, row


def user_for_token(token: str) -> Any | None:
    """Return the active user a valid, unrevoked token belongs to, or None."""
    row = (
        ApiToken.objects.select_related("user")
        .filter(digest=digest(token), revoked_at__isnull=True)
        .only("id", "last_used_at", "user")
        .first()
    )
    if row is None or not row.user.is_active:
        return None
    now = timezone.now()
    if row.last_used_at is None or now - row.last_used_at >= LAST_USED_RESOLUTION:
        ApiToken.objects.filter(id=row.id).update(last_used_at=now)
    return row.user


def revoke_token(prefix_or_id: str) -> int:
    """Revoke the unrevoked tokens whose id or shown prefix is ``prefix_or_id``; return how many."""
    qs = ApiToken.objects.filter(revoked_at__isnull=True)
    qs = qs.filter(id=int(prefix_or_id)) if prefix_or_id.isdigit() else qs.filter(prefix=prefix_or_id)
    return qs.update(revoked_at=timezone.now())


def list_tokens(username: str | None = None) -> list[TokenSummary]:
    """Return the stored tokens, newest first, optionally of one user."""
    qs = ApiToken.objects.select_related("user").order_by("-created_at", "-id")
    if username is not None:
        qs = qs.filter(user__username=username)
    return [
        TokenSummary(
            id=row.id,
            prefix=row.prefix,
            username=row.user.get_username(),
            name=row.name,
            created_at=row.created_at,
            last_used_at=row.last_used_at,
            revoked_at=row.revoked_at,
        )
        for row in qs
    ]


auser_for_token = sync_to_async(user_for_token)
auser_for_token.__doc__ = "Async version of ``user_for_token``."
