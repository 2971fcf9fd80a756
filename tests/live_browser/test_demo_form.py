"""The demo page's form: it keeps the chosen type, refuses bad arguments on the spot, shows cache hits."""

from __future__ import annotations

import json
from typing import TYPE_CHECKING

from tests.live_browser.conftest import DemoServer, log_in, screenshot
from tests.live_browser.test_demo_page import submit, wait_status

if TYPE_CHECKING:
    from playwright.sync_api import Browser, Page


def task_count(server: DemoServer) -> int:
    count: int = server.shell("from django_atw.models import TaskRecord; print(TaskRecord.objects.count())")
    return count


def refused(page: Page, task_type: str, kwargs: object) -> str:
    """Submit arguments the page must refuse; return the error shown under the arguments."""
    page.select_option("#id_task_type", task_type)
    page.fill("#id_kwargs", json.dumps(kwargs))
    with page.expect_navigation():
        page.click("#enqueue-form button[type=submit]")
    return page.locator("#id_kwargs ~ .field-error").first.text_content() or ""


def test_the_form_keeps_the_chosen_type_after_enqueueing(demo_server: DemoServer, browser: Browser) -> None:
    page = log_in(browser, demo_server, "demo")
    submit(page, "demo.fail", message="kept", after=0)
    assert page.locator("#id_task_type").input_value() == "demo.fail"
    assert json.loads(page.locator("#id_kwargs").input_value()) == {"message": "kept", "after": 0}
    page.context.close()


def test_bad_arguments_are_refused_when_enqueued(demo_server: DemoServer, browser: Browser) -> None:
    page = log_in(browser, demo_server, "demo")
    before = task_count(demo_server)

    message = refused(page, "demo.count", {"n": "ten"})
    assert message == "n must be an integer from 0 to 10000, got 'ten'."
    # enqueue() binds the arguments to the task's signature: its TaskArgumentError is shown.
    message = refused(page, "demo.count", {"m": 3})
    assert message.startswith("Task 'demo.count' cannot be called with these arguments:"), message
    assert page.locator("#id_task_type").input_value() == "demo.count"
    screenshot(page, "demo-refused")

    assert task_count(demo_server) == before
    page.context.close()


def test_an_equal_task_comes_from_the_cache(demo_server: DemoServer, browser: Browser) -> None:
    page = log_in(browser, demo_server, "demo")
    kwargs = {"text": "cache me if you can, cache me", "top": 1}
    first = submit(page, "demo.word_stats", **kwargs)
    wait_status(page, first, "completed")
    assert page.locator(f"[data-cache-badge='{first}']").is_hidden()

    second = submit(page, "demo.word_stats", **kwargs)
    wait_status(page, second, "completed")
    assert page.locator(f"[data-cache-badge='{second}']").is_visible()
    assert page.locator(f"[data-cache-badge='{second}']").text_content() == "from cache"
    assert (
        page.locator(f"[data-atw-result='{second}']").text_content()
        == page.locator(f"[data-atw-result='{first}']").text_content()
    )
    screenshot(page, "demo-from-cache")
    page.context.close()
