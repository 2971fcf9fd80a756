"""A real Daphne serving the example project on a file SQLite database, and Debian's Chromium.

The server is a separate process, so the browser, the server and the worker inside it talk over
real sockets; the test process touches the example database only through ``manage.py``
subprocesses. Screenshots go to ``test-artifacts/browser/``.
"""

from __future__ import annotations

import importlib.util
import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

if TYPE_CHECKING:
    from playwright.sync_api import Browser, Page

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
ROOT = Path(__file__).resolve().parents[2]
ARTIFACTS = ROOT / "test-artifacts" / "browser"
PASSWORD = "browser-test-password"
START_TIMEOUT = 30.0
APPLICATION = "example_project.asgi:application"
# The Django process behind DemoServer.shell: runs each line (a JSON string of code), answers
# one JSON line with what the code printed.
HELPER = """
import contextlib, io, json, sys, traceback
import django
django.setup()
for line in sys.stdin:
    out = io.StringIO()
    try:
        with contextlib.redirect_stdout(out):
            exec(json.loads(line), {})
        reply = {"ok": True, "out": out.getvalue()}
    except Exception:
        reply = {"ok": False, "out": out.getvalue(), "error": traceback.format_exc()}
    print(json.dumps(reply), flush=True)
"""
# What a browser test waits for at most (ms): it only turns a hang into a failure.
WAIT_MS = 20_000


def _missing() -> str | None:
    """Why the browser tests cannot run here, or None."""
    if os.environ.get("ATW_TEST_DATABASE", "sqlite") != "sqlite":
        return "browser tests serve the example project on SQLite; they run in the SQLite run only"
    if not CHROMIUM.exists():
        return f"{CHROMIUM} is missing: apt-get install -y chromium (.ci/run does)"
    for module, extra in (("playwright", "browser"), ("daphne", "server"), ("channels", "server")):
        if importlib.util.find_spec(module) is None:
            return f"the {module} package is missing: pip install -e '.[{extra}]'"
    if importlib.util.find_spec("django_atw.asgi") is None:
        return "django_atw.asgi is missing"
    return None


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    reason = _missing()
    if reason is None:
        return
    here = Path(__file__).parent
    for item in items:
        if here in Path(str(item.path)).parents:
            item.add_marker(pytest.mark.skip(reason=reason))


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


