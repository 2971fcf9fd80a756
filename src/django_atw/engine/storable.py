"""Keep outcomes within what the database stores, and say so when one is not.

PostgreSQL refuses NUL in text and JSON (``\\u0000``), JSON with an unpaired surrogate, and an
``error_type`` longer than its column; no driver encodes a lone surrogate in text. SQLite
stores most of these, so a task that works on a developer's SQLite would stall on PostgreSQL.
The executor checks every outcome here before it is written (prevention); the writer stores
``unstorable`` in place of one the database still refuses (the safety net).
"""

from __future__ import annotations

import re

from django.utils import timezone

from ..models import TaskRecord
from ..status import TaskStatus
from ..values import Outcome

ERROR_TYPE_LENGTH: int = TaskRecord._meta.get_field("error_type").max_length or 255
UNSTORABLE_ERROR_TYPE = "OutcomeStorageError"
# The database's own words in a stored error: its first line, which names the problem; the rest
# quotes the statement, values included.
_REASON_CHARS = 300

# One JSON escape: \uXXXX, or a backslash and the character it escapes (so "\\u0000", an
# escaped backslash followed by "u0000", is read as the text it is, not as NUL).
_ESCAPE = re.compile(r"\\(?:u([0-9a-fA-F]{4})|.)")
_NUL = "a NUL character (\\u0000)"
_SURROGATE = "an unpaired surrogate (\\ud800-\\udfff)"


def storable_text(text: str) -> str:
    """Return ``text`` without NUL characters, its lone surrogates written as ``\\udXXX``."""
    if "\x00" in text:
        text = text.replace("\x00", "")
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        text = text.encode("utf-8", "backslashreplace").decode("utf-8")
    return text


def storable_error_type(name: str) -> str:
    """Return ``name`` as storable text cut to the column's length."""
    return storable_text(name)[:ERROR_TYPE_LENGTH]


def json_problem(result_json: str) -> str | None:
    """Name what in ``result_json`` (``json.dumps`` output) PostgreSQL refuses, or return None.

    ``json.dumps`` writes NUL as ``\\u0000`` and any character beyond the BMP as a surrogate
    pair (``\\ud83d\\ude00``), so most results have neither substring and cost one scan.
    """
    if "\\u0000" not in result_json and "\\ud" not in result_json:
        return None
    high_end = -1  # where an escaped high surrogate still waiting for its low half ended
    for match in _ESCAPE.finditer(result_json):
        code = int(match.group(1), 16) if match.group(1) else -1
        if high_end >= 0:
            if match.start() == high_end and 0xDC00 <= code <= 0xDFFF:
                high_end = -1
                continue
            return _SURROGATE
        if code == 0:
            return _NUL
        if 0xD800 <= code <= 0xDBFF:
            high_end = match.end()
        elif 0xDC00 <= code <= 0xDFFF:
            return _SURROGATE
    return _SURROGATE if high_end >= 0 else None


def unstorable(outcome: Outcome, exc: BaseException) -> Outcome:
    """The failure to store in place of ``outcome``, which the database refused with ``exc``.

    Every text in it is storable: the database's reason and the task's own error are cleaned
    and cut, the result is left out, and the error type is a constant.
    """
    lines = str(exc).strip().splitlines()
    reason = storable_text(f"{type(exc).__name__}: {lines[0] if lines else ''}")[:_REASON_CHARS]
    part, rule = "result", "Return JSON without NUL characters or unpaired surrogates."
    if outcome.status is not TaskStatus.COMPLETED:
        part = "error"
        rule = (
            "Error messages and tracebacks must hold no NUL characters or unpaired surrogates, and "
            f"error types at most {ERROR_TYPE_LENGTH} characters."
        )
    message = f"The task's {part} could not be stored: the database refused it ({reason}). {rule}"
    if outcome.error:
        message += f" The task's own error was: {storable_text(outcome.error)[:_REASON_CHARS]}"
    return Outcome(
        task_id=outcome.task_id,
        status=TaskStatus.FAILED,
        progress=outcome.progress,
        error=message,
        error_type=UNSTORABLE_ERROR_TYPE,
        traceback=storable_text(outcome.traceback),
        completed_at=outcome.completed_at or timezone.now(),
        attempt=outcome.attempt,
        exception=exc,
    )
