"""Plain text: decode the bytes and keep the whole file as one section."""

from __future__ import annotations

from pathlib import Path

from ingest.document import LoadedDocument, LoaderError, Section
from ingest.encoding import decode_bytes, looks_binary

EXTENSIONS = frozenset({".txt", ".text", ".log"})


def decode_text(data: bytes) -> str:
    """Decoded text with newlines normalised to "\\n" (what Python's text mode would read)."""
    if looks_binary(data):
        raise LoaderError("binary file, not text")
    text, _ = decode_bytes(data)
    return text.replace("\r\n", "\n").replace("\r", "\n")


def load_text(path: Path, data: bytes) -> LoadedDocument:
    return LoadedDocument(path, "text", [Section(decode_text(data))])
