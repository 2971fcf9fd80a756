"""The HTTP API: the original library's task router as Django URLs (``include("django_atw.api.urls")``)."""
