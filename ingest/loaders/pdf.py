"""PDF: one section per page with text (pypdf); positions are within the page; running headers and footers
(page numbers included) are left out."""

from __future__ import annotations

import io
import re
from collections import Counter
from pathlib import Path

from pypdf import PasswordType, PdfReader
from pypdf.errors import DependencyError, FileNotDecryptedError

from ingest.document import LoadedDocument, LoaderError, Section

EXTENSIONS = frozenset({".pdf"})

# A running header or footer: one of the first or last EDGE_LINES lines of a page that recurs, digits aside, on
# at least RUNNING_SHARE of the pages of a document of RUNNING_MIN_PAGES or more ("Acme Handbook · Confidential",
# "Page 3 of 12"). It is a page's furniture, not its content: left in, it is a statement an answer can quote and a
# term that puts every page on the topic of a question about the document's name.
EDGE_LINES = 2
RUNNING_SHARE = 0.5
RUNNING_MIN_PAGES = 3
_DIGITS = re.compile(r"\d+")


def load_pdf(path: Path, data: bytes) -> LoadedDocument:
    try:
        reader = PdfReader(io.BytesIO(data))
        if reader.is_encrypted and reader.decrypt("") == PasswordType.NOT_DECRYPTED:
            raise FileNotDecryptedError("a password is needed")
        pages = [page.extract_text() or "" for page in reader.pages]
    except (FileNotDecryptedError, DependencyError) as exc:
        raise LoaderError("encrypted PDF: decrypt it first") from exc
    except Exception as exc:  # pypdf raises many exception types on damaged files
        raise LoaderError(f"corrupt PDF ({type(exc).__name__}): re-export or repair it") from exc
    pages = without_running_lines([text.replace("\r\n", "\n").replace("\r", "\n") for text in pages])
    sections = [Section(text, page=number) for number, text in enumerate(pages, start=1) if text.strip()]
    if not sections:
        raise LoaderError("no text in PDF (scanned images?): run OCR on it first")
    return LoadedDocument(path, "pdf", sections)


def without_running_lines(pages: list[str]) -> list[str]:
    """The pages with their running headers and footers blanked (their lines kept empty, so line numbers hold)."""
    filled = sum(1 for page in pages if page.strip())
    if filled < RUNNING_MIN_PAGES:
        return pages
    lines = [page.split("\n") for page in pages]
    edges = [_edge_lines(page) for page in lines]
    counts = Counter(key for page, found in zip(lines, edges, strict=True) for key in {_key(page[n]) for n in found})
    running = {key for key, count in counts.items() if key and count >= RUNNING_SHARE * filled}
    for page, found in zip(lines, edges, strict=True):
        for number in found:
            if _key(page[number]) in running:
                page[number] = ""
    return ["\n".join(page) for page in lines]


def _edge_lines(page: list[str]) -> list[int]:
    """The positions of a page's first and last EDGE_LINES non-empty lines."""
    filled = [number for number, line in enumerate(page) if line.strip()]
    return sorted(set(filled[:EDGE_LINES] + filled[-EDGE_LINES:]))


def _key(line: str) -> str:
    """A line as its recurrences compare: lower case, spaces collapsed, every number alike."""
    return _DIGITS.sub("#", " ".join(line.lower().split()))
