"""The README's marked snippets: ``<!-- atw:NAME -->`` right before a fenced code block."""

from __future__ import annotations

import re
from pathlib import Path

README = Path(__file__).resolve().parents[2] / "README.md"
_SNIPPET = re.compile(r"<!-- atw:([\w-]+) -->\n```[\w+-]*\n(.*?)\n```", re.DOTALL)


def snippets() -> dict[str, str]:
    """Every marked snippet of README.md by name."""
    found: dict[str, str] = {}
    for name, body in _SNIPPET.findall(README.read_text(encoding="utf-8")):
        assert name not in found, f"README.md marks two snippets atw:{name}"
        found[name] = body + "\n"
    return found
