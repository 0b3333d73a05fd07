"""Escaping of pack text for spec files: text is carried literally, never expanded by rpm."""

from __future__ import annotations

import re

# rpm looks for section names and %if/%include *after* turning '%%' into '%', and drops
# '#' lines from %description: a zero-width space in front keeps such a line plain text.
_DIRECTIVE_LINE = re.compile(r"^([ \t\r\f\v]*)([%#])", re.MULTILINE)
_ZERO_WIDTH_SPACE = "\u200b"


def escape(text: str) -> str:
    """Text for a spec tag value (after 'Tag: '): rpm must not expand macros."""
    return text.replace("%", "%%")


def escape_block(text: str) -> str:
    """Multi-line text for %description and similar bodies: no macro, section or conditional."""
    return escape(_DIRECTIVE_LINE.sub(rf"\1{_ZERO_WIDTH_SPACE}\2", text.rstrip("\n")))
