"""GET /atw/metrics: Prometheus text from the database, protected like the rest of the API."""

from __future__ import annotations

import builtins
import sys
from typing import Any

import pytest
from asgiref.sync import sync_to_async
from django.test import AsyncClient
from prometheus_client.parser import text_string_to_metric_families

from django_atw import TaskStatus, aenqueue, aget_task_info
from django_atw.models import WorkerProcess
from tests.api.conftest import API, TokenClient
from tests.conftest import wait_until
from tests.sampleapp import tasks

pytestmark = pytest.mark.django_db(transaction=True)

METRICS = API + "metrics"
FINISHED = {TaskStatus.COMPLETED, TaskStatus.FAILED, TaskStatus.CANCELLED}


def samples(text: str) -> dict[str, list[Any]]:
    """Every sample of the exposition, by sample name (parsed by prometheus_client itself)."""
    found: dict[str, list[Any]] = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            found.setdefault(sample.name, []).append(sample)
    return found


def value(found: dict[str, list[Any]], name: str, **labels: str) -> float:
    matching = [s.value for s in found.get(name, []) if all(s.labels.get(k) == v for k, v in labels.items())]
    assert len(matching) == 1, (name, labels, found.get(name))
    return float(matching[0])


async def test_the_metrics_count_outcomes_runtimes_queues_and_workers(operator, worker):
    ids = [await aenqueue(tasks.echo, n) for n in range(3)]
    ids.append(await aenqueue(tasks.fail, "boom"))
    for task_id in ids:
        await wait_until(
            lambda task_id=task_id: aget_task_info(task_id), lambda info: info.status in FINISHED
        )
    await aenqueue(tasks.echo, queue="parked")

    response = await operator.client.get(METRICS)
    assert response.status_code == 200
    assert response["Content-Type"].startswith("text/plain")
    found = samples(response.content.decode())
    assert value(found, "atw_tasks_total", outcome="completed", task_type="echo", queue="default") == 3
    assert value(found, "atw_tasks_total", outcome="failed", task_type="fail", queue="default") == 1
    assert value(found, "atw_queue_depth", queue="parked", state="ready") == 1
    assert value(found, "atw_task_runtime_seconds_bucket", task_type="echo", queue="default", le="+Inf") == 3
    assert value(found, "atw_task_runtime_seconds_gcount", task_type="echo", queue="default") == 3
    assert value(found, "atw_task_runtime_seconds_gsum", task_type="echo", queue="default") >= 0
    assert value(found, "atw_workers", state="alive") == 1
    assert value(found, "atw_worker_slots") == 5
    assert value(found, "atw_stuck_tasks") == 0
    # Buckets are cumulative.
    echo = [s.value for s in found["atw_task_runtime_seconds_bucket"] if s.labels["task_type"] == "echo"]
    assert echo == sorted(echo)


async def test_the_counters_come_from_the_database_not_the_process(operator):
    await aenqueue(tasks.echo)
    found = samples((await operator.client.get(METRICS)).content.decode())
    assert "atw_tasks_total" not in found  # nothing finished yet
    assert value(found, "atw_queue_depth", queue="default", state="ready") == 1
    assert value(found, "atw_workers", state="alive") == 0


async def test_a_worker_that_missed_its_lease_is_counted_apart(operator):
    from datetime import timedelta

    from django.utils import timezone

    long_ago = timezone.now() - timedelta(hours=1)
    await sync_to_async(WorkerProcess.objects.create)(
        id="w-dead", hostname="h", pid=1, concurrency=2, started_at=long_ago, last_heartbeat=long_ago
    )
    found = samples((await operator.client.get(METRICS)).content.decode())
    assert value(found, "atw_workers", state="missed_lease") == 1
    assert value(found, "atw_worker_slots") == 0


async def test_openmetrics_is_served_when_the_scraper_asks_for_it(operator):
    response = await operator.client.get(
        METRICS, headers={"Accept": "application/openmetrics-text; version=1.0.0"}
    )
    assert response.status_code == 200
    assert response["Content-Type"].startswith("application/openmetrics-text")
    assert response.content.decode().endswith("# EOF\n")


async def test_without_credentials_the_answer_is_401():
    response = await AsyncClient().get(METRICS)
    assert response.status_code == 401
    assert response.json()["error"]["code"] == "not_authenticated"


async def test_a_token_without_view_permission_gets_403(make_user, make_token):
    user = await make_user("adder", ["add_taskrecord"])
    response = await TokenClient(await make_token(user)).get(METRICS)
    assert response.status_code == 403
    assert "view_taskrecord" in response.json()["error"]["message"]


async def test_a_session_needs_staff_status(make_user):
    client = AsyncClient()
    await client.aforce_login(await make_user("viewer", ["view_taskrecord"]))
    assert (await client.get(METRICS)).status_code == 403
    staff = AsyncClient()
    await staff.aforce_login(await make_user("staffer", ["view_taskrecord"], staff=True))
    response = await staff.get(METRICS)
    assert response.status_code == 200
    assert "atw_queue_depth" in response.content.decode()


async def test_without_prometheus_client_the_endpoint_says_what_to_install(operator, monkeypatch):
    real_import = builtins.__import__

    def hide_prometheus(name: str, *args: Any, **kwargs: Any) -> Any:
        if name.startswith("prometheus_client"):
            raise ImportError(f"No module named {name!r}")
        return real_import(name, *args, **kwargs)

    monkeypatch.delitem(sys.modules, "django_atw.metrics", raising=False)
    monkeypatch.setattr(builtins, "__import__", hide_prometheus)
    response = await operator.client.get(METRICS)
    assert response.status_code == 501
    assert "pip install 'django-atw[metrics]'" in response.json()["error"]["message"]


def test_importing_the_collector_without_prometheus_client_says_what_to_install(monkeypatch):
    monkeypatch.delitem(sys.modules, "django_atw.metrics", raising=False)
    for name in [name for name in sys.modules if name.startswith("prometheus_client")]:
        monkeypatch.delitem(sys.modules, name)
    monkeypatch.setitem(sys.modules, "prometheus_client", None)
    with pytest.raises(ImportError, match=r"pip install 'django-atw\[metrics\]'"):
        import django_atw.metrics  # noqa: F401
