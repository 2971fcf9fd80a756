"""The example project's settings, on the test database, for the ASGI servers the tests start."""

import os

from example_project.settings import *  # noqa: F403
from example_project.settings import ATW, DATABASES

DATABASES["default"]["NAME"] = os.environ["ATW_TEST_DB_NAME"]
# The example project plus one CSRF-free enqueue endpoint, so a test can enqueue over HTTP
# without a browser session.
ROOT_URLCONF = "tests.live.server_urls"
ATW = {**ATW, "SHUTDOWN_TIMEOUT": 0.2, "POLL_INTERVAL": 0.1}
