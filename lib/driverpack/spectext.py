"""Escaping of pack text for spec files: text is carried literally, never expanded by rpm."""

from __future__ import annotations


def escape(text: str) -> str:
    """Text for a spec tag value, %description or a quoted heredoc: rpm must not expand macros.

    Newlines are refused by the models for one-line fields; multi-line text keeps them.
    A line starting with '%' could open a section, but after escaping it starts with '%%',
    which rpm reads as a literal percent sign.
    """
    return text.replace("%", "%%")
