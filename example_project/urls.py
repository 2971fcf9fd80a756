"""URLs of the example project: the admin and the demo pages."""

from __future__ import annotations

from django.contrib import admin
from django.urls import include, path

urlpatterns = [
    path("admin/", admin.site.urls),
    path("atw/", include("django_atw.api.urls")),
    path("", include("example_project.demo.urls")),
]
