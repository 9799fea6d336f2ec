"""Cut a document's text into sections at its headings, each section remembering its heading path."""

from __future__ import annotations

import re
from dataclasses import dataclass

from ingest.document import Section

_NEWLINE = re.compile("\n")


@dataclass(frozen=True)
class Heading:
    """A heading that starts on 0-based line `line` and spans `lines` lines of the text."""

    line: int
    level: int
    title: str
    lines: int = 1


class HeadingPath:
    """The headings open at a point in a document, joined as "Install > Linux"."""

    def __init__(self) -> None:
        self._stack: list[tuple[int, str]] = []

    def push(self, level: int, title: str) -> None:
        while self._stack and self._stack[-1][0] >= level:
            self._stack.pop()
        if title:
            self._stack.append((level, title))

    @property
    def path(self) -> str | None:
        return " > ".join(title for _, title in self._stack) or None


def sections_at_headings(text: str, headings: list[Heading]) -> list[Section]:
    """One section per heading (text starting at the heading line) plus any text before the first one.

    A heading with no text under it is folded into the next section, so no section is a bare title.
    """
    starts = [0] + [match.end() for match in _NEWLINE.finditer(text)]

    def offset(line: int) -> int:
        return starts[line] if line < len(starts) else len(text)

    if not headings:
        return [Section(text)]
    sections = [Section(text[: offset(headings[0].line)])] if headings[0].line > 0 else []
    ends = [heading.line for heading in headings[1:]] + [len(starts)]
    path = HeadingPath()
    pending: int | None = None
    for heading, end in zip(headings, ends, strict=True):
        path.push(heading.level, heading.title)
        start = heading.line if pending is None else pending
        body = text[offset(heading.line + heading.lines) : offset(end)]
        if not body.strip() and end < len(starts):
            pending = start
            continue
        pending = None
        sections.append(
            Section(text[offset(start) : offset(end)], heading=path.path, start_line=start + 1,
                    start_char=offset(start))
        )
    return sections
