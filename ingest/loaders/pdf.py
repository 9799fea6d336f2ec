"""PDF: one section per page with text (pypdf); positions are within the page."""

from __future__ import annotations

import io
from pathlib import Path

from pypdf import PasswordType, PdfReader
from pypdf.errors import DependencyError, FileNotDecryptedError

from ingest.document import LoadedDocument, LoaderError, Section

EXTENSIONS = frozenset({".pdf"})


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
    sections = [
        Section(text.replace("\r\n", "\n").replace("\r", "\n"), page=number)
        for number, text in enumerate(pages, start=1)
        if text.strip()
    ]
    if not sections:
        raise LoaderError("no text in PDF (scanned images?): run OCR on it first")
    return LoadedDocument(path, "pdf", sections)
