"""Workers ride out a PostgreSQL outage and a Redis restart, on their own throw-away servers."""

from __future__ import annotations

import asyncio
import shutil
import signal

import pytest
from django.db import connection
from django.test import override_settings

from django_atw import TaskStatus, acancel_task, aenqueue, aget_task_info
from tests.conftest import wait_until
from tests.helpers.processes import ROOT, django_command, subprocess_env
from tests.multiprocess.servers import ThrowawayPostgres, ThrowawayRedis, postgres_bin

ENQUEUE_100 = (
    "from django.core.management import call_command; call_command('migrate', verbosity=0); "
    "from django_atw import enqueue_many; enqueue_many('sleep', [(0.05,)] * 100)"
)


def count_by_status(url: str) -> dict[str, int]:
    import psycopg

    try:
        with psycopg.connect(url, connect_timeout=2) as conn:
            sql = "SELECT status, COUNT(*) FROM django_atw_taskrecord GROUP BY status"
            rows = conn.execute(sql).fetchall()
    except psycopg.OperationalError:
        return {}
    return {status: count for status, count in rows}


@pytest.fixture
def own_postgres():
    if postgres_bin() is None:
        pytest.skip("the PostgreSQL outage test needs initdb and pg_ctl (/usr/lib/postgresql/*/bin)")
    server = ThrowawayPostgres()
    yield server
    server.destroy()


@pytest.fixture
def own_redis():
    if shutil.which("redis-server") is None:
        pytest.skip("the Redis restart test needs redis-server on PATH")
    server = ThrowawayRedis()
    yield server
    server.stop()


@pytest.mark.skipif(
    connection.vendor != "postgresql", reason="runs once, in the PostgreSQL run (it brings its own server)"
)
async def test_workers_back_off_while_postgresql_is_down_and_lose_nothing(own_postgres, start_worker):
    env = {
        "ATW_TEST_DATABASE": "postgres",
        "ATW_TEST_POSTGRES": own_postgres.url,
        "ATW_TEST_DB_NAME": "postgres",
    }
    setup = await asyncio.create_subprocess_exec(
        *django_command("shell", "-c", ENQUEUE_100),
        cwd=ROOT,
        env={**subprocess_env(), **env},
        stderr=asyncio.subprocess.PIPE,
    )
    _, errors = await asyncio.wait_for(setup.communicate(), timeout=120)
    assert setup.returncode == 0, errors.decode()
    worker = await start_worker("--concurrency", "5", env=env)
    url = own_postgres.url
    await wait_until(lambda: asyncio.to_thread(count_by_status, url), lambda c: c.get("completed", 0) >= 10)

    await asyncio.to_thread(own_postgres.stop)
    await worker.wait_for("failed", timeout=60)  # claiming or storing, logged and retried
    await asyncio.to_thread(own_postgres.start)

    counts = await wait_until(
        lambda: asyncio.to_thread(count_by_status, url), lambda c: c.get("completed") == 100, timeout=120
    )
    assert counts == {"completed": 100}
    assert worker.proc.returncode is None
    worker.proc.send_signal(signal.SIGTERM)
    assert await worker.wait() == 0, worker.output


@pytest.mark.django_db(transaction=True)
@pytest.mark.skipif(
    connection.vendor != "sqlite", reason="wake-ups use the channel layer only where there is no NOTIFY"
)
async def test_a_redis_restart_loses_no_wake_up_for_good_and_the_worker_rejoins(own_redis, start_worker):
    layers = {
        "default": {"BACKEND": "channels_redis.core.RedisChannelLayer", "CONFIG": {"hosts": [own_redis.url]}}
    }
    env = {
        "DJANGO_SETTINGS_MODULE": "tests.multiprocess.settings_redis",
        "ATW_TEST_LAYER_REDIS": own_redis.url,
    }
    # Polling far slower than the waits below: only channel-layer messages start these tasks.
    worker = await start_worker("--poll-interval", "600", env=env)
    with override_settings(CHANNEL_LAYERS=layers):
        first = await aenqueue("record", "before")
        await wait_until(lambda: aget_task_info(first), lambda i: i.status.is_terminal, timeout=20)

        await asyncio.to_thread(own_redis.stop)
        during = await aenqueue("record", "during")  # stored; its wake-up cannot be sent
        await asyncio.to_thread(own_redis.start)
        await worker.wait_for("wake-up listener reconnected", timeout=60)
        await wait_until(lambda: aget_task_info(during), lambda i: i.status.is_terminal, timeout=20)

        after = await aenqueue("record", "after")
        await wait_until(lambda: aget_task_info(after), lambda i: i.status.is_terminal, timeout=20)

        # A cancel reaches the running task the same way.
        long = await aenqueue("sleep", 600)
        await wait_until(lambda: aget_task_info(long), lambda i: i.status == TaskStatus.RUNNING, timeout=20)
        assert await acancel_task(long)
        await wait_until(lambda: aget_task_info(long), lambda i: i.status.is_terminal, timeout=20)
    for task_id in (first, during, after):
        assert (await aget_task_info(task_id)).status == TaskStatus.COMPLETED
    assert (await aget_task_info(long)).status == TaskStatus.CANCELLED


@pytest.mark.skipif(
    connection.vendor != "postgresql", reason="runs once, in the PostgreSQL run (it brings its own server)"
)
async def test_a_worker_stopped_while_postgresql_is_down_exits_and_its_tasks_run_later(
    own_postgres, start_worker
):
    env = {
        "ATW_TEST_DATABASE": "postgres",
        "ATW_TEST_POSTGRES": own_postgres.url,
        "ATW_TEST_DB_NAME": "postgres",
    }
    setup = await asyncio.create_subprocess_exec(
        *django_command("shell", "-c", ENQUEUE_100),
        cwd=ROOT,
        env={**subprocess_env(), **env},
        stderr=asyncio.subprocess.PIPE,
    )
    _, errors = await asyncio.wait_for(setup.communicate(), timeout=120)
    assert setup.returncode == 0, errors.decode()
    url = own_postgres.url
    first = await start_worker("--concurrency", "5", "--grace", "0.5", env=env, lease=2.0)
    await wait_until(lambda: asyncio.to_thread(count_by_status, url), lambda c: c.get("completed", 0) >= 10)

    await asyncio.to_thread(own_postgres.stop)
    await first.wait_for("failed", timeout=60)
    first.proc.send_signal(signal.SIGTERM)
    # Its outcomes cannot be stored: it gives up after the grace period instead of hanging.
    assert await first.wait(timeout=60) == 0, first.output
    await asyncio.to_thread(own_postgres.start)

    second = await start_worker("--concurrency", "5", env=env, lease=2.0)
    counts = await wait_until(
        lambda: asyncio.to_thread(count_by_status, url), lambda c: c.get("completed") == 100, timeout=120
    )
    assert counts == {"completed": 100}
    assert "lease recovery" in first.output
    assert second.proc.returncode is None
