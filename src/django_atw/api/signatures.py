"""What a task function accepts, read from its signature, as a JSON Schema.

Whether a call binds to the signature is checked by ``validation.binding_error``, for every door.

The worker passes ``progress_callback`` itself, so it is never part of what a client sends.
"""

from __future__ import annotations

import contextlib
import functools
import inspect
import typing
from collections.abc import Callable
from typing import Any

from pydantic import TypeAdapter

from ..validation import PROGRESS_CALLBACK


def _annotations(func: Callable[..., Any]) -> dict[str, Any]:
    try:
        return typing.get_type_hints(func)
    except Exception:  # an unresolvable forward reference: describe those parameters as "any"
        return {}


def _schema_of(annotation: Any) -> dict[str, Any]:
    """JSON Schema of one annotation, or {} (any value) when pydantic cannot describe it."""
    if annotation is inspect.Parameter.empty:
        return {}
    try:
        schema = TypeAdapter(annotation).json_schema()
    except Exception:  # a type pydantic cannot describe (a class of the user's): any JSON value
        return {}
    return schema


@functools.lru_cache(maxsize=1024)
def parameters_schema(func: Callable[..., Any]) -> tuple[dict[str, Any], bool]:
    """Return the JSON Schema of ``func``'s keyword parameters and whether it takes positional ones.

    Cached per function (a signature does not change; a re-registered type is a new function).
    Callers must not mutate the returned schema.
    """
    hints = _annotations(func)
    properties: dict[str, Any] = {}
    definitions: dict[str, Any] = {}
    required: list[str] = []
    accepts_args = False
    extra_keywords = False
    for name, param in inspect.signature(func).parameters.items():
        if param.kind is inspect.Parameter.VAR_POSITIONAL:
            accepts_args = True
            continue
        if param.kind is inspect.Parameter.VAR_KEYWORD:
            extra_keywords = True
            continue
        if param.kind is inspect.Parameter.POSITIONAL_ONLY:
            accepts_args = True
            continue
        if name == PROGRESS_CALLBACK:
            continue
        if param.kind is inspect.Parameter.POSITIONAL_OR_KEYWORD:
            accepts_args = True
        schema = _schema_of(hints.get(name, param.annotation))
        # A nested model's "$defs" are referenced as "#/$defs/...": lift them to the document root.
        definitions.update(schema.pop("$defs", {}))
        if param.default is inspect.Parameter.empty:
            required.append(name)
        else:
            with contextlib.suppress(Exception):  # a default that is not JSON: say nothing of it
                schema = {**schema, "default": TypeAdapter(Any).dump_python(param.default, mode="json")}
        properties[name] = schema
    document: dict[str, Any] = {"type": "object", "properties": properties}
    if required:
        document["required"] = required
    if not extra_keywords:
        document["additionalProperties"] = False
    if definitions:
        document["$defs"] = definitions
    return document, accepts_args


def first_docstring_line(func: Callable[..., Any]) -> str:
    doc = inspect.getdoc(func) or ""
    return doc.strip().splitlines()[0] if doc.strip() else ""
