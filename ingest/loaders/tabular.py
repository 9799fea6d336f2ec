"""CSV rows as "column: value" lines, JSON and JSON Lines as readable text; the file's line numbers hold."""

from __future__ import annotations

import csv
import io
import json
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
    """Escaped characters are spelled out when that keeps the file's line numbers; otherwise raw text."""
    text = decode_text(data)
    try:
        value = json.loads(text)
    except ValueError:
        return LoadedDocument(path, "json", [Section(text)])
    if "\n" not in text.strip():
        return LoadedDocument(path, "json", [Section(json.dumps(value, ensure_ascii=False))])
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


def _one_line(text: str) -> str:
    return " ".join(text.split())
