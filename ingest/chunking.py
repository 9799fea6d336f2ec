"""Split sections into chunks that fit the embedder: structure first, then sentences, words, characters.

Every chunk's `count_tokens(text)` is at most `max_tokens`, and every non-space character of a section lies
in some chunk. Chunk texts are slices of the section text, so their positions map back to the file.
"""

from __future__ import annotations

import math
import re
from bisect import bisect_right
from collections.abc import Callable
from dataclasses import dataclass

from ingest.document import LoadedDocument, Section
from rag_app.config import ChunkingSettings
from rag_app.language import SENTENCE_END
from rag_app.types import Chunk

# What decides a file's chunks, its loader included: a new version re-chunks every file at the next ingest (chunks
# whose text is unchanged keep their vectors). 2: HTML pages without their banner, sidebars and footer; JSON files
# as one line per member or record. 3: table rows below a header row (HTML, DOCX) with their columns' names.
# 4: PDFs without their running headers and footers. 5: an HTML page with a main landmark read from it alone.
CHUNKER_VERSION = "5"

_PARAGRAPHS = re.compile(r"\n[ \t]*\n\s*")
_LINES = re.compile(r"\n")
_CLAUSES = re.compile(r"[，、：]+|[,:;](?=\s)")
_WORDS = re.compile(r"\s+")
_TAIL_UNITS = re.compile(rf"{SENTENCE_END.pattern}|\n")
# Finer and finer places to cut a piece that is still too long; after the last, cut between characters.
_LEVELS = (_PARAGRAPHS, _LINES, SENTENCE_END, _CLAUSES, _WORDS)
_OVERLAP_LEVELS = (_TAIL_UNITS, _CLAUSES, _WORDS)


@dataclass(frozen=True)
class _Piece:
    start: int
    end: int
    tokens: int


def chunk_document(
    doc: LoadedDocument, count_tokens: Callable[[str], int], settings: ChunkingSettings
) -> list[Chunk]:
    """The document's chunks in order (ordinal 0, 1, ...), without ids: the index gives those."""
    special = count_tokens("")
    if settings.max_tokens < special + 8 or settings.max_chars < 8 or settings.overlap_tokens < 0:
        raise ValueError(f"chunking settings leave no room for text: {settings}")
    chunks: list[Chunk] = []
    for section in doc.sections:
        chunks.extend(_SectionChunker(section, count_tokens, settings, special).chunks(str(doc.path), len(chunks)))
    return chunks


