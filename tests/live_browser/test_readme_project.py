"""A new user's project, built from the README alone, shows a task's bar moving live in Chromium.

``django-admin startproject`` in a temporary directory, then the README's "Set up a project"
steps with the snippets read from README.md (``<!-- atw:NAME -->`` marks them, so this test
breaks when they drift): settings, asgi.py, a task, a view, a template and the URLs. Then
``migrate``, ``createsuperuser``, a server (Daphne, uvicorn, runserver), and Chromium signs in,
presses "Process" and watches the bar reach 100 %, and the admin's task list shows it.
"""

from __future__ import annotations

import importlib.util
import os
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

from tests.helpers.readme import snippets
from tests.live_browser.conftest import WAIT_MS, _free_port, screenshot

if TYPE_CHECKING:
    from playwright.sync_api import Browser

SRC = Path(__file__).resolve().parents[2] / "src"
PASSWORD = "readme-test-password"
START_TIMEOUT = 30.0


def run(args: list[str], cwd: Path, env: dict[str, str]) -> str:
    done = subprocess.run(args, cwd=cwd, env=env, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, f"{args} failed:\n{done.stdout}\n{done.stderr}"
    return done.stdout + done.stderr


@pytest.fixture(scope="module")
def project(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, str]]:
    """The README's project, set up step by step: its directory and the environment to run it."""
    root = tmp_path_factory.mktemp("readme")
    env = {k: v for k, v in os.environ.items() if not k.startswith(("DJANGO_", "ATW_"))}
    # django_atw from this checkout (as `pip install -e` would), nothing else of the test suite.
    env["PYTHONPATH"] = str(SRC)
    env["PYTHONUNBUFFERED"] = "1"
    python = sys.executable
    code = snippets()
    shell = code["shell"]
    assert "django-admin startproject mysite && cd mysite" in shell
    assert "python manage.py startapp myapp" in shell
    run([python, "-m", "django", "startproject", "mysite"], root, env)
    site = root / "mysite"
    run([python, "manage.py", "startapp", "myapp"], site, env)

    settings = site / "mysite" / "settings.py"
    settings.write_text(settings.read_text() + "\n\n" + code["settings"])
    (site / "mysite" / "asgi.py").write_text(code["asgi"])
    (site / "myapp" / "tasks.py").write_text(code["tasks"])
    (site / "myapp" / "views.py").write_text(code["views"])
    templates = site / "myapp" / "templates" / "myapp"
    templates.mkdir(parents=True)
    (templates / "process.html").write_text(code["template"])
    (site / "mysite" / "urls.py").write_text(code["urls"])

    steps = code["run"]
    assert "python manage.py migrate" in steps and "python manage.py createsuperuser" in steps
    # The system checks find nothing missing in the README's project.
    checked = run([python, "manage.py", "check"], site, env)
    assert "django_atw." not in checked, checked
    run([python, "manage.py", "migrate"], site, env)
    run(
        [
            python,
            "manage.py",
            "createsuperuser",
            "--noinput",
            "--username",
            "admin",
            "--email",
            "a@example.com",
        ],
        site,
        {**env, "DJANGO_SUPERUSER_PASSWORD": PASSWORD},
    )
    return site, env


def command(server: str, port: int) -> list[str]:
    """The README's three ways to serve it, on a free port."""
    app = "mysite.asgi:application"
    if server == "daphne":
        return [sys.executable, "-m", "daphne", "-b", "127.0.0.1", "-p", str(port), app]
    if server == "uvicorn":
        return [sys.executable, "-m", "uvicorn", "--host", "127.0.0.1", "--port", str(port), app]
    return [sys.executable, "manage.py", "runserver", f"127.0.0.1:{port}"]


@pytest.fixture(params=["daphne", "uvicorn", "runserver"])
def served(request: pytest.FixtureRequest, project: tuple[Path, dict[str, str]]) -> Iterator[str]:
    server: str = request.param
    if server == "uvicorn" and (
        importlib.util.find_spec("uvicorn") is None
        or not any(importlib.util.find_spec(m) for m in ("websockets", "wsproto"))
    ):
        pytest.skip("uvicorn with WebSocket support is not installed: pip install 'uvicorn[standard]'")
    site, env = project
    port = _free_port()
    url = f"http://127.0.0.1:{port}"
    log_path = site / f"{server}.log"
    with log_path.open("wb") as log:
        # Its own process group: runserver's autoreloader runs the server in a child process.
        process = subprocess.Popen(
            command(server, port),
            cwd=site,
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    try:
        deadline = time.monotonic() + START_TIMEOUT
        while True:
            assert process.poll() is None, log_path.read_text(errors="replace")
            try:
                with urllib.request.urlopen(f"{url}/admin/login/", timeout=2) as response:
                    if response.status == 200:
                        break
            except (urllib.error.URLError, ConnectionError, TimeoutError):
                pass
            assert time.monotonic() < deadline, log_path.read_text(errors="replace")
            time.sleep(0.1)
        yield url
    finally:
        os.killpg(process.pid, signal.SIGTERM)
        try:
            process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()


def test_the_readme_project_shows_live_progress(
    served: str, browser: Browser, request: pytest.FixtureRequest
) -> None:
    url = served
    context = browser.new_context()
    context.set_default_timeout(WAIT_MS)
    context.add_init_script(
        """window.atwSeen = [];
        document.addEventListener("atw:task", (event) => window.atwSeen.push(event.detail.progress));"""
    )
    failed: list[str] = []
    context.on("response", lambda r: failed.append(f"{r.status} {r.url}") if r.status >= 400 else None)
    page = context.new_page()

    # Signed out, the page sends the visitor to the admin's login page (LOGIN_URL).
    page.goto(f"{url}/process/")
    page.wait_for_url("**/admin/login/?next=/process/")
    page.fill("#id_username", "admin")
    page.fill("#id_password", PASSWORD)
    page.click("input[type=submit]")
    page.wait_for_url(f"{url}/process/")

    page.click("button[type=submit]")
    page.wait_for_url(f"{url}/process/?task=*")
    task_id = page.url.split("task=", 1)[1]
    # The admin's task list, opened while the task runs, follows it too.
    admin = context.new_page()
    admin.goto(f"{url}/admin/django_atw/taskrecord/")

    page.wait_for_selector("body[data-atw-connection='open']", state="attached")
    page.wait_for_function(
        f"document.querySelector('[data-atw-percent=\"{task_id}\"]').textContent === '100%'"
    )
    assert page.text_content(f'[data-atw-status="{task_id}"]') == "completed"
    assert page.eval_on_selector(f'progress[data-atw-task-id="{task_id}"]', "el => el.value") == 1
    result = page.text_content(f'[data-atw-result="{task_id}"]') or ""
    assert "38" in result, result  # process_data doubles 0..19
    seen = page.evaluate("window.atwSeen")
    assert any(0 < value < 1 for value in seen), f"the bar did not move through the socket: {seen}"

    admin.wait_for_function(
        f"document.querySelector('[data-atw-percent=\"{task_id}\"]').textContent === '100%'"
    )
    assert admin.evaluate("getComputedStyle(document.body).fontFamily") != "", "the admin has no CSS"
    screenshot(page, f"readme-project-{request.node.callspec.id}")
    assert failed == [], f"requests that failed (static files not served?): {failed}"
    context.close()
