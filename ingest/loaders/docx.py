"""Word .docx: paragraphs and table rows in document order, one per line; "Heading N" styles give sections.

Line numbers count these extracted lines, so line N is the document's Nth paragraph or table row.
"""

from __future__ import annotations

import io
import re
from collections.abc import Iterable
from pathlib import Path

import docx
from docx.table import Table
from docx.text.paragraph import Paragraph

from ingest.document import LoadedDocument, LoaderError
from ingest.loaders.headings import Heading, sections_at_headings

EXTENSIONS = frozenset({".docx"})

_HEADING_STYLE = re.compile(r"heading (\d)", re.IGNORECASE)


def load_docx(path: Path, data: bytes) -> LoadedDocument:
    try:
        document = docx.Document(io.BytesIO(data))
        lines, headings = _lines(document.iter_inner_content())
    except Exception as exc:  # zipfile, KeyError, lxml and python-docx errors on files that are not .docx
        reason = f"corrupt or unsupported DOCX ({type(exc).__name__}): re-save it from Word"
        raise LoaderError(reason) from exc
    return LoadedDocument(path, "docx", sections_at_headings("\n".join(lines), headings))


def _lines(blocks: Iterable[Paragraph | Table]) -> tuple[list[str], list[Heading]]:
    lines: list[str] = []
    headings: list[Heading] = []
    for block in blocks:
        if isinstance(block, Paragraph):
            text = " ".join(block.text.split())
            level = _heading_level(block)
            if level is not None and text:
                headings.append(Heading(len(lines), level, text))
            lines.append(text)
        elif isinstance(block, Table):
            lines.extend(_table_rows(block))
    return lines, headings


def _heading_level(paragraph: Paragraph) -> int | None:
    name = paragraph.style.name if paragraph.style is not None else ""
    if name.lower() == "title":
        return 0
    match = _HEADING_STYLE.fullmatch(name)
    return int(match.group(1)) if match else None


def _table_rows(table: Table) -> list[str]:
    """Each row as "cell | cell", merged cells written once."""
    rows = []
    for row in table.rows:
        cells: list[str] = []
        for cell in row.cells:
            text = " ".join(cell.text.split())
            if text and (not cells or cells[-1] != text):
                cells.append(text)
        rows.append(" | ".join(cells))
    return rows
