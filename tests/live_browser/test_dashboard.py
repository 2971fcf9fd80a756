"""Chromium: the operations dashboard's chart and counters move as tasks complete, no reload."""

from __future__ import annotations

from typing import TYPE_CHECKING

from tests.live_browser.conftest import PASSWORD, WAIT_MS, DemoServer, screenshot

if TYPE_CHECKING:
    from playwright.sync_api import Browser

DASHBOARD = "/admin/django_atw/operationsdashboard/"
# The completed tasks the chart's series hold, summed over the hour.
CHART_COMPLETED = "window.atwDashboard.chart.data[1].reduce((a, b) => a + b, 0)"


def test_the_chart_and_counters_move_as_tasks_complete(demo_server: DemoServer, browser: Browser) -> None:
    context = browser.new_context()
    context.set_default_timeout(WAIT_MS)
    page = context.new_page()
    page.goto(f"{demo_server.url}/admin/login/?next={DASHBOARD}")
    page.fill("#id_username", "demo")
    page.fill("#id_password", PASSWORD)
    page.click("input[type=submit]")
    page.wait_for_url(f"{demo_server.url}{DASHBOARD}")
    page.wait_for_selector("body[data-atw-dashboard='open']", state="attached")
    page.wait_for_function("window.atwDashboard.frames >= 1 && window.atwDashboard.chart")
    before = page.evaluate("window.atwDashboard.completed")
    assert page.evaluate(CHART_COMPLETED) == before
    loads = page.evaluate("performance.getEntriesByType('navigation').length")

    demo_server.shell(
        "import json, django_atw\n"
        "print(json.dumps([django_atw.enqueue('demo.count', n=1, delay=0) for _ in range(5)]))"
    )
    page.wait_for_function(f"window.atwDashboard.completed >= {before + 5}")
    page.wait_for_function(f"{CHART_COMPLETED} >= {before + 5}")
    assert int((page.text_content("#atw-dash-completed") or "0").replace(",", "")) >= before + 5
    assert "demo.count" in (page.text_content("#atw-dash-types") or "")
    assert "alive" in (page.text_content("#atw-dash-workers") or "")
    # The parked tasks wait on a queue no worker serves: the queue table shows them.
    assert "parked" in (page.text_content("#atw-dash-queues") or "")
    assert page.evaluate("performance.getEntriesByType('navigation').length") == loads  # no reload
    screenshot(page, "dashboard")
    context.close()


def test_a_signed_in_user_who_is_not_staff_gets_no_dashboard(
    demo_server: DemoServer, browser: Browser
) -> None:
    context = browser.new_context()
    context.set_default_timeout(WAIT_MS)
    page = context.new_page()
    page.goto(f"{demo_server.url}/login/?next=/")
    page.fill("#id_username", "alice")
    page.fill("#id_password", PASSWORD)
    page.click("button[type=submit]")
    page.wait_for_url(f"{demo_server.url}/")
    page.goto(f"{demo_server.url}{DASHBOARD}")
    assert "/admin/login/" in page.url
    assert page.locator("#atw-dashboard").count() == 0
    context.close()
