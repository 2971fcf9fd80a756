"""Benchmark live progress: event delivery latency and the cost of one progress call.

Usage::

    .venv/bin/python benchmarks/live.py [--quick] [--redis-url redis://127.0.0.1:6379/0]
        [--clients 1,100] [--intervals 0.1,0.01] [--samples 200] [--pace 0.15]
    .venv/bin/python benchmarks/bench.py --live [--quick]     (the same, with its defaults)

What is measured, on a fresh SQLite database, everything in this one process (as in a web
process that runs the embedded worker):

- Callback cost: a task calls its ``progress_callback`` many times in a loop; the task's own
  clock gives nanoseconds per call (the target is under 5 microseconds).
- Delivery latency: a task reports ``--samples`` progress values ``--pace`` seconds apart; N
  clients (channels' WebsocketCommunicator on django_atw's consumer, no network) are
  subscribed to it. Latency is from the progress call in the task to the ``task`` frame at
  each client, p50/p99 over every value and client, for the in-memory layer and Redis (when
  ``--redis-url`` or ``$ATW_BENCH_REDIS`` is given). Progress is coalesced: a value waits for
  the next write of progress, so ``ATW["PROGRESS_INTERVAL"]`` (``--intervals``) bounds what the
  latency can be; the figures show it plus the write, the publication and the delivery.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

PROGRESS_TASK = "bench.live.paced_progress"
CALLBACK_TASK = "bench.live.callback_cost"
# When each progress value was reported (perf_counter), filled by the paced task.
stamps: dict[float, float] = {}


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="small sizes, for a smoke run")
    parser.add_argument(
        "--redis-url",
        default=os.environ.get("ATW_BENCH_REDIS", ""),
        help="Redis for the channels_redis layer (default $ATW_BENCH_REDIS; empty: in-memory only)",
    )
    parser.add_argument("--clients", default="1,100", help="comma-separated client counts (default 1,100)")
    parser.add_argument("--intervals", default="0.1,0.01", help="PROGRESS_INTERVAL values, comma-separated")
    parser.add_argument("--samples", type=int, default=200, help="progress values per configuration")
    parser.add_argument("--pace", type=float, default=0.15, help="seconds between progress values")
    parser.add_argument("--calls", type=int, default=1_000_000, help="progress calls for the callback cost")
    args = parser.parse_args(argv)
    args.clients = [int(n) for n in args.clients.split(",") if n.strip()]
    args.intervals = [float(n) for n in args.intervals.split(",") if n.strip()]
    if args.quick:
        args.clients = [min(n, 10) for n in args.clients]
        args.samples, args.pace, args.calls = 10, 0.12, 20_000
    return args


def setup(path: str) -> None:
    os.environ.update({"ATW_BENCH_DB": "sqlite", "ATW_BENCH_SQLITE_PATH": path})
    os.environ["DJANGO_SETTINGS_MODULE"] = "benchmarks.settings"
    import django
    from django.conf import settings
    from django.core.management import call_command

    django.setup()
    call_command("migrate", verbosity=0)
    settings.ALLOWED_HOSTS = ["*"]
    register_tasks()


def register_tasks() -> None:
    from django_atw import task

    @task(PROGRESS_TASK)
    async def paced_progress(samples: int, pace: float, progress_callback: Any = None) -> int:
        for step in range(1, samples + 1):
            value = step / (samples + 1)  # never 0 or 1: those belong to the start and the end
            stamps[value] = time.perf_counter()
            progress_callback(value)
            await asyncio.sleep(pace)
        return samples

    @task(CALLBACK_TASK)
    async def callback_cost(calls: int, progress_callback: Any = None) -> float:
        started = time.perf_counter_ns()
        for step in range(calls):
            progress_callback(step / calls)
        return (time.perf_counter_ns() - started) / calls


def layers(redis_url: str) -> dict[str, dict[str, Any]]:
    found = {"in-memory": {"BACKEND": "channels.layers.InMemoryChannelLayer", "CONFIG": {"capacity": 1000}}}
    if redis_url:
        found["Redis"] = {
            "BACKEND": "channels_redis.core.RedisChannelLayer",
            "CONFIG": {"hosts": [{"address": redis_url, "socket_timeout": 30}], "capacity": 1000},
        }
    return found


async def measure_callback(calls: int) -> float:
    from django_atw import AsyncTaskWorker, aenqueue

    async with AsyncTaskWorker.from_settings() as worker:
        task_id = await aenqueue(CALLBACK_TASK, calls)
        (ns_per_call,) = await worker.wait_for_tasks([task_id], timeout=600)
    return float(ns_per_call)


async def measure_latency(clients: int, samples: int, pace: float, interval: float) -> dict[str, float]:
    from asgiref.sync import sync_to_async
    from channels.routing import URLRouter
    from channels.testing import WebsocketCommunicator
    from django.contrib.auth.models import User

    from django_atw import AsyncTaskWorker, aenqueue
    from django_atw.realtime.routing import websocket_urlpatterns

    user = await sync_to_async(lambda: User.objects.get_or_create(username="bench", is_superuser=True)[0])()
    task_id = await aenqueue(PROGRESS_TASK, samples, pace)
    app = URLRouter(websocket_urlpatterns)
    comms = []
    for _ in range(clients):
        comm = WebsocketCommunicator(app, "/ws/atw/tasks/")
        comm.scope["user"] = user
        connected, code = await comm.connect(timeout=30)
        if not connected:
            raise RuntimeError(f"the consumer refused the socket (close code {code})")
        await comm.send_json_to({"action": "subscribe", "tasks": [task_id]})
        await comm.receive_json_from(timeout=30)  # the snapshot
        comms.append(comm)
    stamps.clear()

    async def receive(comm: WebsocketCommunicator) -> dict[float, float]:
        arrivals: dict[float, float] = {}
        while True:
            frame = await comm.receive_json_from(timeout=120)
            now = time.perf_counter()
            task = frame.get("task", {})
            if task.get("status") == "running":
                arrivals.setdefault(task["progress"], now)
            elif task.get("status") in {"completed", "failed", "cancelled"}:
                return arrivals

    receivers = [asyncio.create_task(receive(comm)) for comm in comms]
    async with AsyncTaskWorker.from_settings(progress_interval=interval):
        results = await asyncio.gather(*receivers)
    for comm in comms:
        await comm.disconnect()
    latencies = [
        (arrived - stamps[value]) * 1000
        for arrivals in results
        for value, arrived in arrivals.items()
        if value in stamps
    ]
    if not latencies:
        raise RuntimeError("no progress frame arrived")
    latencies.sort()
    return {
        "p50_ms": statistics.median(latencies),
        "p99_ms": latencies[min(len(latencies) - 1, int(len(latencies) * 0.99))],
        "delivered": len(latencies) / (samples * clients),
    }


async def run(args: argparse.Namespace) -> list[str]:
    from channels.layers import get_channel_layer
    from django.test import override_settings

    lines = [
        "| layer | PROGRESS_INTERVAL | clients | p50 ms | p99 ms | values delivered |",
        "|---|---|---|---|---|---|",
    ]
    for name, config in layers(args.redis_url).items():
        for interval in args.intervals:
            for clients in args.clients:
                with override_settings(CHANNEL_LAYERS={"default": config}):
                    layer = get_channel_layer()
                    await layer.flush()
                    figures = await measure_latency(clients, args.samples, args.pace, interval)
                    await layer.flush()
                    if hasattr(layer, "close_pools"):
                        await layer.close_pools()
                lines.append(
                    f"| {name} | {interval:g} s | {clients} | {figures['p50_ms']:.2f} | "
                    f"{figures['p99_ms']:.2f} | {figures['delivered']:.0%} |"
                )
                print(lines[-1], file=sys.stderr, flush=True)
    ns = await measure_callback(args.calls)
    lines += ["", f"progress_callback cost: {ns / 1000:.3f} µs per call ({args.calls:,} calls in one task)"]
    return lines


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="atw-bench-live-") as tmp:
        setup(str(Path(tmp) / "bench.sqlite3"))
        lines = asyncio.run(run(args))
        from django.db import connections

        connections.close_all()
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    sys.exit(main())
