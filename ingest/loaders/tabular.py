"""CSV rows as "column: value" lines, JSON and JSON Lines as readable text; the file's line numbers hold, except in
a one-line (minified) JSON file, whose lines are the rendered ones."""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Iterable
from pathlib import Path

from ingest.document import LoadedDocument, Section
from ingest.loaders.text import decode_text

CSV_EXTENSIONS = frozenset({".csv", ".tsv"})
JSON_EXTENSIONS = frozenset({".json"})
JSONL_EXTENSIONS = frozenset({".jsonl", ".ndjson"})


def load_csv(path: Path, data: bytes) -> LoadedDocument:
    """Each record becomes one line; a record spanning several lines is followed by blank lines."""
    text = decode_text(data)
    delimiter = "\t" if path.suffix.lower() == ".tsv" else _sniff_delimiter(text)
    reader = csv.reader(io.StringIO(text), delimiter=delimiter)
    header = [_one_line(name) for name in next(reader, [])]
    header_lines = reader.line_num
    lines = []
    for row in reader:
        lines.append(_render_row(header, row))
        lines.extend([""] * (reader.line_num - header_lines - len(lines)))
    start_char = sum(len(line) + 1 for line in text.split("\n")[:header_lines])
    section = Section("\n".join(lines), start_line=header_lines + 1, start_char=min(start_char, len(text)))
    return LoadedDocument(path, "csv", [section])


def load_json(path: Path, data: bytes) -> LoadedDocument:
    """Escaped characters are spelled out when that keeps the file's line numbers; otherwise raw text. A one-line
    file has no lines to keep: it becomes "path: value" lines (`_readable_lines`), so that an answer quotes the
    record that holds the fact, not the whole file as one sentence."""
    text = decode_text(data)
    try:
        value = json.loads(text)
    except ValueError:
        return LoadedDocument(path, "json", [Section(text)])
    if "\n" not in text.strip():
        return LoadedDocument(path, "json", [Section("\n".join(_readable_lines(value)))])
    pretty = json.dumps(value, ensure_ascii=False, indent=2)
    same_lines = not text[:1].isspace() and pretty.count("\n") == text.rstrip().count("\n")
    return LoadedDocument(path, "json", [Section(pretty if same_lines else text)])


def load_jsonl(path: Path, data: bytes) -> LoadedDocument:
    """One line per record: objects as "key: value; key: value", lines that do not parse kept as they are."""
    lines = [_render_record(line) for line in decode_text(data).split("\n")]
    return LoadedDocument(path, "jsonl", [Section("\n".join(lines))])


def _sniff_delimiter(text: str) -> str:
    try:
        return csv.Sniffer().sniff(text[:4096], delimiters=",;\t|").delimiter
    except csv.Error:
        return ","


def _render_row(header: list[str], row: list[str]) -> str:
    cells = []
    for number, cell in enumerate(row):
        name = header[number] if number < len(header) else f"column {number + 1}"
        if cell.strip():
            cells.append(f"{name}: {_one_line(cell)}")
    return "; ".join(cells)


def _render_record(line: str) -> str:
    try:
        record = json.loads(line)
    except ValueError:
        return line
    if isinstance(record, dict):
        return "; ".join(f"{key}: {_readable(value)}" for key, value in record.items())
    return _readable(record)


def _readable(value: object) -> str:
    return _one_line(value) if isinstance(value, str) else json.dumps(value, ensure_ascii=False)


def _readable_lines(value: object, path: str = "", record: bool = False) -> list[str]:
    """A JSON value as lines: an object's members one per line under their dotted path, a list of scalars on one
    line, a flat object inside a list as one record ("rotation 2: week: 2026-W11; primary: Priya Nair")."""
    label = f"{path}: " if path else ""
    if isinstance(value, dict) and record and _flat(value.values()):
        return [label + "; ".join(f"{key}: {_listed(item)}" for key, item in value.items())]
    if isinstance(value, dict):
        return [line for key, item in value.items()
                for line in _readable_lines(item, f"{path}.{key}" if path else str(key))]
    if isinstance(value, list) and _flat(value):
        return [label + _listed(value)]
    if isinstance(value, list):
        return [line for number, item in enumerate(value, 1)
                for line in _readable_lines(item, f"{path} {number}" if path else "", record=True)]
    return [label + _readable(value)]


def _flat(values: Iterable[object]) -> bool:
    """No objects among the values, and no lists but lists of scalars."""
    return not any(isinstance(value, dict) or (isinstance(value, list) and not _flat(value)) for value in values)


def _listed(value: object) -> str:
    return ", ".join(_readable(item) for item in value) if isinstance(value, list) else _readable(value)


def _one_line(text: str) -> str:
    return " ".join(text.split())
