"""HTML from Python string templates, escaped by default.

`render("<td>{name}</td>", name=value)` escapes every value unless it is `Markup`
(already HTML: the result of another `render`, or `join` of such). A template is a
literal in this package, never data, so only the values need escaping.
"""

from __future__ import annotations

import html
import string
from collections.abc import Iterable
from typing import Any


class Markup(str):
    """A string that is HTML already: `render` inserts it as it is."""

    __slots__ = ()

    def __repr__(self) -> str:
        return f"Markup({str.__repr__(self)})"


def escape(value: object) -> Markup:
    """*value* as HTML text: `&<>"'` escaped (Markup passes through unchanged)."""
    if isinstance(value, Markup):
        return value
    return Markup(html.escape("" if value is None else str(value), quote=True))


class _Escaping(string.Formatter):
    """str.format whose fields are escaped after formatting (`{n:,}` still works)."""

    def format_field(self, value: Any, format_spec: str) -> str:
        if isinstance(value, Markup):
            return value
        return escape(format(value, format_spec))


_FORMATTER = _Escaping()


def render(template: str, /, **values: object) -> Markup:
    """Fill the `{name}` fields of *template* with *values*, escaped unless Markup."""
    return Markup(_FORMATTER.vformat(template, (), values))


def join(parts: Iterable[object], separator: str = "") -> Markup:
    """The escaped *parts* one after the other."""
    return Markup(separator.join(escape(part) for part in parts))
