"""What the add path refuses before anything is stored, and the words it uses to say so."""

from __future__ import annotations

import datetime as dt
import re
from typing import Any

import pytest
from django.test import override_settings

from django_atw import enqueue
from django_atw.exceptions import TaskArgumentError
from django_atw.jsonvalues import MAX_JSON_DEPTH
from django_atw.models import TaskRecord
from django_atw.validation import build
from tests.sampleapp import tasks


def nested(depth: int) -> Any:
    """A dict nested ``depth`` levels deep (``{}`` is one level)."""
    value: dict[str, Any] = {}
    for _ in range(depth - 1):
        value = {"a": value}
    return value


def refusal(*args: Any, **kwargs: Any) -> TaskArgumentError:
    with pytest.raises(TaskArgumentError) as excinfo:
        build(tasks.echo, args, kwargs.pop("kwargs", {}), **kwargs)
    return excinfo.value


# --- depth and size of JSON arguments -------------------------------------------------------


@pytest.mark.parametrize("depth", [MAX_JSON_DEPTH + 1, 600, 1000, 100_000])
def test_metadata_nested_too_deep_is_refused_naming_the_depth_and_the_limit(depth):
    exc = refusal(metadata=nested(depth))
    assert str(exc).startswith(
        f"metadata is nested {depth} levels deep; at most {MAX_JSON_DEPTH} levels are accepted."
    )
    assert exc.path == ("metadata",)


@pytest.mark.parametrize(
    ("call", "where"),
    [
        ({"args": ([nested(600)],)}, "args[0]"),
        ({"kwargs": {"deep": nested(600)}}, "kwargs['deep']"),
    ],
)
def test_arguments_nested_too_deep_are_refused_naming_the_argument(call, where):
    exc = refusal(*call.get("args", ()), kwargs=call.get("kwargs", {}))
    assert str(exc).startswith(
        f"{where} is nested 601 levels deep" if "args" in call else f"{where} is nested 600"
    )


def test_arguments_nested_as_deep_as_the_limit_are_accepted():
    new = build(
        tasks.echo, (nested(MAX_JSON_DEPTH),), {"k": nested(MAX_JSON_DEPTH)}, metadata=nested(MAX_JSON_DEPTH)
    )
    assert new.metadata == nested(MAX_JSON_DEPTH)


@override_settings(ATW={"MAX_ARGUMENT_BYTES": 1000})
def test_arguments_larger_than_max_argument_bytes_are_refused_naming_the_largest():
    exc = refusal("x" * 100, kwargs={"big": "é" * 200}, metadata={"m": "y" * 100})
    assert str(exc).startswith(
        "args, kwargs and metadata take 1,424 bytes as JSON; at most ATW['MAX_ARGUMENT_BYTES'] = 1,000 "
        "are accepted (kwargs takes 1,211)."
    )
    assert exc.path == ("kwargs",)


@override_settings(ATW={"MAX_ARGUMENT_BYTES": 1000})
def test_arguments_up_to_max_argument_bytes_are_accepted():
    build(tasks.echo, ("x" * 900,), {})


@pytest.mark.django_db(transaction=True)
def test_enqueue_refuses_deep_metadata_and_stores_nothing():
    with pytest.raises(TaskArgumentError, match="metadata is nested 1000 levels deep"):
        enqueue(tasks.echo, metadata=nested(1000))
    assert TaskRecord.objects.count() == 0


# --- task ids -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "task_id",
    [
        "../../admin",
        "a/b",
        ".",
        "..",
        "with space",
        "tab\there",
        "nul\x00",
        "line\nbreak",
        "é",
        "x" * 256,
        "",
    ],
)
def test_a_task_id_outside_the_alphabet_is_refused_naming_the_rule(task_id):
    exc = refusal(task_id=task_id)
    assert exc.path == ("task_id",)
    assert "task_id must be 1 to 255 of the characters A-Z a-z 0-9 . _ : -" in str(exc)


@pytest.mark.parametrize("task_id", ["a", "custom-1", "job:2024-01-01.retry_2", "...", "x" * 255])
def test_a_task_id_inside_the_alphabet_is_accepted(task_id):
    assert build(tasks.echo, (), {}, task_id=task_id).id == task_id


# --- values the database cannot hold ---------------------------------------------------------


@pytest.mark.parametrize(
    ("options", "path", "words"),
    [
        ({"priority": 2**31}, ("priority",), "priority must be an int from -2147483648 to 2147483647"),
        ({"priority": -(2**31) - 1}, ("priority",), "priority must be an int from"),
        ({"cache_ttl": 2**40}, ("cache_ttl",), "cache_ttl must be an int of seconds from 0 to 2147483647"),
        ({"timeout": 1e300}, ("timeout",), "timeout must be a positive number of seconds up to 2147483647"),
        ({"timeout": float("nan")}, ("timeout",), "timeout must be a positive number"),
        ({"queue": "q\x00"}, ("queue",), "queue holds a NUL character"),
        ({"queue": "q\ud800"}, ("queue",), "queue holds an unpaired surrogate"),
        ({"metadata": {"k": "v\x00"}}, ("metadata", "k"), "metadata['k'] holds a NUL character"),
        ({"metadata": {"k\x00": 1}}, ("metadata",), "metadata has the key 'k\\x00', which holds a NUL"),
        ({"metadata": {"\udc80": 1}}, ("metadata",), "which holds an unpaired surrogate"),
    ],
)
def test_an_option_the_database_cannot_hold_is_refused_naming_it_and_the_limit(options, path, words):
    exc = refusal(**options)
    assert words in str(exc)
    assert exc.path == path


