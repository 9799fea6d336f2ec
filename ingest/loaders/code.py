"""Source code and config files: kept verbatim; Python is split at top-level def and class."""

from __future__ import annotations

import re
from pathlib import Path

from ingest.document import LoadedDocument, Section
from ingest.loaders.headings import Heading, sections_at_headings
from ingest.loaders.text import decode_text

EXTENSIONS = frozenset(
    {
        ".py", ".pyi", ".js", ".mjs", ".cjs", ".ts", ".tsx", ".jsx", ".vue", ".svelte", ".java", ".kt",
        ".kts", ".scala", ".go", ".rs", ".c", ".cc", ".cpp", ".cxx", ".h", ".hh", ".hpp", ".hxx", ".cs",
        ".swift", ".m", ".rb", ".php", ".pl", ".lua", ".r", ".jl", ".dart", ".sh", ".bash", ".zsh",
        ".ps1", ".bat", ".sql", ".css", ".scss", ".less", ".proto", ".graphql", ".tex", ".yaml", ".yml",
        ".toml", ".ini", ".cfg", ".conf", ".properties", ".xml", ".gradle", ".cmake", ".mk",
    }
)

_PYTHON_DEF = re.compile(r"(?:async[ \t]+)?(def|class)[ \t]+(\w+)")


def load_code(path: Path, data: bytes) -> LoadedDocument:
    text = decode_text(data)
    if path.suffix.lower() in {".py", ".pyi"}:
        return LoadedDocument(path, "code", sections_at_headings(text, python_definitions(text)))
    return LoadedDocument(path, "code", [Section(text)])


def python_definitions(text: str) -> list[Heading]:
    """Top-level functions and classes, each starting at its first decorator line."""
    lines = text.split("\n")
    headings = []
    for number, line in enumerate(lines):
        match = _PYTHON_DEF.match(line)
        if not match:
            continue
        first = number
        while first > 0 and lines[first - 1].startswith("@"):
            first -= 1
        headings.append(Heading(first, 1, f"{match.group(1)} {match.group(2)}", lines=number + 1 - first))
    return headings
