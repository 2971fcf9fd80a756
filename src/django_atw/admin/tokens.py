"""The API token admin: tokens by their shown prefix, revocable, never shown whole."""

from __future__ import annotations

from typing import TYPE_CHECKING

from django.contrib import admin, messages
from django.db.models import QuerySet
from django.http import HttpRequest
from django.utils import timezone

from ..models import ApiToken
from ._format import plural

if TYPE_CHECKING:
    TokenAdminBase = admin.ModelAdmin[ApiToken]
else:
    TokenAdminBase = admin.ModelAdmin


@admin.register(ApiToken)
class ApiTokenAdmin(TokenAdminBase):
    """API tokens by their shown prefix; the digest is never displayed.

    Tokens are made by ``manage.py atw_token create``, which shows the secret once; the admin
    can only revoke them (a revoked token stays listed, so its use can still be traced).
    """

    list_display = ("prefix", "user", "name", "created_at", "last_used_at", "revoked_at")
    list_filter = (("revoked_at", admin.EmptyFieldListFilter),)
    search_fields = ("prefix", "name", "user__username")
    fields = ("prefix", "user", "name", "created_at", "last_used_at", "revoked_at")
    readonly_fields = ("prefix", "user", "created_at", "last_used_at", "revoked_at")
    actions = ["revoke"]

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    @admin.action(description="Revoke selected tokens", permissions=["change"])
    def revoke(self, request: HttpRequest, queryset: QuerySet[ApiToken]) -> None:
        count = queryset.filter(revoked_at__isnull=True).update(revoked_at=timezone.now())
        self.message_user(request, f"Revoked {plural(count, 'token')}.", messages.SUCCESS)
