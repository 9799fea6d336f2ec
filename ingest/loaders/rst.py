"""reStructuredText: one section per title (a line underlined, or over- and underlined, with punctuation)."""

from __future__ import annotations

import re
from pathlib import Path

from ingest.document import LoadedDocument
from ingest.loaders.headings import Heading, sections_at_headings
from ingest.loaders.text import decode_text

EXTENSIONS = frozenset({".rst", ".rest"})

_ADORNMENT = re.compile(r"^([!-/:-@\[-`{-~])\1{2,}[ \t]*$")


def load_rst(path: Path, data: bytes) -> LoadedDocument:
    text = decode_text(data)
    return LoadedDocument(path, "rst", sections_at_headings(text, rst_headings(text.split("\n"))))


def rst_headings(lines: list[str]) -> list[Heading]:
    """Levels follow the order in which adornment styles first appear, as docutils does."""
    headings = []
    styles: dict[tuple[str, bool], int] = {}
    for number, line in enumerate(lines[:-1]):
        title = line.strip()
        under = _ADORNMENT.match(lines[number + 1])
        if not title or _ADORNMENT.match(line) or not under or len(lines[number + 1].rstrip()) < len(title):
            continue
        above = lines[number - 1] if number > 0 else ""
        overlined = above.rstrip() == lines[number + 1].rstrip()
        if not overlined and above.strip():
            continue
        level = styles.setdefault((under.group(1), overlined), len(styles) + 1)
        first = number - 1 if overlined else number
        headings.append(Heading(first, level, title, lines=number + 2 - first))
    return headings
