"""Enqueue a task from another process: ``python -m tests.helpers.enqueue_in_subprocess DB LABEL``.

DB is the database NAME the parent test uses (pytest-django's test database), so the row
lands where the parent's worker claims.
"""

import os
import sys

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "tests.settings")

import django
from django.conf import settings

settings.DATABASES["default"]["NAME"] = sys.argv[1]
django.setup()

from django_atw import enqueue  # noqa: E402

print(enqueue("record", sys.argv[2], metadata={"pid": os.getpid()}), flush=True)
