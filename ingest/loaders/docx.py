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
from rag_app.language import TABLE_CELLS

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
    """Each row as "cell | cell", merged cells written once; below a header row (`_has_header`) each cell with its
    column's name, as CSV rows are read, and the header row's line left blank: "Milestone: Dry-run migration |
    Owner: Tom Becker | Due: 15 July" answers "When is the dry-run migration due?", where "Dry-run migration | Tom
    Becker | 15 July" did not say which date it was, and "Milestone | Owner | Due" was quoted for a follow-up."""
    grid = [[" ".join(cell.text.split()) for cell in row.cells] for row in table.rows]
    names = grid[0] if len(grid) > 1 and _has_header(table, grid[0]) else []
    rows = []
    for number, cells in enumerate(grid):
        if names and number == 0:  # its names are in every row below; alone it stated nothing an answer could use
            rows.append("")
            continue
        shown: list[str] = []
        for column, text in enumerate(cells):
            if text and (column == 0 or cells[column - 1] != text):
                name = names[column] if column < len(names) else ""
                shown.append(f"{name}: {text}" if name and name != text else text)
        rows.append(TABLE_CELLS.join(shown))
    return rows


def _has_header(table: Table, first: list[str]) -> bool:
    """Whether the first row names the columns: Word marks it as a header row, or every word in it is bold, or,
    in a table of three or more columns, its cells are distinct short labels without digits (a two-column table
    without marks is more often a list of "key | value" pairs, whose first row is data)."""
    row = table.rows[0]
    if row._tr.xpath("./w:trPr/w:tblHeader[not(@w:val='0' or @w:val='false')]"):
        return True
    runs = [run for cell in row.cells for paragraph in cell.paragraphs for run in paragraph.runs if run.text.strip()]
    if runs and all(run.bold for run in runs):
        return True
    labels = list(dict.fromkeys(text for text in first if text))
    return (len(labels) >= 3 and len(labels) == len([text for text in first if text])
            and all(len(label.split()) <= 4 and not any(char.isdigit() for char in label) for label in labels))