@pytest.mark.parametrize(
    ("args", "kwargs", "path", "words"),
    [
        (("a\x00",), {}, ("args", 0), "args[0] holds a NUL character"),
        ((), {"s": ["\ud83d"]}, ("kwargs", "s", 0), "kwargs['s'][0] holds an unpaired surrogate"),
        (
            (10**5000,),
            {},
            ("args", 0),
            "args[0] is an integer of 16610 bits, outside the signed 64-bit range",
        ),
        ((2**63,), {}, ("args", 0), "args[0] is an integer of 64 bits, outside"),
    ],
)
def test_an_argument_the_database_cannot_hold_is_refused_naming_it(args, kwargs, path, words):
    exc = refusal(*args, kwargs=kwargs)
    assert words in str(exc)
    assert exc.path == path


def test_the_64_bit_integer_range_and_paired_surrogates_are_accepted():
    new = build(tasks.echo, (2**63 - 1, -(2**63), "😀", "é"), {})
    assert new.args == [2**63 - 1, -(2**63), "😀", "é"]


@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize("created_by", [987654, "nobody"])
def test_enqueue_refuses_an_unknown_created_by_and_stores_nothing(created_by):
    with pytest.raises(TaskArgumentError, match="created_by") as excinfo:
        enqueue(tasks.noop, created_by=created_by)
    assert excinfo.value.path == ("created_by",)
    assert TaskRecord.objects.count() == 0


@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize(
    "options", [{"priority": 2**31}, {"cache_ttl": 2**40}, {"task_id": "a\x00"}, {"metadata": {"k": "\x00"}}]
)
def test_enqueue_raises_task_argument_error_not_a_database_error(options):
    with pytest.raises(TaskArgumentError):
        enqueue(tasks.noop, **options)
    assert TaskRecord.objects.count() == 0


# --- calls that do not fit the function's signature ------------------------------------------


@pytest.mark.parametrize(
    ("func", "args", "kwargs", "words"),
    [
        (tasks.no_progress_param, (), {"x": 1, "y": 1}, "got an unexpected keyword argument 'y'"),
        (tasks.no_progress_param, (1, 2), {}, "too many positional arguments"),
        (tasks.no_progress_param, (), {}, "missing a required argument: 'x'"),
        ("no_progress_param", (), {"x": 1, "y": 1}, "got an unexpected keyword argument 'y'"),
        ("tests.sampleapp.tasks.unregistered_but_importable", (), {}, "missing a required argument: 'x'"),
    ],
)
def test_a_call_that_does_not_fit_the_signature_is_refused_when_enqueued(func, args, kwargs, words):
    with pytest.raises(TaskArgumentError, match=re.escape(words)):
        build(func, args, kwargs)


@pytest.mark.parametrize(
    ("func", "args", "kwargs"),
    [
        (tasks.echo, (1, 2), {"anything": 3}),
        (tasks.kwargs_progress, (), {"whatever": 1}),
        (tasks.process_data, ([1],), {}),
        (tasks.wait_for_gate, (), {"name": "g"}),
    ],
)
def test_a_call_that_fits_the_signature_is_accepted(func, args, kwargs):
    build(func, args, kwargs)


# --- run_after ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "run_after",
    [
        dt.datetime(9999, 12, 31, 23, 59, 59, tzinfo=dt.timezone(-dt.timedelta(hours=23, minutes=59))),
        dt.datetime(9999, 12, 31, tzinfo=dt.UTC),
        dt.datetime(1, 1, 1, tzinfo=dt.timezone(dt.timedelta(hours=1))),
        dt.datetime(1, 1, 1, tzinfo=dt.UTC),
        dt.timedelta(days=999_999_999),
        dt.timedelta(days=-999_999_999),
    ],
)
def test_a_run_after_out_of_range_is_refused_naming_the_range(run_after):
    exc = refusal(run_after=run_after)
    assert exc.path == ("run_after",)
    assert "run_after must fall between 0001-01-02 and 9999-12-30 (UTC)" in str(exc)


@pytest.mark.django_db(transaction=True)
def test_enqueue_with_a_run_after_out_of_range_stores_nothing():
    late = dt.datetime(9999, 12, 31, 23, 59, 59, tzinfo=dt.timezone(-dt.timedelta(hours=23, minutes=59)))
    with pytest.raises(TaskArgumentError, match="run_after"):
        enqueue(tasks.noop, run_after=late)
    assert TaskRecord.objects.count() == 0
