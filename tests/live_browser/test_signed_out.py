"""Chromium: a page whose user is signed out is told so by the socket and stops reconnecting."""

from __future__ import annotations

from typing import TYPE_CHECKING

from tests.live_browser.conftest import PASSWORD, WAIT_MS, DemoServer, wait_connected

if TYPE_CHECKING:
    from playwright.sync_api import Browser

# Counts the sockets the page opens and records the close code of each "closed" state.
COUNT_SOCKETS = """
window.atwSockets = 0;
window.atwCloses = [];
const NativeWebSocket = window.WebSocket;
window.WebSocket = class extends NativeWebSocket {
  constructor(...args) { super(...args); window.atwSockets += 1; }
};
document.addEventListener("atw:connection", (event) => {
  if (event.detail.state === "closed") window.atwCloses.push(event.detail.code);
});
"""


def test_a_signed_out_page_stops_reconnecting(demo_server: DemoServer, browser: Browser) -> None:
    context = browser.new_context()
    context.set_default_timeout(WAIT_MS)
    context.add_init_script(COUNT_SOCKETS)
    # The page's timers run on Playwright's clock: the test moves time past any backoff at will.
    context.clock.install()
    page = context.new_page()
    page.goto(f"{demo_server.url}/login/?next=/")
    page.fill("#id_username", "demo")
    page.fill("#id_password", PASSWORD)
    page.click("button[type=submit]")
    page.wait_for_url(f"{demo_server.url}/")
    wait_connected(page)
    assert page.evaluate("window.atwSockets") == 1

    # Signed out (the session cookie is gone), then the socket drops: live.js reconnects once.
    context.clear_cookies()
    page.evaluate("window.djangoAtwLive.socket.close()")
    page.wait_for_function("window.atwCloses.length === 1")
    page.clock.fast_forward(20_000)
    page.wait_for_function("window.atwCloses.length === 2")
    assert page.evaluate("window.atwSockets") == 2
    # The server accepted the handshake and closed with 4401 (not an HTTP 403, which a browser
    # reports as 1006, indistinguishable from a network failure).
    assert page.evaluate("window.atwCloses[1]") == 4401

    # However long the page stays open, it does not try again.
    for _ in range(4):
        page.clock.fast_forward(60_000)
    assert page.evaluate("window.atwSockets") == 2
    assert page.get_attribute("body", "data-atw-connection") == "closed"
    page.context.close()
