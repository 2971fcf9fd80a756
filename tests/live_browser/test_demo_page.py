"""Chromium against the example project served by Daphne: bars, badges and results move live."""

from __future__ import annotations

import json
import re
from typing import TYPE_CHECKING

from tests.live_browser.conftest import DemoServer, log_in, screenshot, wait_connected

if TYPE_CHECKING:
    from playwright.sync_api import Browser, Page


def submit(page: Page, task_type: str, **kwargs: object) -> str:
    """Enqueue a task with the demo page's form; return its id from the confirmation."""
    page.select_option("#id_task_type", task_type)
    page.fill("#id_kwargs", json.dumps(kwargs))
    # Wait for the page the POST redirects to, not the one that still shows an older message.
    with page.expect_navigation():
        page.click("#enqueue-form button[type=submit]")
    message = page.locator(".messages li.success").last.text_content() or ""
    match = re.search(rf"Enqueued {re.escape(task_type)} as task (\S+)\.", message)
    assert match, f"no confirmation on the page: {message!r}"
    wait_connected(page)
    return match.group(1)


def status_of(page: Page, task_id: str) -> str:
    return page.locator(f"[data-atw-status='{task_id}']").first.text_content() or ""


def wait_status(page: Page, task_id: str, status: str) -> None:
    page.wait_for_function(
        """([id, status]) => [...document.querySelectorAll("[data-atw-status]")]
             .some((el) => el.dataset.atwStatus === id && el.textContent === status)""",
        arg=[task_id, status],
    )


def progress_seen(page: Page, task_id: str) -> list[float]:
    """The progress values this page received for a task (recorded by log_in's init script)."""
    seen: list[float] = page.evaluate("id => window.atwSeen[id] || []", task_id)
    return seen


def test_submitted_tasks_reach_100_percent_and_show_their_results(
    demo_server: DemoServer, browser: Browser
) -> None:
    page = log_in(browser, demo_server, "demo")
    second = submit(page, "demo.word_stats", text="to be or not to be", top=2)
    first = submit(page, "demo.count", n=8, delay=0.3)
    # From here on the page is never reloaded: a mark set now survives only without navigation.
    page.evaluate("() => { window.atwSamePage = true; }")

    for task_id in (first, second):
        wait_status(page, task_id, "completed")
        assert page.locator(f"progress[data-atw-task-id='{task_id}']").evaluate("el => el.value") == 1
        assert page.locator(f"[data-atw-percent='{task_id}']").text_content() == "100%"
        assert page.locator(f"button[data-atw-cancel='{task_id}']").is_disabled()
    assert page.locator(f"[data-atw-result='{first}']").text_content() == "8"
    stats = json.loads(page.locator(f"[data-atw-result='{second}']").text_content() or "null")
    assert stats == {"words": 6, "unique": 4, "top": [["to", 2], ["be", 2]]}
    assert page.evaluate("() => window.atwSamePage") is True
    # The bar moved through intermediate values on the way, not just a jump to the end.
    seen = progress_seen(page, first)
    assert any(0 < value < 1 for value in seen), seen
    screenshot(page, "demo-completed")
    page.context.close()


def test_cancel_button_cancels_a_running_task(demo_server: DemoServer, browser: Browser) -> None:
    page = log_in(browser, demo_server, "demo")
    task_id = submit(page, "demo.slow", seconds=120)
    wait_status(page, task_id, "running")
    page.evaluate("() => { window.atwSamePage = true; }")
    page.click(f"button[data-atw-cancel='{task_id}']")

    wait_status(page, task_id, "cancelled")
    assert page.locator(f"button[data-atw-cancel='{task_id}']").is_disabled()
    assert "atw-status-cancelled" in (
        page.locator(f"[data-atw-status='{task_id}']").get_attribute("class") or ""
    )
    # The socket did it, not the form's fallback POST: the page was not reloaded.
    assert page.evaluate("() => window.atwSamePage") is True
    assert (
        demo_server.shell(
            f"import json, django_atw; print(json.dumps(django_atw.get_task_info({task_id!r}).status))"
        )
        == "cancelled"
    )
    screenshot(page, "demo-cancelled")
    page.context.close()


