"""What the add path refuses before anything is stored, and the words it uses to say so."""

from __future__ import annotations

from typing import Any

import pytest
from django.test import override_settings

from django_atw import enqueue
from django_atw.exceptions import TaskArgumentError
from django_atw.models import TaskRecord
from django_atw.validation import MAX_JSON_DEPTH, build
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
