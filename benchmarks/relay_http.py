"""Benchmark HTTP latency of a web server while its relay publishes a bulk enqueue from elsewhere.

Usage::

    .venv/bin/python benchmarks/relay_http.py [--tasks 10000] [--watched 2000] [--rounds 1]

What is measured: a real Daphne process serves the example project (its in-memory channel
layer, the single-process default, and the relay that publishes other processes' changes) on a
fresh SQLite database. Sockets watch ``--watched`` tasks (so the layer holds that many groups,
as busy pages do). Another process then adds ``--tasks`` tasks with one ``enqueue_many``; one
client sends HTTP requests back to back from that moment until the relay has published all
of them. Reported: the requests' p50/p99/max latency, and how long the relay took. The target
is p99 under 100 ms.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from tests.live.rawsocket import RawSocket  # noqa: E402

SETUP = """
import json, django
django.setup()
from django.conf import settings
from django.contrib.auth import get_user_model
from django.core.management import call_command
from django.test import Client
import django_atw
call_command("migrate", verbosity=0)
user = get_user_model().objects.create_superuser("bench", "bench@example.com", None)
client = Client()
client.force_login(user)
ids = django_atw.enqueue_many("demo.count", [{"n": 1}] * %d, queue="parked") if %d else []
print(json.dumps({"session": client.cookies[settings.SESSION_COOKIE_NAME].value, "ids": ids}))
"""
# The enqueuing process starts and sets Django up first, then waits for a line on stdin: the
# measured window holds the bulk enqueue and the relay's work, not another interpreter's start-up
# competing for the same two cores.
BULK = """
import sys, django
django.setup()
import django_atw
print("ready", flush=True)
sys.stdin.readline()
django_atw.enqueue_many("demo.count", [{"n": 1}] * %d, queue="parked")
"""


def start_enqueuer(count: int, env: dict[str, str]) -> subprocess.Popen[bytes]:
    """Start the process that will add ``count`` tasks, and wait until it is ready to."""
    process = subprocess.Popen(
        [sys.executable, "-c", BULK % count], cwd=ROOT, env=env, stdin=subprocess.PIPE, stdout=subprocess.PIPE
    )
    assert process.stdout is not None
    if process.stdout.readline().strip() != b"ready":
        raise RuntimeError("the enqueuing process did not start")
    return process


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--tasks", type=int, default=10_000, help="tasks in the bulk enqueue")
    parser.add_argument("--watched", type=int, default=2_000, help="tasks the sockets watch")
    parser.add_argument("--rounds", type=int, default=1, help="bulk enqueues, one after another")
    return parser.parse_args()


def get(url: str) -> tuple[float, bytes]:
    started = time.perf_counter()
    with urllib.request.urlopen(url, timeout=120) as response:
        body = response.read()
    return time.perf_counter() - started, body


def spawn(argv: list[str], env: dict[str, str], log: Path | None = None) -> subprocess.Popen[bytes]:
    out = log.open("wb") if log is not None else None
    return subprocess.Popen(argv, cwd=ROOT, env=env, stdout=out, stderr=subprocess.STDOUT if out else None)


def wait_ready(url: str, server: subprocess.Popen[bytes], log: Path) -> None:
    while True:
        try:
            get(url)
            return
        except OSError:
            if server.poll() is not None:
                sys.exit(log.read_text())
            time.sleep(0.1)


def percentile(values: list[float], fraction: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(fraction * len(ordered)))]


async def main() -> None:
    args = parse_args()
    workdir = Path(tempfile.mkdtemp(prefix="atw-relay-http-"))
    env = {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "tests.live.server_settings",
        "ATW_TEST_DB_NAME": str(workdir / "db.sqlite3"),
        "PYTHONPATH": os.pathsep.join(
            filter(None, [os.environ.get("PYTHONPATH"), str(ROOT / "src"), str(ROOT)])
        ),
    }

    def django_code(code: str) -> str:
        done = subprocess.run([sys.executable, "-c", code], cwd=ROOT, env=env, capture_output=True, text=True)
        if done.returncode:
            sys.exit(done.stderr)
        return done.stdout

    setup = json.loads(django_code(SETUP % (args.watched, args.watched)))
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    base = f"http://127.0.0.1:{port}"
    log = workdir / "daphne.log"
    app = "example_project.asgi:application"
    server = spawn([sys.executable, "-m", "daphne", "-b", "127.0.0.1", "-p", str(port), app], env, log)
    sockets: list[RawSocket] = []
    try:
        wait_ready(f"{base}/test-relayed/", server, log)
        cookie = {"Cookie": f"sessionid={setup['session']}"}
        ids = setup["ids"]
        for start in range(0, len(ids), 1000):
            sock = await RawSocket.open(port, "/ws/atw/tasks/", cookie)
            sockets.append(sock)
            for first in range(start, min(start + 1000, len(ids)), 200):
                sock.send_json({"action": "subscribe", "tasks": ids[first : first + 200]})
                await sock.receive_json(timeout=60)
        relayed = json.loads(get(f"{base}/test-relayed/")[1])["relayed"]
        print(f"{args.tasks} tasks enqueued elsewhere, {args.watched} watched tasks, in-memory layer")
        for round_no in range(1, args.rounds + 1):
            baseline = [get(f"{base}/test-relayed/")[0] for _ in range(50)]
            enqueue = start_enqueuer(args.tasks, env)
            assert enqueue.stdin is not None
            enqueue.stdin.write(b"go\n")
            enqueue.stdin.flush()
            began = time.perf_counter()
            latencies: list[float] = []
            target = relayed + args.tasks
            while True:
                took, body = await asyncio.to_thread(get, f"{base}/test-relayed/")
                latencies.append(took)
                relayed = json.loads(body)["relayed"]
                if relayed >= target:
                    break
            relay_seconds = time.perf_counter() - began
            enqueue.wait()
            p50, p99 = statistics.median(latencies) * 1000, percentile(latencies, 0.99) * 1000
            print(
                f"round {round_no}: idle p50 {statistics.median(baseline) * 1000:.1f} ms; during the relay "
                f"({relay_seconds:.1f} s, {len(latencies)} requests) p50 {p50:.1f} ms, p99 {p99:.1f} ms, "
                f"max {max(latencies) * 1000:.1f} ms"
            )
    finally:
        for sock in sockets:
            await sock.close()
        server.terminate()
        server.wait(timeout=30)


if __name__ == "__main__":
    asyncio.run(main())
