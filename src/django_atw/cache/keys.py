"""Cache keys: the default key, composable key functions, and key checks.

A key function receives a context dict and returns a string::

    {"func_name": "get_user_data",         # the task type name
     "args": (1, 2), "kwargs": {"user_id": 123},
     "entry_id": "get_user_data:<task id>", # or None
     "metadata": {"version": "v2"}}

The default key covers the task type, the positional arguments and the keyword arguments
sorted by name, hashed, so two functions never share an entry and ``f(a=1, b=2)`` hits
``f(b=2, a=1)``. ``progress_callback`` never enters a key: the worker supplies it per run.
"""

from __future__ import annotations

import functools
import hashlib
import json
from collections.abc import Callable, Mapping, Sequence
from typing import Any, TypeAlias

from ..exceptions import InvalidCacheKeyError

KeyContext: TypeAlias = dict[str, Any]
KeyFunction: TypeAlias = Callable[[KeyContext], str]

# Keys are stored in a 255-character column; a longer key is shortened to its head and a hash.
MAX_KEY_LENGTH = 250
_HEAD_LENGTH = 150
# What extract_key_component gives for a path that leads nowhere, as the original did.
MISSING = "none"


def build_context(
    func_name: str,
    args: Sequence[Any],
    kwargs: Mapping[str, Any],
    entry_id: str | None = None,
    metadata: Mapping[str, Any] | None = None,
) -> KeyContext:
    """Return the context a key function receives (``progress_callback`` left out)."""
    return {
        "func_name": func_name,
        "args": tuple(args),
        "kwargs": {name: value for name, value in kwargs.items() if name != "progress_callback"},
        "entry_id": entry_id,
        "metadata": dict(metadata or {}),
    }


def _dumps(value: Any) -> str:
    return json.dumps(_normal(value), sort_keys=True, separators=(",", ":"), default=_canonical)


def _normal(value: Any) -> Any:
    """Make a value JSON-ready without losing what tells two calls apart.

    A dict with a non-string key becomes a tagged, sorted list of pairs (JSON would turn
    ``{1: x}`` into ``{"1": x}``); other values JSON cannot hold are tagged by ``_canonical``.
    """
    if isinstance(value, dict):
        if all(isinstance(key, str) for key in value):
            return {key: _normal(item) for key, item in value.items()}
        return ["<dict>", sorted([_dumps(key), _dumps(item)] for key, item in value.items())]
    if isinstance(value, (list, tuple)):
        return [_normal(item) for item in value]
    return value


def _canonical(value: Any) -> str:
    """Type-tagged text for values JSON cannot hold, so that ``1`` and ``"1"`` stay apart.

    Sets are written sorted: their iteration order differs between processes.
    """
    kind = f"{type(value).__module__}.{type(value).__qualname__}"
    if isinstance(value, (set, frozenset)):
        return f"<{kind}:{','.join(sorted(_dumps(item) for item in value))}>"
    return f"<{kind}:{value!r}>"


def default_key(context: KeyContext) -> str:
    """Return ``<func_name>:<sha256 of func_name, args and kwargs sorted by name>``."""
    payload = _dumps([context["func_name"], list(context["args"]), context["kwargs"]])
    digest = hashlib.sha256(payload.encode()).hexdigest()
    return f"{context['func_name'][:_HEAD_LENGTH]}:{digest}"


def _check(key: Any, source: str, *, validate: bool) -> str:
    if not isinstance(key, str):
        raise InvalidCacheKeyError(
            f"{source} returned {type(key).__name__} {key!r:.80}; a cache key function must return a str."
        )
    if not key:
        raise InvalidCacheKeyError(f"{source} returned an empty string; return a non-empty cache key.")
    if validate:
        if len(key) > MAX_KEY_LENGTH:
            raise InvalidCacheKeyError(
                f"{source} returned a key of {len(key)} characters; at most {MAX_KEY_LENGTH} are allowed."
            )
        if any(ch.isspace() or not ch.isprintable() for ch in key):
            raise InvalidCacheKeyError(
                f"{source} returned {key!r:.80}, which contains whitespace or control characters."
            )
    elif len(key) > MAX_KEY_LENGTH:
        return f"{key[:_HEAD_LENGTH]}:{hashlib.sha256(key.encode()).hexdigest()}"
    checked: str = key
    return checked


def make_key(
    func_name: str,
    args: Sequence[Any],
    kwargs: Mapping[str, Any],
    cache_key_fn: KeyFunction | None = None,
    entry_id: str | None = None,
    metadata: Mapping[str, Any] | None = None,
    *,
    validate: bool = False,
) -> str:
    """Return the cache key of one call, raising ``InvalidCacheKeyError`` for an unusable one.

    Without ``validate`` an over-long custom key is shortened to its head and a hash; with it,
    over-long keys and keys holding whitespace are refused.
    """
    context = build_context(func_name, args, kwargs, entry_id, metadata)
    if cache_key_fn is None:
        return default_key(context)
    source = f"cache_key_fn {getattr(cache_key_fn, '__name__', repr(cache_key_fn))}"
    return _check(cache_key_fn(context), source, validate=validate)


def extract_key_component(path: str) -> KeyFunction:
    """Return a key function giving the value at a dotted ``path`` of the context, as text.

    ``"func_name"``, ``"entry_id"``, ``"args.0"``, ``"kwargs.user_id"``, ``"metadata.version"``;
    a path that leads nowhere gives ``"none"``.
    """
    if not isinstance(path, str) or not path:
        raise ValueError(f"extract_key_component takes a dotted path such as 'kwargs.user_id', got {path!r}.")
    parts = path.split(".")

    def component(context: KeyContext) -> str:
        value: Any = context
        for part in parts:
            if isinstance(value, Mapping):
                value = value.get(part)
            elif isinstance(value, Sequence) and not isinstance(value, str) and part.lstrip("-").isdigit():
                index = int(part)
                value = value[index] if -len(value) <= index < len(value) else None
            else:
                value = None
            if value is None:
                return MISSING
        return str(value)

    component.__name__ = f"extract_{path.replace('.', '_')}"
    return component


def compose_key_functions(*functions: KeyFunction, separator: str = ":") -> KeyFunction:
    """Return a key function joining the parts that ``functions`` return with ``separator``."""
    if not functions:
        raise ValueError("compose_key_functions needs at least one key function.")
    for index, function in enumerate(functions):
        if not callable(function):
            raise TypeError(f"compose_key_functions argument {index} is {function!r}, not a callable.")

    def composite(context: KeyContext) -> str:
        parts = []
        for function in functions:
            part = function(context)
            source = f"key component {getattr(function, '__name__', repr(function))}"
            parts.append(_check(part, source, validate=False))
        return separator.join(parts)

    return composite


def key_component(name: str | None = None) -> Callable[[KeyFunction], KeyFunction]:
    """Decorate a key function so that its part reads ``<name>:<value>``.

    ``name`` defaults to the function's own name: ``@key_component()`` on ``timestamp``
    gives ``"timestamp:2023-04-01"``.
    """

    def decorator(function: KeyFunction) -> KeyFunction:
        label = name if name is not None else function.__name__

        @functools.wraps(function)
        def named(context: KeyContext) -> str:
            value = function(context)
            source = f"key component {function.__name__}"
            return f"{label}:{_check(value, source, validate=False)}"

        return named

    return decorator
