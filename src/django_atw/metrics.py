"""Prometheus metrics read from the database at scrape time (``pip install 'django-atw[metrics]'``).

``TaskCollector`` is a ``prometheus_client`` custom collector: every scrape reads the task and
worker tables (``store.stats``), so the figures are the same whichever process is scraped and
however many workers run, with no in-process counter to lose at a restart. The HTTP endpoint is
``api.metrics`` (``GET <api>/metrics``). Metrics:

- ``atw_tasks_total{outcome, task_type, queue}`` (counter): stored tasks that completed, failed
  or were cancelled. Deleting finished rows (``TASK_RETENTION_DAYS``, ``atw_purge``) lowers it;
  Prometheus reads a drop as a counter reset.
- ``atw_queue_depth{queue, state}`` (gauge): unfinished tasks, ``state`` is ``ready``,
  ``delayed`` (pending with ``run_after`` ahead) or ``running``.
- ``atw_task_runtime_seconds{task_type, queue}`` (gauge histogram): runtimes of the newest
  ``RUNTIME_SAMPLE`` tasks that ran and finished in the last ``RUNTIME_WINDOW`` seconds. It
  describes a sliding window, so it can go down: use ``histogram_quantile`` on its buckets
  directly, without ``rate()``.
- ``atw_workers{state}`` (gauge): workers not stopped, ``alive`` or ``missed_lease``;
  ``atw_worker_slots`` (gauge): task slots of the live workers; ``atw_worker_tasks_running``
  (gauge): tasks they run; ``atw_stuck_tasks`` (gauge): running tasks past their timeout or on
  a worker that missed its lease.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterator
from datetime import timedelta
from typing import Any

try:
    from prometheus_client.core import (
        CounterMetricFamily,
        GaugeHistogramMetricFamily,
        GaugeMetricFamily,
        Metric,
    )
    from prometheus_client.registry import Collector, CollectorRegistry
except ImportError as exc:  # pragma: no cover - exercised by a test that hides the package
    raise ImportError(
        "django_atw.metrics needs the prometheus_client package: pip install 'django-atw[metrics]' "
        "(or pip install 'prometheus_client>=0.20')."
    ) from exc

from django.utils import timezone

from .conf import get_settings
from .store import stats

# Upper bounds in seconds of the runtime buckets: from quick lookups to hour-long jobs.
RUNTIME_BUCKETS = (0.01, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0, 900.0, 3600.0)
# The runtime histogram's window: long enough to cover a scrape interval many times over.
RUNTIME_WINDOW = 600
RUNTIME_SAMPLE = 5000
OUTCOMES = ("completed", "failed", "cancelled")


class TaskCollector(Collector):
    """Collect django_atw's metrics from the database (synchronous: runs queries)."""

    def describe(self) -> list[Metric]:
        return []  # nothing to read at registration: the metrics come from the database per scrape

    def collect(self) -> Iterator[Metric]:
        now = timezone.now()
        alive_since = now - timedelta(seconds=get_settings().WORKER_LEASE)

        totals = CounterMetricFamily(
            "atw_tasks", "Stored tasks that finished, by outcome.", labels=["outcome", "task_type", "queue"]
        )
        for status, task_type, queue, count in sorted(stats.outcome_totals()):
            if status in OUTCOMES:
                totals.add_metric([status, task_type, queue], count)
        yield totals

        depth = GaugeMetricFamily("atw_queue_depth", "Unfinished tasks per queue.", labels=["queue", "state"])
        for queue, counts in stats.unfinished_depths(now).items():
            for state, count in counts.items():
                depth.add_metric([queue, state], count)
        yield depth

        yield _runtime_histogram(
            stats.recent_runtimes(now - timedelta(seconds=RUNTIME_WINDOW), RUNTIME_SAMPLE)
        )

        workers = stats.worker_activity(alive_since)
        live = [worker for worker in workers if worker["alive"]]
        states = GaugeMetricFamily("atw_workers", "Workers not stopped, by liveness.", labels=["state"])
        states.add_metric(["alive"], len(live))
        states.add_metric(["missed_lease"], len(workers) - len(live))
        yield states
        yield GaugeMetricFamily(
            "atw_worker_slots", "Task slots of the live workers.", value=sum(w["concurrency"] for w in live)
        )
        yield GaugeMetricFamily(
            "atw_worker_tasks_running",
            "Tasks the live workers are running.",
            value=sum(w["in_flight"] for w in live),
        )
        yield GaugeMetricFamily(
            "atw_stuck_tasks",
            "Running tasks past their timeout or on a worker that missed its lease.",
            value=len(stats.stuck_tasks(now, alive_since)),
        )


def _runtime_histogram(runtimes: list[tuple[str, str, float]]) -> Metric:
    family = GaugeHistogramMetricFamily(
        "atw_task_runtime_seconds",
        f"Runtimes of tasks that finished in the last {RUNTIME_WINDOW} s (newest {RUNTIME_SAMPLE}).",
        labels=["task_type", "queue"],
    )
    grouped: dict[tuple[str, str], list[float]] = defaultdict(list)
    for task_type, queue, seconds in runtimes:
        grouped[(task_type, queue)].append(seconds)
    for (task_type, queue), values in sorted(grouped.items()):
        buckets: list[tuple[str, Any]] = [
            (str(bound), sum(1 for value in values if value <= bound)) for bound in RUNTIME_BUCKETS
        ]
        buckets.append(("+Inf", len(values)))
        family.add_metric([task_type, queue], buckets, gsum_value=sum(values))
    return family


def registry() -> CollectorRegistry:
    """A registry holding only ``TaskCollector`` (not the process's default metrics)."""
    collectors = CollectorRegistry(auto_describe=False)
    collectors.register(TaskCollector())
    return collectors
