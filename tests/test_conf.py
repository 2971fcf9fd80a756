from datetime import timedelta

import pytest
from django.core import checks
from django.test import override_settings

from django_atw.checks import check_settings, sqlite_mode_warnings
from django_atw.conf import get_settings
from django_atw.exceptions import ConfigurationError


def test_defaults_apply_when_atw_is_absent():
    with override_settings(ATW=None):
        conf = get_settings()
    assert conf.MAX_WORKERS == 10
    assert conf.PROGRESS_INTERVAL == 0.1


def test_override_settings_is_seen():
    with override_settings(ATW={"MAX_WORKERS": 3}):
        assert get_settings().MAX_WORKERS == 3
    assert get_settings().MAX_WORKERS == 10


@pytest.mark.parametrize(
    ("atw", "key"),
    [
        ({"MAX_WORKERS": -1}, "MAX_WORKERS"),
        ({"POLL_INTERVAL": "fast"}, "POLL_INTERVAL"),
        ({"MAX_WORKER": 2}, "MAX_WORKER"),
        ({"WORKER_RETENTION": -1}, "WORKER_RETENTION"),
        ({"WORKER_RETENTION": "a day"}, "WORKER_RETENTION"),
        ({"WORKER_RETENTION": True}, "WORKER_RETENTION"),
    ],
)
def test_a_bad_value_is_a_system_check_error_naming_the_key(atw, key):
    with override_settings(ATW=atw):
        errors = check_settings()
        with pytest.raises(ConfigurationError, match=key):
            get_settings()
    assert len(errors) == 1
    assert f'ATW["{key}"]' in errors[0].msg


def test_the_checks_are_registered_with_django():
    registered = checks.registry.registry.get_checks()
    assert check_settings in registered


def test_a_non_dict_setting_is_refused():
    with override_settings(ATW=[1]), pytest.raises(ConfigurationError, match="must be a dict"):
        get_settings()


def test_sqlite_without_immediate_transactions_warns():
    [warning] = sqlite_mode_warnings({"ENGINE": "django.db.backends.sqlite3", "NAME": "x.sqlite3"})
    assert warning.id == "django_atw.W001"


def test_sqlite_with_immediate_transactions_and_postgres_do_not_warn():
    immediate = {"ENGINE": "django.db.backends.sqlite3", "OPTIONS": {"transaction_mode": "IMMEDIATE"}}
    assert sqlite_mode_warnings(immediate) == []
    assert sqlite_mode_warnings({"ENGINE": "django.db.backends.postgresql"}) == []


@pytest.mark.parametrize(
    ("value", "seconds"), [(None, 86400.0), (3600, 3600.0), (timedelta(days=2), 172800.0)]
)
def test_worker_retention_takes_seconds_or_a_timedelta_and_defaults_to_a_day(value, seconds):
    with override_settings(ATW={} if value is None else {"WORKER_RETENTION": value}):
        retention = get_settings().WORKER_RETENTION
    assert retention == seconds
