"""The cache admin: entries of the database cache backend, with invalidate and purge actions."""

from __future__ import annotations

from typing import TYPE_CHECKING

from django.contrib import admin
from django.db.models import QuerySet
from django.http import HttpRequest

from ..cache.backends import base as cache_clock
from ..cache.backends import database as cache_db
from ..models import CacheEntry

if TYPE_CHECKING:
    CacheEntryAdminBase = admin.ModelAdmin[CacheEntry]
else:
    CacheEntryAdminBase = admin.ModelAdmin


@admin.register(CacheEntry)
class CacheEntryAdmin(CacheEntryAdminBase):
    """Cached results of the database backend: read-only, with invalidate and purge actions."""

    list_display = ("key", "task_type", "size", "created_at", "expires_at", "is_expired", "hits")
    search_fields = ("key", "task_id")
    list_filter = ("task_type",)
    ordering = ("-last_accessed",)
    fields = (
        "key", "task_type", "task_id", "size", "created_at", "expires_at", "is_expired",
        "last_accessed", "hits",
    )  # fmt: skip
    readonly_fields = fields
    actions = ("invalidate_entries", "purge_expired")

    def get_queryset(self, request: HttpRequest) -> QuerySet[CacheEntry]:
        return super().get_queryset(request).defer("value")

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: CacheEntry | None = None) -> bool:
        return False

    @admin.display(boolean=True, description="expired")
    def is_expired(self, obj: CacheEntry) -> bool:
        return obj.expires_at is not None and obj.expires_at <= cache_clock.now()

    @admin.action(description="Invalidate selected cache entries", permissions=["delete"])
    def invalidate_entries(self, request: HttpRequest, queryset: QuerySet[CacheEntry]) -> None:
        count = cache_db.delete_entries(list(queryset.values_list("key", flat=True)))
        self.message_user(request, f"Invalidated {_entries(count)}.")

    @admin.action(description="Purge all expired cache entries", permissions=["delete"])
    def purge_expired(self, request: HttpRequest, queryset: QuerySet[CacheEntry]) -> None:
        count = cache_db.purge_expired()
        self.message_user(request, f"Purged {_entries(count)} that had expired.")


def _entries(count: int) -> str:
    return f"{count} cache entr{'y' if count == 1 else 'ies'}"
