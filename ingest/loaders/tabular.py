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
    """"path: value" lines (`_readable_lines`), so that an answer quotes the record that holds the fact, not one
    line of it ("week": "2026-W10",) nor the whole file as one sentence. A pretty-printed file keeps its line
    numbers: each line goes where its member or record starts, the rest of the file's lines left blank. A one-line
    file has no lines to keep; one laid out otherwise stays as written."""
    text = decode_text(data)
    try:
        value = json.loads(text)
    except ValueError:
        return LoadedDocument(path, "json", [Section(text)])
    if "\n" not in text.strip():
        return LoadedDocument(path, "json", [Section("\n".join(line for _, line in _readable_lines(value)))])
    if text[:1].isspace() or _size(value) != text.rstrip().count("\n") + 1:
        return LoadedDocument(path, "json", [Section(text)])
    lines = [""] * _size(value)
    for number, line in _readable_lines(value):
        lines[number] = line
    return LoadedDocument(path, "json", [Section("\n".join(lines))])


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


def _readable_lines(value: object, path: str = "", record: bool = False, line: int = 0) -> list[tuple[int, str]]:
    """A JSON value as (line, text) pairs: an object's members one per line under their dotted path, a list of
    scalars on one line, a flat object inside a list as one record ("rotation 2: week: 2026-W11; primary: Priya
    Nair"); `line` counts from 0 where `value` starts when pretty-printed (`_size`)."""
    label = f"{path}: " if path else ""
    if isinstance(value, list) and _flat(value):
        return [(line, label + _listed(value))]
    if isinstance(value, dict) and (record or not value) and _flat(value.values()):
        return [(line, label + "; ".join(f"{key}: {_listed(item)}" for key, item in value.items()))]
    if isinstance(value, dict):
        members = [(f"{path}.{key}" if path else str(key), item, False) for key, item in value.items()]
    elif isinstance(value, list):
        members = [(f"{path} {number}" if path else "", item, True) for number, item in enumerate(value, 1)]
    else:
        return [(line, label + _readable(value))]
    found, start = [], line + 1
    for member_path, item, in_list in members:
        found += _readable_lines(item, member_path, in_list, start)
        start += _size(item)
    return found


def _size(value: object) -> int:
    """The lines `value` takes pretty-printed (json.dumps with an indent, JSON.stringify, jq): one for a scalar or
    an empty object or list, else its brackets' two and its members'."""
    if isinstance(value, dict | list) and value:
        return 2 + sum(_size(item) for item in (value.values() if isinstance(value, dict) else value))
    return 1


def _flat(values: Iterable[object]) -> bool:
    """No objects among the values, and no lists but lists of scalars."""
    return not any(isinstance(value, dict) or (isinstance(value, list) and not _flat(value)) for value in values)


def _listed(value: object) -> str:
    return ", ".join(_readable(item) for item in value) if isinstance(value, list) else _readable(value)


def _one_line(text: str) -> str:
    return " ".join(text.split())
