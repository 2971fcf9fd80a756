"""What the database can store: results checked, texts cleaned."""

import json

import pytest

from django_atw.engine.storable import json_problem, storable_error_type, storable_text


@pytest.mark.parametrize(
    ("value", "problem"),
    [
        ("plain", None),
        ("emoji 😀 and ü", None),  # a surrogate pair in JSON is one character: stored
        ("a backslash then u0000: \\u0000", None),  # escaped backslash, not NUL
        ({"nested": ["a\x00b"]}, "NUL"),
        ("\ud800", "surrogate"),  # a high half alone, at the end
        ("\ud800x", "surrogate"),  # a high half followed by something else
        ("\udc00", "surrogate"),  # a low half alone
        ("\ud800\\udc00", "surrogate"),  # a high half, then an escaped backslash and text
    ],
)
def test_json_problem_names_what_postgresql_refuses_in_a_result(value, problem):
    found = json_problem(json.dumps(value))
    assert (found is None) if problem is None else (problem in (found or ""))


def test_storable_text_drops_nul_and_escapes_lone_surrogates():
    assert storable_text("a\x00b\ud800c😀") == "ab\\ud800c😀"
    assert storable_text("plain") == "plain"


def test_an_error_type_is_cut_to_its_column():
    assert storable_error_type("E" * 300 + "\x00") == "E" * 255
