"""Cache keys: the default key, composition, components, and bad key functions."""

import pytest

from django_atw import InvalidCacheKeyError, compose_key_functions, extract_key_component, key_component
from django_atw.cache.keys import MAX_KEY_LENGTH, build_context, make_key


def test_keyword_argument_order_does_not_change_the_default_key():
    assert make_key("f", (1,), {"a": 1, "b": 2}) == make_key("f", (1,), {"b": 2, "a": 1})


def test_different_functions_with_equal_arguments_get_different_keys():
    assert make_key("square", (3,), {}) != make_key("double", (3,), {})


def test_different_arguments_get_different_keys():
    assert make_key("f", (1,), {}) != make_key("f", ("1",), {})
    assert make_key("f", (1, 2), {}) != make_key("f", (2, 1), {})
    assert make_key("f", (), {"a": 1}) != make_key("f", (), {"a": 2})


def test_progress_callback_never_enters_a_key():
    assert make_key("f", (1,), {"progress_callback": print}) == make_key("f", (1,), {})
    assert "progress_callback" not in build_context("f", (), {"progress_callback": print})["kwargs"]


def test_the_default_key_is_bounded_even_for_huge_arguments():
    key = make_key("f" * 300, ("x" * 10_000,), {"y": list(range(1000))})
    assert len(key) <= MAX_KEY_LENGTH


def test_extract_key_component_reads_dotted_paths_and_gives_none_for_missing_ones():
    context = build_context("get_user_data", (7, [8, 9]), {"user_id": 123}, "e-1", {"version": "v2"})
    assert extract_key_component("func_name")(context) == "get_user_data"
    assert extract_key_component("kwargs.user_id")(context) == "123"
    assert extract_key_component("metadata.version")(context) == "v2"
    assert extract_key_component("args.0")(context) == "7"
    assert extract_key_component("args.1.1")(context) == "9"
    assert extract_key_component("entry_id")(context) == "e-1"
    assert extract_key_component("kwargs.missing")(context) == "none"
    assert extract_key_component("metadata.version.deeper")(context) == "none"
    assert extract_key_component("args.5")(context) == "none"


def test_composed_functions_join_their_parts_as_in_the_readme():
    composite = compose_key_functions(
        extract_key_component("func_name"),
        extract_key_component("kwargs.user_id"),
        extract_key_component("metadata.version"),
    )
    context = build_context("get_user_data", (), {"user_id": 123}, None, {"version": "v2"})
    assert composite(context) == "get_user_data:123:v2"


def test_key_component_names_each_part_as_in_the_readme():
    @key_component("user")
    def user_component(context):
        return str(context["kwargs"].get("user_id", "anonymous"))

    @key_component("region")
    def region_component(context):
        return context["kwargs"].get("region", "global")

    @key_component()
    def timestamp(context):
        return context.get("metadata", {}).get("timestamp", "0")

    composite = compose_key_functions(user_component, region_component, timestamp)
    context = build_context("f", (), {"user_id": 123, "region": "eu-west"}, None, {"timestamp": "2023-04-01"})
    assert composite(context) == "user:123:region:eu-west:timestamp:2023-04-01"


@pytest.mark.parametrize("bad", [123, None, b"bytes", ("a",)])
def test_a_key_function_returning_a_non_string_raises_invalid_cache_key_error(bad):
    with pytest.raises(InvalidCacheKeyError, match="must return a str"):
        make_key("f", (), {}, lambda context: bad)


def test_a_component_returning_a_non_string_raises_invalid_cache_key_error():
    composite = compose_key_functions(extract_key_component("func_name"), lambda context: 5)
    with pytest.raises(InvalidCacheKeyError, match="must return a str"):
        make_key("f", (), {}, composite)


def test_an_empty_key_is_refused():
    with pytest.raises(InvalidCacheKeyError, match="empty"):
        make_key("f", (), {}, lambda context: "")


def test_an_over_long_custom_key_is_hashed_or_refused_when_validating():
    long_key = "k" * 400
    assert len(make_key("f", (), {}, lambda context: long_key)) <= MAX_KEY_LENGTH
    with pytest.raises(InvalidCacheKeyError, match="at most"):
        make_key("f", (), {}, lambda context: long_key, validate=True)
    with pytest.raises(InvalidCacheKeyError, match="whitespace"):
        make_key("f", (), {}, lambda context: "a key", validate=True)


def test_compose_key_functions_rejects_what_it_cannot_call():
    with pytest.raises(ValueError, match="at least one"):
        compose_key_functions()
    with pytest.raises(TypeError, match="argument 1"):
        compose_key_functions(extract_key_component("func_name"), "kwargs.user_id")


def test_sets_and_odd_dict_keys_give_stable_keys_for_direct_adapter_calls():
    words = [f"w{n}" for n in range(50)]
    assert make_key("f", ({*words},), {}) == make_key("f", ({*reversed(words)},), {})
    assert make_key("f", ({1: "a", "b": 2},), {}) == make_key("f", ({1: "a", "b": 2},), {})
    assert make_key("f", ({1: "a"},), {}) != make_key("f", ({"1": "a"},), {})