def test_only_the_creator_or_a_changer_cancels_from_the_demo(
    demo_server: DemoServer, browser: Browser
) -> None:
    task_id = demo_server.parked[0]
    page = log_in(browser, demo_server, "alice")
    # Alice sees only her own tasks, and the demo's cancel view refuses hers on someone else's.
    assert page.locator(f"[data-task-row='{task_id}']").count() == 0
    status = page.evaluate(
        """async (id) => {
          const token = document.querySelector("[name=csrfmiddlewaretoken]").value;
          const response = await fetch(`/tasks/${id}/cancel/`, {
            method: "POST", headers: {"X-CSRFToken": token}, redirect: "manual"});
          return response.status;
        }""",
        task_id,
    )
    assert status == 403
    assert (
        demo_server.shell(
            f"import json, django_atw; print(json.dumps(django_atw.get_task_info({task_id!r}).status))"
        )
        == "pending"
    )
    page.context.close()


def test_admin_changelist_and_detail_move_live(demo_server: DemoServer, browser: Browser) -> None:
    page = log_in(browser, demo_server, "demo")
    task_id = submit(page, "demo.count", n=20, delay=0.3)

    page.goto(f"{demo_server.url}/admin/django_atw/taskrecord/")
    wait_connected(page)
    bar = page.locator(f"progress[data-atw-task-id='{task_id}']")
    wait_status(page, task_id, "completed")
    assert bar.evaluate("el => el.value") == 1
    assert page.locator(f"[data-atw-percent='{task_id}']").text_content() == "100%"
    seen = progress_seen(page, task_id)
    assert any(0 < value < 1 for value in seen), seen
    screenshot(page, "admin-changelist")

    slow = submit_elsewhere(demo_server)
    page.goto(f"{demo_server.url}/admin/django_atw/taskrecord/{slow}/change/")
    wait_connected(page)
    wait_status(page, slow, "running")
    page.wait_for_function(
        "id => document.querySelector(`progress[data-atw-task-id='${id}']`).value > 0", arg=slow
    )
    demo_server.shell(f"import json, django_atw; print(json.dumps(django_atw.cancel_task({slow!r})))")
    wait_status(page, slow, "cancelled")
    screenshot(page, "admin-detail")
    page.context.close()


def submit_elsewhere(server: DemoServer) -> str:
    """Enqueue a slow task from another process, as a view or a script elsewhere would."""
    task_id: str = server.shell(
        "import json, django_atw; print(json.dumps(django_atw.enqueue('demo.slow', seconds=120)))"
    )
    return task_id


def test_page_resubscribes_after_the_server_restarts(demo_server: DemoServer, browser: Browser) -> None:
    parked = demo_server.parked[1]
    page = log_in(browser, demo_server, "demo")
    wait_status(page, parked, "pending")

    demo_server.stop()
    page.wait_for_selector("body[data-atw-connection='closed']", state="attached")
    # While no server runs, the task changes in the database: no event can announce it.
    assert demo_server.shell(
        f"import json, django_atw; print(json.dumps(django_atw.cancel_task({parked!r})))"
    )
    assert status_of(page, parked) == "pending"
    demo_server.start()

    # The page reconnects by itself and its fresh snapshot replaces the stale state.
    wait_connected(page)
    wait_status(page, parked, "cancelled")
    assert page.locator(f"button[data-atw-cancel='{parked}']").is_disabled()

    # The list is subscribed again too: a task created elsewhere appears and completes live.
    fresh = demo_server.shell(
        "import json, django_atw\n"
        "from django.contrib.auth import get_user_model\n"
        "demo = get_user_model().objects.get(username='demo')\n"
        "print(json.dumps(django_atw.enqueue('demo.count', n=3, delay=0.1, created_by=demo)))"
    )
    wait_status(page, fresh, "completed")
    assert page.locator(f"[data-atw-result='{fresh}']").text_content() == "3"
    screenshot(page, "demo-after-restart")
    page.context.close()
