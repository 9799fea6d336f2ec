"""Markdown: one section per ATX heading ("## Linux"), headings inside fenced code ignored."""

from __future__ import annotations

import re
from pathlib import Path

from ingest.document import LoadedDocument
from ingest.loaders.headings import Heading, sections_at_headings
from ingest.loaders.text import decode_text

EXTENSIONS = frozenset({".md", ".markdown", ".mdown", ".mkd"})

_ATX = re.compile(r"^ {0,3}(#{1,6})(?:[ \t]+(.*?))?(?:[ \t]+#+)?[ \t]*$")
_FENCE = re.compile(r"^ {0,3}(`{3,}|~{3,})")


def load_markdown(path: Path, data: bytes) -> LoadedDocument:
    text = decode_text(data)
    return LoadedDocument(path, "markdown", sections_at_headings(text, markdown_headings(text)))


def markdown_headings(text: str) -> list[Heading]:
    headings = []
    fence: str | None = None
    for number, line in enumerate(text.split("\n")):
        marker = _FENCE.match(line)
        if marker:
            if fence is None:
                fence = marker.group(1)
            elif marker.group(1)[0] == fence[0] and len(marker.group(1)) >= len(fence):
                fence = None
            continue
        heading = None if fence else _ATX.match(line)
        if heading:
            headings.append(Heading(number, len(heading.group(1)), (heading.group(2) or "").strip()))
    return headings
