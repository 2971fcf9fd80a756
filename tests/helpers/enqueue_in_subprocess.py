"""Enqueue a task from another process: ``python -m tests.helpers.enqueue_in_subprocess LABEL``.

Run with ATW_TEST_DB_NAME set to the parent test's database, so the row lands where the
parent's worker claims.
"""

import os
import sys

import django

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "tests.settings")
django.setup()

from django_atw import enqueue  # noqa: E402

print(enqueue("record", sys.argv[1], metadata={"pid": os.getpid()}), flush=True)
