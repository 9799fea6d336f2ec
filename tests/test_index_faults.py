"""Index faults over a real index: damaged or missing FAISS and BM25 copies are rebuilt from SQLite with a warning
and the answer stays the same; an index from a newer format is refused; a reader keeps answering from the last
finished ingest while another one commits batch after batch, and switches once."""

from __future__ import annotations

import json
import logging
import shutil
import sqlite3
import threading
from pathlib import Path

import pytest

from ingest.pipeline import ingest
from rag_app.agent import RagAgent
from rag_app.config import AgentSettings, IngestOptions
from rag_app.index import Index, IndexCorruptError
from rag_app.index.backend import SearchRequest
from tests.facts import FACT_QUESTION

EXTRACTIVE = AgentSettings(max_steps=0, answer_mode="extractive")
COPIES_LOG = "rag_app.index.search_copies"


def _copy(fact_index: Path, tmp_path: Path) -> Path:
    target = tmp_path / "index"
    shutil.copytree(fact_index, target, ignore=shutil.ignore_patterns("*.lock"))
    return target


def _answer(index_folder: Path, embedder, llm) -> tuple[str, list[str]]:
    """What a user sees: the answer text and its sources' places."""
    with Index.open(index_folder, embedder) as index:
        answer = RagAgent(index, llm, EXTRACTIVE).ask(FACT_QUESTION)
    return answer.text, [source.chunk.label() for source in answer.sources]


@pytest.fixture(scope="module")
def expected(fact_index, embedder, llm) -> tuple[str, list[str]]:
    text, sources = _answer(fact_index, embedder, llm)
    assert "Tuesday at 4 pm" in text and sources[0].split(",")[0].endswith("fountain.txt")
    return text, sources


def _delete(path: Path) -> None:
    shutil.rmtree(path) if path.is_dir() else path.unlink()


def _garble(path: Path) -> None:
    for file in ([*path.iterdir()] if path.is_dir() else [path]):
        file.write_bytes(b"\x00garbage" * 7)


@pytest.mark.parametrize("copy", ["vectors.faiss", "lexical"])
@pytest.mark.parametrize("damage", [_delete, _garble], ids=["deleted", "corrupt"])
def test_a_damaged_copy_is_rebuilt_with_a_warning_and_the_answer_is_unchanged(
        copy, damage, fact_index, tmp_path, embedder, llm, expected, caplog):
    index = _copy(fact_index, tmp_path)
    damage(index / copy)
    with caplog.at_level(logging.WARNING, logger=COPIES_LOG):
        assert _answer(index, embedder, llm) == expected
    warnings = [record.getMessage() for record in caplog.records if record.levelno == logging.WARNING]
    assert len(warnings) == 1 and str(index / copy) in warnings[0] and "rebuilding it from the SQLite" in warnings[0]


def test_an_index_from_a_newer_format_is_refused_with_what_to_do(fact_index, tmp_path, embedder):
    index = _copy(fact_index, tmp_path)
    with sqlite3.connect(index / "store.sqlite3") as db:
        db.execute("UPDATE meta SET value = ? WHERE key = 'format_version'", (json.dumps(99),))
    with pytest.raises(IndexCorruptError, match=r"format version 99.*newer rag_app.*upgrade"):
        Index.open(index, embedder)


def _notes(folder: Path, count: int) -> Path:
    folder.mkdir()
    for number in range(count):
        (folder / f"relay-{number:02d}.md").write_text(
            f"# Relay log {number}\n\nThe Quorvath relay station {number} hums at {400 + number} hertz.\n")
    return folder


def test_a_reader_answers_from_the_last_finished_ingest_and_switches_once(
        fact_index, tmp_path, embedder, caplog):
    index = _copy(fact_index, tmp_path)
    notes = _notes(tmp_path / "notes", 12)
    reader = Index.open(index, embedder)
    question = reader.query("Which frequency does the Quorvath relay station hum at?")
    seen_mid_ingest: list[list[str]] = []

    def search(progress) -> None:  # runs while the writer holds committed batches it has not finished
        if progress.chunks_done and progress.files_done < progress.files_total:
            seen_mid_ingest.append([hit.chunk.path for hit in reader.search(question, _request()).hits])

    with caplog.at_level(logging.INFO, logger=COPIES_LOG):
        reader.search(question, _request())
        caplog.clear()
        report = ingest([notes], index, embedder, IngestOptions(batch_chunks=2), progress=search)
        assert report.ok and len(report.added) == 12
        assert seen_mid_ingest, "no search ran between two committed batches"
        assert not [path for paths in seen_mid_ingest for path in paths if _is_relay(path)], \
            "a reader saw files of an unfinished ingest"
        together = _searched_together(reader, question, 8)
        after = [hit.chunk.path for hit in reader.search(question, _request()).hits]
    # Searches that meet the switch answer at once, each from one whole state: the old one or the new one.
    assert all(_is_relay(paths[0]) or not any(map(_is_relay, paths)) for paths in together)
    assert _is_relay(after[0])
    switches = [record for record in caplog.records if "search copies of generation" in record.getMessage()]
    assert len(switches) == 1, "readers must switch to the finished ingest once, without a rebuild per batch"
    reader.close()


def _request() -> SearchRequest:
    return SearchRequest(pool=10)


def _is_relay(path: str) -> bool:
    return Path(path).name.startswith("relay-")


def _searched_together(reader: Index, question, threads: int) -> list[list[str]]:
    """Searches started at once right after an ingest: all answered, one of them loads the new copies."""
    results: list[list[str]] = []
    start = threading.Barrier(threads)

    def one() -> None:
        start.wait()
        results.append([hit.chunk.path for hit in reader.search(question, _request()).hits])

    workers = [threading.Thread(target=one) for _ in range(threads)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join()
    return results