class _SectionChunker:
    def __init__(
        self, section: Section, count_tokens: Callable[[str], int], settings: ChunkingSettings, special: int
    ) -> None:
        self.section = section
        self.text = section.text
        self.count_tokens = count_tokens
        self.settings = settings
        self.special = special

    def chunks(self, path: str, first_ordinal: int) -> list[Chunk]:
        pieces: list[_Piece] = []
        for start, end in _cut(self.text, _PARAGRAPHS, 0, len(self.text)):
            self._split(start, end, 1, pieces)
        newlines = [match.start() for match in _LINES.finditer(self.text)]
        return [self._chunk(path, first_ordinal + number, start, end, newlines)
                for number, (start, end) in enumerate(self._pack(pieces))]

    def _tokens(self, start: int, end: int) -> int:
        """Tokens of text[start:end] without the special tokens, which a chunk pays once."""
        return self.count_tokens(self.text[start:end]) - self.special

    def _fits(self, start: int, end: int, tokens: int) -> bool:
        return tokens + self.special <= self.settings.max_tokens and end - start <= self.settings.max_chars

    def _split(self, start: int, end: int, level: int, out: list[_Piece], tokens: int | None = None) -> None:
        """Append pieces of text[start:end] that each fit, cutting at the coarsest level that helps."""
        if tokens is None:
            tokens = self._tokens(start, end)
        if self._fits(start, end, tokens):
            out.append(_Piece(start, end, tokens))
            return
        for finer in range(level, len(_LEVELS)):
            parts = _cut(self.text, _LEVELS[finer], start, end)
            if len(parts) > 1:
                for part_start, part_end in parts:
                    self._split(part_start, part_end, finer + 1, out)
                return
        self._hard_split(start, end, tokens, out)

    def _hard_split(self, start: int, end: int, tokens: int, out: list[_Piece]) -> None:
        """Cut a run with no spaces or punctuation into equal character slices, each re-checked."""
        if end - start < 2:
            raise ValueError("max_tokens is too small for a single character")
        room = self.settings.max_tokens - self.special
        parts = max(2, math.ceil(tokens / room), math.ceil((end - start) / self.settings.max_chars))
        size = math.ceil((end - start) / parts)
        for part_start in range(start, end, size):
            self._split(part_start, min(part_start + size, end), len(_LEVELS), out)

    def _pack(self, pieces: list[_Piece]) -> list[tuple[int, int]]:
        """Greedily join neighbouring pieces up to the limit; each later chunk opens with overlap."""
        spans = []
        overlap: tuple[int, int] | None = None
        index = 0
        while index < len(pieces):
            start, tokens = overlap or (pieces[index].start, 0)
            stop = index
            while stop < len(pieces) and self._fits(start, pieces[stop].end, tokens + pieces[stop].tokens):
                tokens += pieces[stop].tokens
                stop += 1
            if stop == index:
                start, stop = pieces[index].start, index + 1
            start, stop = self._verified(start, index, stop, pieces)
            spans.append((start, pieces[stop - 1].end))
            overlap = self._overlap(pieces[index].start, pieces[stop - 1].end) if stop < len(pieces) else None
            index = stop
        return spans

    def _verified(self, start: int, index: int, stop: int, pieces: list[_Piece]) -> tuple[int, int]:
        """Count the joined text for real and drop trailing pieces (then the overlap) until it fits."""
        while self.count_tokens(self.text[start : pieces[stop - 1].end]) > self.settings.max_tokens:
            if stop > index + 1:
                stop -= 1
            elif start != pieces[index].start:
                start = pieces[index].start
            else:
                break
        return start, stop

    def _overlap(self, start: int, end: int) -> tuple[int, int] | None:
        """Where the tail of text[start:end] within the overlap budget begins, and its tokens.

        Whole sentences (or lines) where possible, else clauses, else words; never all of text[start:end].
        """
        budget = self.settings.overlap_tokens
        whole_allowed = False
        for level in _OVERLAP_LEVELS:
            units = _cut(self.text, level, start, end)
            if not whole_allowed:
                units = units[1:]
            best = None
            for unit_start, _ in reversed(units):
                tokens = self._tokens(unit_start, end)
                if tokens > budget or end - unit_start > self.settings.max_chars // 4:
                    break
                best = (unit_start, tokens)
            if best is not None:
                return best
            if units:
                start, whole_allowed = units[-1][0], True
        return None

    def _chunk(self, path: str, ordinal: int, start: int, end: int, newlines: list[int]) -> Chunk:
        section = self.section
        return Chunk(
            text=self.text[start:end],
            path=path,
            ordinal=ordinal,
            page=section.page,
            heading=section.heading,
            start_line=section.start_line + bisect_right(newlines, start - 1),
            end_line=section.start_line + bisect_right(newlines, end - 1),
            start_char=section.start_char + start,
            end_char=section.start_char + end,
        )


def _cut(text: str, separator: re.Pattern[str], start: int, end: int) -> list[tuple[int, int]]:
    """Spans of text[start:end] cut just after each separator match, trimmed, empty ones dropped."""
    spans = []
    for cut in [match.end() for match in separator.finditer(text, start, end)] + [end]:
        span = _trim(text, start, cut)
        if span is not None:
            spans.append(span)
        start = cut
    return spans


def _trim(text: str, start: int, end: int) -> tuple[int, int] | None:
    while start < end and text[start].isspace():
        start += 1
    while end > start and text[end - 1].isspace():
        end -= 1
    return (start, end) if start < end else None
