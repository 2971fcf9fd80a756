"""The worker inside real ASGI servers: Daphne and its runserver (no lifespan), uvicorn and
hypercorn (lifespan).

Each test starts the server as a process serving the example project on a free loopback
port and the test database, enqueues over HTTP, sees the embedded worker finish the task,
then sends SIGTERM while a task runs and checks it went back to pending and the log shows a
clean start and stop. SQLite only: the servers are slow to start and the database makes no
difference to what is tested here.
"""

from __future__ import annotations

import asyncio
import ctypes
import json
import os
import signal
import socket
import sys
import time
import urllib.request
from pathlib import Path

import pytest
from asgiref.sync import sync_to_async
from django.db import connection

from django_atw import TaskStatus, aget_task_info
from tests.conftest import wait_until
from tests.helpers.processes import ROOT, subprocess_env

pytestmark = pytest.mark.django_db(transaction=True)

BIN = Path(sys.executable).parent
PROC = Path("/proc/self/task").is_dir()


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def server_command(server: str, port: int) -> list[str]:
    app = "example_project.asgi:application"
    if server == "daphne":
        return [str(BIN / "daphne"), "-b", "127.0.0.1", "-p", str(port), app]
    if server == "hypercorn":  # -w 0: one process, so SIGTERM reaches the one that serves
        return [str(BIN / "hypercorn"), "-w", "0", "-b", f"127.0.0.1:{port}", app]
    if server == "runserver":  # Daphne's runserver; the autoreloader allows no graceful stop
        return [sys.executable, "-m", "django", "runserver", "--noreload", f"127.0.0.1:{port}"]
    return [str(BIN / "uvicorn"), "--host", "127.0.0.1", "--port", str(port), "--lifespan", "on", app]


def http(method: str, url: str, body: dict | None = None) -> tuple[int, bytes]:
    data = json.dumps(body).encode() if body is not None else None
    request = urllib.request.Request(url, data=data, method=method)
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return response.status, response.read()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read()
    except OSError:
        return 0, b""


@pytest.mark.parametrize("server", ["daphne", "uvicorn", "hypercorn", "runserver"])
async def test_the_server_runs_the_worker_and_stops_it_gracefully(server, tmp_path):
    if connection.vendor != "sqlite":
        pytest.skip("server processes are tested on SQLite only")
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    log_path = tmp_path / f"{server}.log"
    env = {**subprocess_env(), "DJANGO_SETTINGS_MODULE": "tests.live.server_settings"}
    with log_path.open("wb") as log:
        proc = await asyncio.create_subprocess_exec(
            *server_command(server, port), cwd=ROOT, env=env, stdout=log, stderr=log
        )
    try:
        await wait_until(
            lambda: sync_to_async(http)("GET", f"{base}/admin/login/"), lambda r: r[0] == 200, 60
        )

        status, body = await sync_to_async(http)(
            "POST", f"{base}/test-enqueue/demo.count/", {"n": 3, "delay": 0}
        )
        assert status == 200, body
        done_id = json.loads(body)["id"]
        info = await wait_until(lambda: aget_task_info(done_id), lambda i: i.status.is_terminal, 30)
        assert (info.status, info.result, info.progress) == (TaskStatus.COMPLETED, 3, 1.0)

        _, body = await sync_to_async(http)("POST", f"{base}/test-enqueue/demo.slow/", {"seconds": 600})
        slow_id = json.loads(body)["id"]
        await wait_until(lambda: aget_task_info(slow_id), lambda i: i.status == TaskStatus.RUNNING, 30)
        proc.send_signal(signal.SIGTERM)
        async with asyncio.timeout(30):
            returncode = await proc.wait()
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
    log_text = log_path.read_text()
    # uvicorn re-raises the signal once it has shut down cleanly, so it ends "killed by SIGTERM".
    assert returncode in ((0, -signal.SIGTERM) if server == "uvicorn" else (0,)), log_text
    info = await aget_task_info(slow_id)
    assert (info.status, info.worker_id, info.attempts) == (TaskStatus.PENDING, None, 0), log_text
    assert "embedded engine started via lifespan" in log_text
    assert "returned 1 unfinished tasks to pending" in log_text
    assert "embedded engine stopped via lifespan" in log_text
    assert "Traceback" not in log_text and "ERROR" not in log_text, log_text


