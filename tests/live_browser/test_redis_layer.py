"""The example project with ATW_REDIS_URL: a worker in another process reaches the browser."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

from tests.live_browser.conftest import ROOT, DemoServer, log_in, screenshot, serve
from tests.live_browser.test_demo_page import progress_seen, wait_status

if TYPE_CHECKING:
    from playwright.sync_api import Browser

REDIS_URL = os.environ.get("ATW_TEST_REDIS", "")
WORKER_ARGS = ("atw_worker", "--queue", "remote", "--poll-interval", "0.2")
pytestmark = pytest.mark.skipif(
    not REDIS_URL, reason="set ATW_TEST_REDIS=redis://127.0.0.1:6379/<db> to run against Redis"
)


@pytest.fixture(scope="module")
def redis_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[DemoServer, Path]]:
    server = serve(tmp_path_factory.mktemp("example-redis"), REDIS_URL)
    log_path = server.workdir / "worker.log"
    with log_path.open("wb") as log:
        # A standalone worker serving only the "remote" queue, which the server's own does not.
        worker = subprocess.Popen(
            [sys.executable, str(ROOT / "manage.py"), *WORKER_ARGS],
            cwd=ROOT,
            env=server.env,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
    try:
        yield server, log_path
    finally:
        worker.send_signal(signal.SIGTERM)
        try:
            worker.wait(timeout=30)
        finally:
            if worker.poll() is None:
                worker.kill()
            server.stop()
            server.close_shell()


def test_a_standalone_workers_progress_reaches_the_page_over_redis(
    redis_server: tuple[DemoServer, Path], browser: Browser
) -> None:
    server, worker_log = redis_server
    page = log_in(browser, server, "demo")
    task_id = server.shell(
        "import json, django_atw\n"
        "from django.contrib.auth import get_user_model\n"
        "demo = get_user_model().objects.get(username='demo')\n"
        "print(json.dumps(django_atw.enqueue("
        "'demo.count', n=6, delay=0.3, queue='remote', created_by=demo)))"
    )
    # Only the standalone worker serves "remote": the row appears, moves and completes live.
    wait_status(page, task_id, "completed")
    assert page.locator(f"[data-atw-result='{task_id}']").text_content() == "6", worker_log.read_text()
    seen = progress_seen(page, task_id)
    assert any(0 < value < 1 for value in seen), seen
    screenshot(page, "demo-redis")
    page.context.close()
