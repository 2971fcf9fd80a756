"""On Django < 6.0, importing django_atw.backend says what it needs; the rest works as ever."""

from __future__ import annotations

import importlib
import sys

import django
import pytest
from django.core.exceptions import ImproperlyConfigured


@pytest.mark.skipif(django.VERSION >= (6, 0), reason="django.tasks exists from Django 6.0")
def test_importing_the_backend_before_django_6_says_it_needs_django_6():
    sys.modules.pop("django_atw.backend", None)
    with pytest.raises(ImproperlyConfigured, match=r"needs Django 6\.0 or newer") as caught:
        importlib.import_module("django_atw.backend")
    assert isinstance(caught.value, ImportError)
