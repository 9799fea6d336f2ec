"""What a loader hands to the chunker: a file's text in sections that remember where they came from."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path


@dataclass
class Section:
    """A run of text from one place in a file (a PDF page, a Markdown section, a whole text file)."""

    text: str
    page: int | None = None
    heading: str | None = None
    start_line: int = 1
    start_char: int = 0


@dataclass
class LoadedDocument:
    """A file decoded into sections; `kind` names the loader family (text, markdown, pdf, ...)."""

    path: Path
    kind: str
    sections: list[Section] = field(default_factory=list)

    @property
    def text(self) -> str:
        return "\n\n".join(section.text for section in self.sections)


class LoaderError(Exception):
    """A file could not be loaded; the message is the reason shown in the ingest report."""
