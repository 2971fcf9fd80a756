"""The task admin in Chromium at 1200 px: no horizontal scrolling, live durations, Cancel, failed bars."""

from __future__ import annotations

from typing import TYPE_CHECKING

from tests.live_browser.conftest import WAIT_MS, DemoServer, log_in, screenshot, wait_connected
from tests.live_browser.test_demo_page import submit, submit_elsewhere, wait_status

if TYPE_CHECKING:
    from playwright.sync_api import Browser

CHANGELIST = "/admin/django_atw/taskrecord/"


def test_the_task_list_fits_1200_px_and_moves_live(demo_server: DemoServer, browser: Browser) -> None:
    page = log_in(browser, demo_server, "demo")
    failed = submit(page, "demo.fail", message="A failure with a long message, to colour its bar.", after=0)
    done = submit(page, "demo.word_stats", text="a list that fits the screen", top=3)
    running = submit_elsewhere(demo_server)
    page.set_viewport_size({"width": 1200, "height": 800})
    page.goto(f"{demo_server.url}{CHANGELIST}")
    wait_connected(page)
    wait_status(page, failed, "failed")
    wait_status(page, done, "completed")
    wait_status(page, running, "running")

    width = page.evaluate("() => document.documentElement.scrollWidth")
    assert width <= 1200, f"the page is {width} px wide at a 1200 px window"
    # Django's results box scrolls sideways rather than widen the page: it must not have to.
    inner, box = page.evaluate(
        "() => { const box = document.querySelector('.results'); return [box.scrollWidth, box.clientWidth]; }"
    )
    assert inner <= box, f"the task table needs {inner} px in a {box} px box: columns are cut off"
    natural = page.evaluate(
        "() => { const t = document.getElementById('result_list'); t.style.width = 'auto';"
        " const w = t.getBoundingClientRect().width; t.style.width = ''; return w; }"
    )
    assert natural <= box, f"the task table is {natural} px wide at its narrowest, in a {box} px box"
    # Short ids, each with a copy button; the full id is in the link's title.
    assert page.locator(f"a[title='{running}'] code").text_content() == running[:8]
    assert page.locator(f"button[data-atw-copy='{running}']").count() == 1
    # A failed bar is marked failed, which admin.css colours red.
    bar = page.locator(f"progress[data-atw-task-id='{failed}']")
    assert "atw-progress-failed" in (bar.get_attribute("class") or "")
    colour = bar.evaluate("el => getComputedStyle(el).backgroundColor")
    assert colour == "rgb(248, 215, 218)", colour
    # The running task's duration counts up without a reload.
    duration = page.locator(f"[data-atw-duration='{running}']")
    first = duration.text_content()
    page.wait_for_function(
        "([id, first]) => document.querySelector(`[data-atw-duration='${id}']`).textContent !== first",
        arg=[running, first],
        timeout=WAIT_MS,
    )
    screenshot(page, "admin-changelist-1200")

    page.goto(f"{demo_server.url}{CHANGELIST}{running}/change/")
    wait_connected(page)
    assert page.locator("a.deletelink").count() == 0  # no Delete while it runs
    page.click(f"button[data-atw-cancel='{running}']")
    wait_status(page, running, "cancelled")
    screenshot(page, "admin-detail-cancelled")
    page.context.close()
