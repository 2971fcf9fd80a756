"""GET metrics: the Prometheus text of ``django_atw.metrics``, for callers who may view every task.

Protected like the rest of the API: a bearer token (``manage.py atw_token create``) or a staff
session, and the user needs ``view_taskrecord``. Without ``prometheus_client`` installed the
endpoint answers 501 saying what to install.
"""

from __future__ import annotations

from asgiref.sync import sync_to_async
from django.http import HttpRequest, HttpResponse

from .auth import VIEW, Caller
from .dispatch import api_view
from .errors import ApiError, ErrorKind

MISSING = (
    "Metrics need the prometheus_client package, which is not installed: "
    "pip install 'django-atw[metrics]' (or pip install 'prometheus_client>=0.20')."
)


def _exposition(accept: str) -> tuple[bytes, str]:
    """Collect the metrics (database reads) and render them in the format ``accept`` asks for."""
    from prometheus_client.exposition import choose_encoder

    from .. import metrics

    encoder, content_type = choose_encoder(accept)
    return encoder(metrics.registry()), content_type


async def read_metrics(request: HttpRequest, caller: Caller) -> HttpResponse:
    """GET metrics: Prometheus text (or OpenMetrics when the scraper asks for it)."""
    if not caller.via_token and not caller.is_staff:
        raise ApiError(403, "permission_denied", "Metrics are for staff users or bearer tokens.")
    await caller.require(VIEW, "read metrics")
    try:
        body, content_type = await sync_to_async(_exposition)(request.headers.get("Accept", ""))
    except ImportError as exc:
        if "prometheus_client" not in str(exc):
            raise
        raise ApiError(501, "unavailable", MISSING, kind=ErrorKind("ImproperlyConfigured")) from exc
    return HttpResponse(body, content_type=content_type)


metrics_view = api_view({"GET": read_metrics})
