"""Load a file into a LoadedDocument: the extension picks the loader, unknown extensions are sniffed."""

from __future__ import annotations

import stat
from collections.abc import Callable
from pathlib import Path

from ingest.document import LoadedDocument, LoaderError
from ingest.loaders import code, docx, html, markdown, pdf, rst, tabular, text

Loader = Callable[[Path, bytes], LoadedDocument]

_LOADERS: dict[str, Loader] = {
    **dict.fromkeys(text.EXTENSIONS, text.load_text),
    **dict.fromkeys(markdown.EXTENSIONS, markdown.load_markdown),
    **dict.fromkeys(rst.EXTENSIONS, rst.load_rst),
    **dict.fromkeys(html.EXTENSIONS, html.load_html),
    **dict.fromkeys(pdf.EXTENSIONS, pdf.load_pdf),
    **dict.fromkeys(docx.EXTENSIONS, docx.load_docx),
    **dict.fromkeys(code.EXTENSIONS, code.load_code),
    **dict.fromkeys(tabular.CSV_EXTENSIONS, tabular.load_csv),
    **dict.fromkeys(tabular.JSON_EXTENSIONS, tabular.load_json),
    **dict.fromkeys(tabular.JSONL_EXTENSIONS, tabular.load_jsonl),
}

SUPPORTED_EXTENSIONS: frozenset[str] = frozenset(_LOADERS)

_MB = 1024 * 1024


def load_file(path: Path, max_bytes: int | None = None) -> LoadedDocument:
    """Read, decode and split `path` into sections; raise LoaderError with a short reason when it cannot."""
    data = _read(path, max_bytes)
    loader = _LOADERS.get(path.suffix.lower(), text.load_text)
    document = loader(path, data)
    document.sections = [section for section in document.sections if section.text.strip()]
    if not document.sections:
        raise LoaderError("no text found")
    return document


def _read(path: Path, max_bytes: int | None) -> bytes:
    try:
        info = path.stat()
        if not stat.S_ISREG(info.st_mode):
            raise LoaderError("not a regular file (a directory, pipe or device)")
        check_size(info.st_size, max_bytes)
        with path.open("rb") as handle:
            data = handle.read() if max_bytes is None else handle.read(max_bytes + 1)
    except FileNotFoundError as exc:
        raise LoaderError("file not found") from exc
    except PermissionError as exc:
        raise LoaderError("permission denied: make the file readable") from exc
    except OSError as exc:
        raise LoaderError(f"cannot read file: {exc.strerror or exc}") from exc
    check_size(len(data), max_bytes)
    if not data:
        raise LoaderError("empty file")
    return data


def check_size(size: int, max_bytes: int | None) -> None:
    """Refuse a file over `max_bytes` with a LoaderError that says how to raise the limit."""
    if max_bytes is not None and size > max_bytes:
        limit = f"{max_bytes / _MB:.1f} MB"
        raise LoaderError(f"file is {size / _MB:.1f} MB, over the {limit} limit; raise --max-file-mb")