def _server_threads(reloader_pid: int) -> tuple[int, list[int]]:
    """The autoreloader's child (the process that serves) and the ids of its threads but the main one."""
    children = Path(f"/proc/{reloader_pid}/task/{reloader_pid}/children").read_text().split()
    (child,) = (int(pid) for pid in children)
    return child, [int(tid) for tid in os.listdir(f"/proc/{child}/task") if int(tid) != child]


def _interrupt_like_a_kernel_may(reloader_pid: int) -> None:
    """Ctrl-C, with the server's SIGINT landing on a thread other than its main one.

    The kernel may hand a process's signal to any of its threads; the main thread, asleep in
    the reloader's one-second tick, then learns of it only when the sleep ends, after the
    reloader (interrupted too) killed it. So the signal is sent as the main thread falls asleep.
    """
    tgkill = getattr(ctypes.CDLL(None, use_errno=True), "tgkill", None)
    if tgkill is None:
        pytest.skip("needs glibc's tgkill to signal one thread of another process")
    child, others = _server_threads(reloader_pid)
    wchan = Path(f"/proc/{child}/task/{child}/wchan")
    was_asleep = True
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        asleep = "sleep" in wchan.read_text()
        if asleep and not was_asleep:
            break
        was_asleep = asleep
    else:
        pytest.skip("this kernel does not show where the server's main thread waits (wchan)")
    os.kill(reloader_pid, signal.SIGINT)
    assert tgkill(child, others[0], signal.SIGINT) == 0, os.strerror(ctypes.get_errno())


@pytest.mark.parametrize("landing", ["main-thread", "other-thread"])
async def test_ctrl_c_under_runserver_s_autoreloader_returns_running_tasks_to_pending(tmp_path, landing):
    if connection.vendor != "sqlite":
        pytest.skip("server processes are tested on SQLite only")
    if landing == "other-thread" and not PROC:
        pytest.skip("needs Linux's /proc to find the server's threads")
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    log_path = tmp_path / "runserver.log"
    env = {**subprocess_env(), "DJANGO_SETTINGS_MODULE": "tests.live.server_settings"}
    command = [sys.executable, "-m", "django", "runserver", f"127.0.0.1:{port}"]
    with log_path.open("wb") as log:
        proc = await asyncio.create_subprocess_exec(
            *command,
            cwd=ROOT,
            env=env,
            stdout=log,
            stderr=log,
            start_new_session=True,  # its own process group, as a terminal's Ctrl-C reaches
            # A shell's background jobs ignore SIGINT, and children inherit that: undo it.
            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
        )
    try:
        await wait_until(
            lambda: sync_to_async(http)("GET", f"{base}/admin/login/"), lambda r: r[0] == 200, 60
        )
        _, body = await sync_to_async(http)("POST", f"{base}/test-enqueue/demo.slow/", {"seconds": 600})
        slow_id = json.loads(body)["id"]
        await wait_until(lambda: aget_task_info(slow_id), lambda i: i.status == TaskStatus.RUNNING, 30)
        if landing == "main-thread":
            os.killpg(proc.pid, signal.SIGINT)
        else:
            _interrupt_like_a_kernel_may(proc.pid)
        async with asyncio.timeout(30):
            await proc.wait()
    finally:
        if proc.returncode is None:
            os.killpg(proc.pid, signal.SIGKILL)
            await proc.wait()
    log_text = log_path.read_text()
    info = await aget_task_info(slow_id)
    assert (info.status, info.worker_id) == (TaskStatus.PENDING, None), log_text
    assert "process exiting: returned 1 running tasks to pending" in log_text
