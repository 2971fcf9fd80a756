"""The example project's URLs plus ``POST /test-enqueue/<task type>/`` (JSON body: keyword
arguments) and ``GET /test-relayed/`` (how many changes the process's relay has published)."""

import json

from django.http import HttpRequest, JsonResponse
from django.urls import include, path
from django.views.decorators.csrf import csrf_exempt

import django_atw


@csrf_exempt
def enqueue(request: HttpRequest, task_type: str) -> JsonResponse:
    task_id = django_atw.enqueue(task_type, **json.loads(request.body or b"{}"))
    return JsonResponse({"id": task_id})


def relayed(request: HttpRequest) -> JsonResponse:
    from django_atw.asgi import engine

    relay = engine.relay
    return JsonResponse({"relayed": relay.relayed if relay is not None else None})


urlpatterns = [
    path("test-enqueue/<str:task_type>/", enqueue),
    path("test-relayed/", relayed),
    path("", include("example_project.urls")),
]
