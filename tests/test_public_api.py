import django_atw


def test_all_is_complete_and_sorted():
    public = {name for name in django_atw._LOCATIONS}
    assert django_atw.__all__ == sorted(django_atw.__all__)
    assert set(django_atw.__all__) == public


def test_every_public_name_resolves():
    for name in django_atw.__all__:
        assert getattr(django_atw, name) is not None


def test_an_unknown_name_raises_attribute_error():
    import pytest

    with pytest.raises(AttributeError, match="no attribute 'nope'"):
        django_atw.nope  # noqa: B018


def test_the_original_exception_classes_keep_their_meaning():
    import asyncio

    assert issubclass(django_atw.TaskTimeoutError, django_atw.TaskError)
    assert issubclass(django_atw.TaskExecutionError, django_atw.TaskError)
    assert issubclass(django_atw.TaskCancellationError, asyncio.CancelledError)
    assert issubclass(django_atw.TaskDefinitionError, ValueError)


def test_a_status_and_its_string_are_interchangeable_in_sets_and_dicts():
    from django_atw import TaskStatus

    assert "pending" in {TaskStatus.PENDING, TaskStatus.RUNNING}
    assert TaskStatus.FAILED in {"failed"}
    assert {"completed": 1}[TaskStatus.COMPLETED] == 1
    assert TaskStatus.COMPLETED.is_terminal and not TaskStatus.RUNNING.is_terminal
