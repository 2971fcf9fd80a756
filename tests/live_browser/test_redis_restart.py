"""Chromium over a Redis layer that restarts: the page catches up on what changed meanwhile."""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from typing import TYPE_CHECKING

import pytest

from tests.live_browser.conftest import DemoServer, log_in, serve
from tests.live_browser.test_demo_page import wait_status
from tests.multiprocess.servers import ThrowawayRedis

if TYPE_CHECKING:
    from playwright.sync_api import Browser

pytestmark = pytest.mark.skipif(shutil.which("redis-server") is None, reason="needs redis-server")


@pytest.fixture(scope="module")
def restartable(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[DemoServer, ThrowawayRedis]]:
    redis = ThrowawayRedis()
    server = serve(tmp_path_factory.mktemp("example-redis-restart"), redis.url)
    try:
        yield server, redis
    finally:
        server.stop()
        server.close_shell()
        redis.stop()


def test_after_a_redis_restart_the_page_resubscribes_and_shows_what_changed(
    restartable: tuple[DemoServer, ThrowawayRedis], browser: Browser
) -> None:
    server, redis = restartable
    parked = server.parked[0]
    page = log_in(browser, server, "demo")
    wait_status(page, parked, "pending")
    page.evaluate(
        """() => { window.atwResyncs = 0;
          window.djangoAtwLive.socket.addEventListener("message", (event) => {
            if (JSON.parse(event.data).type === "resync") window.atwResyncs += 1; }); }"""
    )

    redis.stop()
    # Changed while Redis is down: the event announcing it has nowhere to go.
    assert server.shell(f"import json, django_atw; print(json.dumps(django_atw.cancel_task({parked!r})))")
    redis.start()  # empty: the groups the server's sockets had joined are gone

    # The socket stayed open; once it joined again it asked the page to resubscribe, and the
    # fresh snapshot shows the change.
    wait_status(page, parked, "cancelled")
    assert page.evaluate("window.atwResyncs") == 1
    assert page.get_attribute("body", "data-atw-connection") == "open"
    page.context.close()
