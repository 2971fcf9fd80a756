"""store.stats: the dashboard's and the metrics' aggregate reads, on rows written directly."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.utils import timezone

from django_atw.models import TaskRecord, WorkerProcess
from django_atw.store import stats

pytestmark = pytest.mark.django_db


def add(task_type="echo", queue="default", status="completed", *, ran=1.0, ago=5.0, **fields):
    now = timezone.now()
    completed = now - timedelta(seconds=ago) if status in {"completed", "failed", "cancelled"} else None
    started = None
    if status in {"completed", "failed"}:
        started = completed - timedelta(seconds=ran)
    elif status == "running":
        started = now - timedelta(seconds=ran)
    return TaskRecord.objects.create(
        task_type=task_type,
        queue=queue,
        status=status,
        created_at=now - timedelta(seconds=ago + ran + 1),
        started_at=started,
        completed_at=completed,
        **fields,
    )


def worker(worker_id, *, heartbeat_ago=1.0, stopped=False, running=0):
    now = timezone.now()
    return WorkerProcess.objects.create(
        id=worker_id,
        hostname="host",
        pid=1,
        queues=["default"],
        concurrency=4,
        tasks_running=running,
        started_at=now - timedelta(minutes=5),
        last_heartbeat=now - timedelta(seconds=heartbeat_ago),
        stopped_at=now if stopped else None,
    )


def test_throughput__counts_completed_and_failed_per_second_inside_the_window():
    for _ in range(3):
        add(ago=5)
    add(status="failed", ago=5)
    add(status="cancelled", ago=5)  # not throughput
    add(ago=7200)  # outside the hour
    buckets = stats.throughput(timezone.now() - timedelta(hours=1))
    assert sum(done for _, done, _ in buckets) == 3
    assert sum(failed for _, _, failed in buckets) == 1
    assert all(isinstance(second, int) for second, _, _ in buckets)


def test_unfinished_depths__per_queue_ready_delayed_and_running():
    add(status="pending", queue="a")
    add(status="pending", queue="a", run_after=timezone.now() + timedelta(hours=1))
    add(status="running", queue="b")
    add(status="completed", queue="c")
    assert stats.unfinished_depths(timezone.now()) == {
        "a": {"ready": 1, "delayed": 1, "running": 0},
        "b": {"ready": 0, "delayed": 0, "running": 1},
    }


def test_recent_outcomes__percentiles_and_failure_rate_per_type():
    for seconds in (1, 2, 3, 4, 10):
        add("slow", ran=seconds)
    add("slow", status="failed", ran=20)
    add("slow", status="cancelled")
    (slow,) = stats.recent_outcomes(timezone.now() - timedelta(hours=1))
    assert (slow["completed"], slow["failed"], slow["cancelled"]) == (5, 1, 1)
    assert slow["failure_rate"] == pytest.approx(1 / 6)
    assert slow["p50"] == pytest.approx(3, abs=0.01)
    assert slow["p95"] == pytest.approx(20, abs=0.01)


def test_recent_outcomes__reads_a_bounded_sample_of_the_newest():
    for ago in range(10):
        add("echo", ago=ago + 1)
    (echo,) = stats.recent_outcomes(timezone.now() - timedelta(hours=1), limit=4)
    assert echo["completed"] == 4


def test_percentile__nearest_rank():
    assert stats.percentile([], 0.5) is None
    assert stats.percentile([1, 2, 3, 4], 0.5) == 2
    assert stats.percentile([1, 2, 3, 4], 0.95) == 4


def test_worker_activity__liveness_and_tasks_in_flight():
    worker("w-live", running=1)
    worker("w-late", heartbeat_ago=120)
    worker("w-gone", stopped=True)
    add(status="running", worker_id="w-live")
    rows = {w["id"]: w for w in stats.worker_activity(timezone.now() - timedelta(seconds=30))}
    assert set(rows) == {"w-live", "w-late"}
    assert (rows["w-live"]["alive"], rows["w-live"]["in_flight"]) == (True, 1)
    assert (rows["w-late"]["alive"], rows["w-late"]["in_flight"]) == (False, 0)


def test_stuck_tasks__past_the_timeout_or_on_a_worker_that_missed_its_lease():
    worker("w-live")
    worker("w-late", heartbeat_ago=120)
    fine = add(status="running", worker_id="w-live", ran=5, timeout=60)
    overdue = add(status="running", worker_id="w-live", ran=90, timeout=60)
    orphan = add(status="running", worker_id="w-late", ran=5)
    vanished = add(status="running", worker_id="w-missing", ran=5)
    now = timezone.now()
    stuck = {row["id"]: row["reason"] for row in stats.stuck_tasks(now, now - timedelta(seconds=30))}
    assert fine.id not in stuck
    assert stuck[overdue.id] == "past its timeout"
    assert stuck[orphan.id] == stuck[vanished.id] == "worker missed its lease"


def test_outcome_totals__every_stored_task_by_status_type_and_queue():
    add("echo", status="completed")
    add("echo", status="completed")
    add("fail", status="failed", queue="other")
    add("echo", status="pending")
    assert sorted(stats.outcome_totals()) == [
        ("completed", "echo", "default", 2),
        ("failed", "fail", "other", 1),
        ("pending", "echo", "default", 1),
    ]


def test_a_dashboard_refresh_costs_a_fixed_number_of_queries(django_assert_max_num_queries):
    from django_atw.realtime.dashboard import read_snapshot

    for _ in range(20):
        add()
        add(status="running", worker_id="w")
    with django_assert_max_num_queries(8):
        frame = read_snapshot(full=True)
    assert frame["type"] == "stats"
    assert sum(done for _, done, _ in frame["throughput"]) == 20


def test_a_metrics_scrape_costs_a_fixed_number_of_queries(django_assert_max_num_queries):
    pytest.importorskip("prometheus_client")
    from prometheus_client import generate_latest

    from django_atw.metrics import registry

    for _ in range(20):
        add()
        add(status="running", worker_id="w")
    with django_assert_max_num_queries(8):
        text = generate_latest(registry()).decode()
    assert 'atw_tasks_total{outcome="completed",queue="default",task_type="echo"} 20.0' in text
