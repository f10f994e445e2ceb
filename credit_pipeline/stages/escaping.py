"""Text from outside (display names, titles, reasons, notes) made inert where people read it.

One place for every table the UI or an export shows: a Markdown cell cannot break its
table (``|``, newlines), open a link or an image (``[``, ``]``, ``(``, ``!``, ``<``) or
start emphasis or code; a CSV cell cannot run as a spreadsheet formula.
"""

from __future__ import annotations

import re
from typing import Any

_MARKDOWN_PUNCTUATION = re.compile(r"([\\`*_\[\]()!|<>~])")  # what can open markup or break a table
_CONTROL = re.compile(r"[\x00-\x1f\x7f\u2028\u2029]+")
_FORMULA_START = ("=", "+", "-", "@", "\t", "\r")
MAX_CELL = 200


def markdown_cell(value: Any) -> str:
    """``value`` as literal Markdown text on one line (CommonMark backslash escapes), at most 200 characters."""
    if value is None:
        return ""
    if isinstance(value, bool | int | float):
        return str(value)
    text = _CONTROL.sub(" ", str(value)).strip()
    if len(text) > MAX_CELL:
        text = text[: MAX_CELL - 1] + "…"
    return _MARKDOWN_PUNCTUATION.sub(r"\\\1", text)


def spreadsheet_cell(value: Any) -> Any:
    """Neutralize a cell a spreadsheet would run as a formula (CSV injection): prefix it with '."""
    return "'" + value if isinstance(value, str) and value.startswith(_FORMULA_START) else value
