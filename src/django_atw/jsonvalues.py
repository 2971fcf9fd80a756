"""Check that a value can be stored as task JSON: its types, depth, size and text.

Arguments, keyword arguments, metadata and results all cross the database as JSON; a value
that JSON, the column or a client cannot hold is refused with the path to it (``args[0]['k']``)
and the limit it broke, before anything is stored.
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from typing import Any

from .conf import get_settings
from .exceptions import TaskArgumentError

# Deepest nesting of containers accepted in an argument, a kwarg, the metadata or a result.
# Real payloads nest a handful of levels; pydantic refuses to serialise beyond ~250 (a stored
# row that deep would break every API answer that lists it), and Python's own recursion limit
# lies beyond that. 32 leaves generous room for real data and stays far below both.
MAX_JSON_DEPTH = 32
# Integers in JSON arguments: SQLite's JSON functions turn larger ones into floats (losing
# digits), and Python refuses to print ints of more than 4,300 digits; 64 bits is what both
# databases and every JSON client keep exactly (JavaScript up to 2**53, though).
_INT64_MIN, _INT64_MAX = -(2**63), 2**63 - 1
# Upper bounds of the JSON text of one character and of one number, for the cheap size bound:
# ensure_ascii writes a character as at most 6 bytes (\uXXXX), a float as at most 24.
_JSON_ESCAPE_WIDTH = 6
_JSON_NUMBER_WIDTH = 24


def text_problem(text: str) -> str | None:
    """Name what in ``text`` no database column can hold (NUL, a lone surrogate), or return None.

    PostgreSQL refuses NUL in text and JSON, and no driver encodes a lone surrogate; SQLite
    stores both, so a task that works on a developer's SQLite would fail on PostgreSQL.
    """
    if "\x00" in text:
        return "a NUL character (\\u0000)"
    if not text.isascii():
        try:
            text.encode("utf-8")
        except UnicodeEncodeError:
            return "an unpaired surrogate (\\ud800-\\udfff)"
    return None


UNSTORABLE_TEXT = "which the database cannot store. Remove it, or encode binary data (for example as base64)."


class _Refused(Exception):
    """A value ``check_json`` refuses; ``path`` is filled in, innermost first, as it unwinds."""

    def __init__(self, problem: str) -> None:
        self.problem = problem
        self.path: list[str | int] = []


class _TooDeep(Exception):
    """Raised past ``MAX_JSON_DEPTH``; the caller measures the real depth only then."""


def _walk(value: Any, depth: int) -> int:
    """Check one JSON value and return an upper bound of its ``json.dumps`` length.

    ``depth`` is the nesting of the containers around ``value``; the recursion stops at
    ``MAX_JSON_DEPTH``, so no value can exhaust the interpreter's stack. Paths are collected
    only on the way out of a refusal, so a valid value costs no string formatting.
    """
    if isinstance(value, str):
        problem = text_problem(value)
        if problem is not None:
            raise _Refused(f"holds {problem}, {UNSTORABLE_TEXT}")
        return _JSON_ESCAPE_WIDTH * len(value) + 2
    if value is None or isinstance(value, bool):
        return 5
    if isinstance(value, int):
        if not _INT64_MIN <= value <= _INT64_MAX:
            raise _Refused(
                f"is an integer of {value.bit_length()} bits, outside the signed 64-bit range "
                f"({_INT64_MIN} to {_INT64_MAX}) that is accepted. Pass it as a string."
            )
        return _JSON_NUMBER_WIDTH
    if isinstance(value, float):
        if not math.isfinite(value):
            raise _Refused(f"is {value!r}, which is not a JSON value. Pass a finite number.")
        return _JSON_NUMBER_WIDTH
    if isinstance(value, (list, tuple)):
        if depth >= MAX_JSON_DEPTH:
            raise _TooDeep
        size = 2
        for index, item in enumerate(value):
            try:
                size += _walk(item, depth + 1) + 2
            except _Refused as exc:
                exc.path.append(index)
                raise
        return size
    if isinstance(value, dict):
        if depth >= MAX_JSON_DEPTH:
            raise _TooDeep
        size = 2
        for key, item in value.items():
            if not isinstance(key, str):
                raise _Refused(
                    f"has the key {key!r} of type {type(key).__name__}; JSON object keys "
                    "must be strings. Convert the keys with str()."
                )
            problem = text_problem(key)
            if problem is not None:
                raise _Refused(f"has the key {key!r}, which holds {problem}, {UNSTORABLE_TEXT}")
            try:
                size += _walk(item, depth + 1) + _JSON_ESCAPE_WIDTH * len(key) + 6
            except _Refused as exc:
                exc.path.append(key)
                raise
        return size
    raise _Refused(
        f"is a {type(value).__name__}, which is not a JSON value. Task arguments are stored "
        "as JSON: pass str, int, float, bool, None, lists or dicts (for example date.isoformat() "
        "for a date) and convert inside the task."
    )


def json_depth(value: Any, *, stop_after: int | None = None) -> int:
    """Return how many containers deep ``value`` nests (0 for a scalar), without recursion.

    With ``stop_after``, return as soon as the depth exceeds it (the first depth found beyond).
    """
    deepest = 0
    stack: list[tuple[Any, int]] = [(value, 1)]
    while stack:
        item, depth = stack.pop()
        children = item.values() if isinstance(item, dict) else item
        if isinstance(item, (list, tuple, dict)):
            if depth > deepest:
                deepest = depth
                if stop_after is not None and deepest > stop_after:
                    return deepest
            stack.extend((child, depth + 1) for child in children if isinstance(child, (list, tuple, dict)))
    return deepest


def _where(where: str, path: Sequence[str | int]) -> str:
    return where + "".join(f"[{part!r}]" for part in path)


def check_json(value: Any, where: str, path: tuple[str | int, ...] | None = None) -> int:
    """Raise ``TaskArgumentError`` naming ``where`` (e.g. ``kwargs['when']``) if not JSON.

    Tuples are accepted and come back as lists; dict keys must be strings (JSON would turn
    ``{1: x}`` into ``{"1": x}`` silently); NaN and infinities are refused (not JSON); so is
    nesting deeper than ``MAX_JSON_DEPTH``. ``path`` locates ``value`` for the error's ``path``
    (default: ``(where,)``). Returns an upper bound of the value's JSON length in bytes.
    """
    root = path if path is not None else (where,)
    try:
        return _walk(value, 0)
    except _Refused as exc:
        inner = exc.path[::-1]
        raise TaskArgumentError(f"{_where(where, inner)} {exc.problem}", path=(*root, *inner)) from None
    except _TooDeep:
        raise TaskArgumentError(
            f"{where} is nested {json_depth(value)} levels deep; at most {MAX_JSON_DEPTH} levels are "
            "accepted. Pass a flatter structure, or store the data elsewhere and pass a reference.",
            path=root,
        ) from None


def check_size(arg_list: list[Any], kwargs: dict[str, Any], meta: dict[str, Any], bound: int) -> None:
    """Refuse arguments larger than ``ATW["MAX_ARGUMENT_BYTES"]`` as JSON.

    ``bound`` is ``check_json``'s upper bound; only when it exceeds the limit are the arguments
    encoded to measure them exactly, so an ordinary call never pays for a second encoding.
    """
    limit = get_settings().MAX_ARGUMENT_BYTES
    if bound <= limit:
        return
    sizes = {
        name: len(json.dumps(value))
        for name, value in (("args", arg_list), ("kwargs", kwargs), ("metadata", meta))
    }
    total = sum(sizes.values())
    if total > limit:
        largest = max(sizes, key=sizes.__getitem__)
        raise TaskArgumentError(
            f"args, kwargs and metadata take {total:,} bytes as JSON; at most "
            f"ATW['MAX_ARGUMENT_BYTES'] = {limit:,} are accepted ({largest} takes {sizes[largest]:,}). "
            "Store large data elsewhere (a file, object storage, a model) and pass a reference to it.",
            path=(largest,),
        )
