"""msgpack values: extension types round-trip; what cannot be stored is refused clearly."""

import datetime
import decimal
import uuid

import pytest

from django_atw.cache.serialization import SerializationError, dumps, loads

VALUES = [
    None,
    True,
    42,
    1.5,
    "text",
    b"\x00bytes",
    [1, "a", None],
    {"nested": {"list": [1, 2]}, "n": 1},
    datetime.datetime(2024, 5, 1, 12, 30, 15, 123456, tzinfo=datetime.UTC),
    datetime.datetime(2024, 5, 1, 12, 30),
    datetime.date(2024, 5, 1),
    datetime.time(23, 59, 1),
    datetime.timedelta(days=2, seconds=5, microseconds=7),
    uuid.UUID("b4fd93c8-57e3-4fea-bcc6-04be7499b28f"),
    decimal.Decimal("3.14159265358979323846"),
    {1, 2, 3},
    frozenset({"a", "b"}),
    {"when": datetime.date(2020, 1, 1), "ids": {uuid.UUID(int=1)}},
]


@pytest.mark.parametrize("value", VALUES, ids=lambda value: type(value).__name__)
def test_supported_values_round_trip_with_their_types(value):
    back = loads(dumps(value))
    assert back == value
    assert type(back) is type(value)


def test_tuples_come_back_as_lists():
    assert loads(dumps((1, (2, 3)))) == [1, [2, 3]]


def test_an_unsupported_value_raises_serialization_error_naming_its_type():
    class Custom:
        pass

    with pytest.raises(SerializationError, match="Custom cannot be cached"):
        dumps({"x": Custom()})


def test_a_corrupt_entry_raises_serialization_error():
    with pytest.raises(SerializationError, match="corrupt"):
        loads(b"\xc1\xc1")
