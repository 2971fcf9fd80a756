import logging

import pytest

from django_atw import get_all_task_types, get_task_function, register_task, task
from django_atw.exceptions import TaskDefinitionError
from django_atw.registry import resolve, type_of, unregister_task
from tests.sampleapp import tasks as sample


@pytest.fixture
def cleanup_types():
    names: list[str] = []
    yield names
    for name in names:
        unregister_task(name)


def test_tasks_modules_of_installed_apps_are_autodiscovered():
    assert get_task_function("echo") is sample.echo
    assert "process_data" in get_all_task_types()


def test_decorator_registers_and_returns_the_function(cleanup_types):
    cleanup_types.append("t.decorated")

    @task("t.decorated")
    async def decorated() -> int:
        return 1

    assert get_task_function("t.decorated") is decorated
    assert type_of(decorated) == "t.decorated"


def test_registering_a_type_again_replaces_it_and_warns_on_a_different_function(cleanup_types, caplog):
    cleanup_types.append("t.collide")

    async def first() -> None: ...

    async def second() -> None: ...

    register_task("t.collide", first)
    with caplog.at_level(logging.WARNING, logger="django_atw.registry"):
        register_task("t.collide", second)
    assert get_task_function("t.collide") is second
    [record] = [r for r in caplog.records if "t.collide" in r.getMessage()]
    assert "first" in record.getMessage() and "second" in record.getMessage()


def test_registering_the_same_function_twice_does_not_warn(cleanup_types, caplog):
    cleanup_types.append("t.same")

    async def same() -> None: ...

    with caplog.at_level(logging.WARNING, logger="django_atw.registry"):
        register_task("t.same", same)
        register_task("t.same", same)
    assert not caplog.records


def test_a_sync_function_is_refused_with_type_error():
    def not_async() -> None: ...

    with pytest.raises(TypeError, match="not an async function"):
        register_task("t.sync", not_async)  # type: ignore[arg-type]
    assert get_task_function("t.sync") is None


@pytest.mark.parametrize("name", ["", "   ", None, 3])
def test_an_empty_or_non_string_type_is_refused_with_value_error(name):
    async def fn() -> None: ...

    with pytest.raises(ValueError, match="non-empty string"):
        register_task(name, fn)


def test_bare_decorator_without_a_type_name_is_refused():
    with pytest.raises(TypeError, match="needs a task type name"):

        @task  # type: ignore[arg-type]
        async def nameless() -> None: ...


def test_unregistered_module_level_function_is_stored_by_dotted_path():
    path = type_of(sample.unregistered_but_importable)
    assert path == "tests.sampleapp.tasks.unregistered_but_importable"
    assert resolve(path) is sample.unregistered_but_importable


def test_a_registration_wins_over_a_dotted_path_resolved_before_it():
    path = "tests.sampleapp.tasks.unregistered_but_importable"
    assert resolve(path) is sample.unregistered_but_importable  # remembered from here on

    async def replacement(x: int) -> int:
        return x

    register_task(path, replacement)
    try:
        assert resolve(path) is replacement
    finally:
        unregister_task(path)
    assert resolve(path) is sample.unregistered_but_importable


def test_a_nested_function_has_no_name_a_worker_could_find():
    async def nested() -> None: ...

    with pytest.raises(TaskDefinitionError, match="neither registered nor importable"):
        type_of(nested)


def test_resolve_refuses_paths_that_are_not_async_functions():
    assert resolve("os.path.join") is None
    assert resolve("no.such.module.fn") is None
    assert resolve("nodots") is None


def test_a_type_its_module_registers_when_imported_resolves_by_that_path():
    path = "tests.sampleapp.self_registering.runner"
    try:
        func = resolve(path)
        assert func is not None and func.__name__ == "_run"
    finally:
        unregister_task(path)


def test_a_bad_cron_string_on_task_is_refused_at_decoration_naming_it():
    from django_atw.exceptions import ScheduleError

    with pytest.raises(
        ScheduleError, match=r"@task\('tick', schedule=\.\.\.\): '\* \* \*' is not a valid cron"
    ):

        @task("tick", schedule="* * *")
        async def tick() -> None: ...


def test_a_schedule_on_task_declares_a_code_schedule_named_after_the_type():
    from django_atw import schedules

    @task("tick_declared", schedule="*/5 * * * *")
    async def tick() -> None: ...

    try:
        declared = schedules.declared()["tick_declared"]
        assert (declared.task_type, declared.cron, declared.args) == ("tick_declared", "*/5 * * * *", ())
    finally:
        schedules.forget("tick_declared")
        unregister_task("tick_declared")


def test_periodic_refuses_a_second_schedule_of_the_same_name_with_other_values():
    from django_atw import ScheduleError, periodic, schedules

    periodic("noop", "0 3 * * *", name="twice")
    try:
        with pytest.raises(ScheduleError, match="'twice' is declared twice"):
            periodic("noop", "0 4 * * *", name="twice")
    finally:
        schedules.forget("twice")