class DemoServer:
    """Daphne serving ``example_project.asgi`` (worker inside) on a loopback port."""

    def __init__(self, workdir: Path, redis_url: str | None = None) -> None:
        self.workdir = workdir
        self.port = _free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log_path = workdir / "daphne.log"
        self.env = {
            **os.environ,
            "DJANGO_SETTINGS_MODULE": "example_project.settings",
            "ATW_EXAMPLE_DB": str(workdir / "example.sqlite3"),
            "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")])),
        }
        # Without a Redis URL, the in-memory channel layer: events live in the server process.
        self.env.pop("ATW_REDIS_URL", None)
        if redis_url:
            self.env["ATW_REDIS_URL"] = redis_url
        self.process: subprocess.Popen[bytes] | None = None
        self.helper: subprocess.Popen[str] | None = None
        self.starts = 0
        # Ids of tasks of the user demo on a queue no worker serves: they stay pending.
        self.parked: list[str] = []

    def shell(self, code: str) -> Any:
        """Run Python in a Django process on the example database; it prints one JSON value,
        returned here. One process serves every call, so each costs no Django start-up."""
        if self.helper is None or self.helper.poll() is not None:
            self.helper = subprocess.Popen(
                [sys.executable, "-c", HELPER],
                cwd=ROOT,
                env=self.env,
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                stderr=(self.workdir / "helper.log").open("ab"),
                text=True,
            )
        assert self.helper.stdin is not None and self.helper.stdout is not None
        self.helper.stdin.write(json.dumps(code) + "\n")
        self.helper.stdin.flush()
        line = self.helper.stdout.readline()
        if not line:
            log = (self.workdir / "helper.log").read_text(errors="replace")
            raise AssertionError(f"the Django helper process exited:\n{log}")
        reply = json.loads(line)
        if not reply["ok"]:
            raise AssertionError(f"{code}\nfailed:\n{reply['error']}")
        return json.loads(reply["out"].strip().splitlines()[-1])

    def close_shell(self) -> None:
        if self.helper is not None:
            assert self.helper.stdin is not None
            self.helper.stdin.close()
            self.helper.wait(timeout=30)
            self.helper = None

    def start(self) -> None:
        self.starts += 1
        log = self.log_path.open("ab")
        log.write(f"\n===== start {self.starts}\n".encode())
        log.flush()
        self.process = subprocess.Popen(
            [sys.executable, "-m", "daphne", "-b", "127.0.0.1", "-p", str(self.port), APPLICATION],
            cwd=ROOT,
            env=self.env,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        log.close()
        deadline = time.monotonic() + START_TIMEOUT
        while True:  # the server announces nothing we can await: ask it until it answers
            if self.process.poll() is not None:
                raise AssertionError(f"daphne exited with {self.process.returncode}:\n{self.log()}")
            try:
                with urllib.request.urlopen(f"{self.url}/login/", timeout=2) as response:
                    if response.status == 200:
                        return
            except (urllib.error.URLError, ConnectionError, TimeoutError):
                pass
            if time.monotonic() > deadline:
                raise AssertionError(f"daphne did not answer within {START_TIMEOUT} s:\n{self.log()}")
            time.sleep(0.1)

    def stop(self) -> None:
        """SIGTERM, as a process manager stops it: the worker inside stops gracefully."""
        if self.process is None or self.process.poll() is not None:
            return
        self.process.send_signal(signal.SIGTERM)
        try:
            self.process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
            raise AssertionError(f"daphne did not stop within 30 s of SIGTERM:\n{self.log()}") from None

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")[-6000:]


@pytest.fixture(autouse=True)
def _close_sync_to_async_connections() -> None:
    """Replace the suite's async clean-up: these tests open no database connection of their own,
    and playwright's sync API keeps an event loop running in this thread, where an async fixture
    cannot run."""


def serve(workdir: Path, redis_url: str | None = None) -> DemoServer:
    """Set up the example database and start Daphne on it."""
    server = DemoServer(workdir, redis_url)
    # One Django process sets everything up: the schema, the users, and tasks on a queue no
    # worker serves, which stay pending until a test changes them.
    server.parked = server.shell(
        "import json\n"
        "from django.core.management import call_command\n"
        "from django.contrib.auth import get_user_model\n"
        "import django_atw\n"
        "call_command('migrate', verbosity=0)\n"
        "User = get_user_model()\n"
        f"demo = User.objects.create_superuser('demo', 'demo@example.com', {PASSWORD!r})\n"
        f"User.objects.create_user('alice', 'alice@example.com', {PASSWORD!r})\n"
        "print(json.dumps([django_atw.enqueue('demo.count', queue='parked', created_by=demo)"
        " for _ in range(2)]))"
    )
    server.start()
    return server


@pytest.fixture(scope="module")
def demo_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[DemoServer]:
    server = serve(tmp_path_factory.mktemp("example"))
    try:
        yield server
    finally:
        server.stop()
        server.close_shell()


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        launched = playwright.chromium.launch(
            executable_path=str(CHROMIUM), args=CHROMIUM_ARGS, headless=True
        )
        try:
            yield launched
        finally:
            launched.close()


def log_in(browser: Browser, server: DemoServer, username: str) -> Page:
    """A page in a fresh browser context, signed in as ``username``, on the demo page."""
    context = browser.new_context()
    context.set_default_timeout(WAIT_MS)
    # Every page keeps the progress values it receives, per task, in window.atwSeen.
    context.add_init_script(
        """window.atwSeen = {};
        document.addEventListener("atw:task", (event) => {
          (window.atwSeen[event.detail.id] ||= []).push(event.detail.progress);
        });"""
    )
    page = context.new_page()
    page.goto(f"{server.url}/login/?next=/")
    page.fill("#id_username", username)
    page.fill("#id_password", PASSWORD)
    page.click("button[type=submit]")
    page.wait_for_url(f"{server.url}/")
    wait_connected(page)
    return page


def wait_connected(page: Page) -> None:
    page.wait_for_selector("body[data-atw-connection='open']", state="attached")


def screenshot(page: Page, name: str) -> None:
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / f"{name}.png"), full_page=True)
