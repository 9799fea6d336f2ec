"""The local backend's derived search copies: FAISS (dense) and BM25 (lexical), tagged with the store's generation.

A writer saves them after its last commit (temporary file + rename) and then publishes that generation. A reader
answers from the published generation only: while an ingest commits batch after batch it keeps its copies, and
when the ingest finishes it loads the saved ones once (no per-batch rebuild: rebuilding BM25 took ~18 s at 100k
chunks). Copies that are missing or unreadable are rebuilt from SQLite, with a warning. An index no write has
finished on yet (a killed first ingest) has nothing published, and readers follow its committed generation.
"""

from __future__ import annotations

import logging
import shutil
import tempfile
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import faiss
import numpy as np

from rag_app.atomic import write_atomically
from rag_app.index.backend import ChunkerSignature
from rag_app.index.lexical import TOKENIZER_VERSION, LexicalIndex, tokenize
from rag_app.index.sqlite_store import SQLiteStore
from rag_app.index.vectors import DEFAULT_VECTOR_INDEX, build_vector_index

VECTORS_NAME = "vectors.faiss"
LEXICAL_NAME = "lexical"
PUBLISHED = "published_generation"
log = logging.getLogger(__name__)


@dataclass(frozen=True)
class SearchView:
    """The copies of one generation: what a single search reads from, start to end."""

    generation: int
    vectors: faiss.Index
    lexical: LexicalIndex

    def dense(self, vector: np.ndarray, k: int) -> list[tuple[int, float]]:
        """The top `k` (chunk id, cosine) pairs."""
        if self.vectors.ntotal == 0:
            return []
        scores, ids = self.vectors.search(np.asarray(vector, dtype=np.float32).reshape(1, -1), k)
        return [(int(i), float(s)) for i, s in zip(ids[0], scores[0], strict=True) if i >= 0]

    def lexical_hits(self, tokens: Sequence[str], k: int) -> list[tuple[int, float]]:
        """The top `k` (chunk id, BM25 score) pairs with a positive score."""
        return self.lexical.search(tokens, k)

    def document_frequencies(self, terms: Sequence[str]) -> dict[str, int]:
        return {term: self.lexical.document_frequency(term) for term in terms}


class SearchCopies:
    """Loads, rebuilds and saves the FAISS and BM25 copies of one store."""

    def __init__(self, store: SQLiteStore) -> None:
        self.store = store
        self.directory = store.directory
        self._view: SearchView | None = None
        self._refresh_lock = threading.Lock()

    def published_generation(self) -> int:
        """The generation readers answer from: the last one a finished write published (else the committed one)."""
        meta = self.store.meta()
        published = meta.get(PUBLISHED)
        return int(published if published is not None else meta.get("generation") or 0)

    def view(self) -> SearchView:
        """The copies of the published generation; a search never waits for another one that is switching."""
        current = self._view
        if current is not None and current.generation == self.published_generation():
            return current
        if current is not None and not self._refresh_lock.acquire(blocking=False):
            return current  # another search is loading the new copies: keep answering from the last state
        if current is None:
            self._refresh_lock.acquire()
        try:
            generation = self.published_generation()
            if self._view is None or self._view.generation != generation:
                began = time.perf_counter()
                self._view = SearchView(generation, self._load_vectors(generation), self._load_lexical(generation))
                log.info("%s: search copies of generation %d ready in %.2f s", self.directory, generation,
                         time.perf_counter() - began)
            return self._view
        finally:
            self._refresh_lock.release()

    def save(self) -> None:
        """Write both copies for the current generation (the writer's last step), unless they are up to date."""
        generation = self.store.generation()
        meta = self.store.meta()
        if (meta.get("faiss_generation") == generation and meta.get("lexical_generation") == generation
                and (self.directory / VECTORS_NAME).exists()):
            if meta.get(PUBLISHED) != generation:
                self.store.update_meta({PUBLISHED: generation})
            return
        data = faiss.serialize_index(self._build_vectors())
        write_atomically(self.directory / VECTORS_NAME, np.asarray(data).tobytes())
        self._save_lexical(self._build_lexical())
        self.store.update_meta({"faiss_generation": generation, "lexical_generation": generation,
                                PUBLISHED: generation})

    def remove_stale_temporaries(self) -> None:
        """Drop temporary copies a killed writer left behind (call with the writer's lock held)."""
        for leftover in self.directory.glob(f".{VECTORS_NAME}.*"):
            leftover.unlink(missing_ok=True)

    def _build_vectors(self) -> faiss.Index:
        ids, matrix = self.store.all_vectors()
        meta = self.store.meta()
        return build_vector_index(matrix, ids, int(meta["dimension"]), meta.get("vector_index", DEFAULT_VECTOR_INDEX))

    def _load_vectors(self, generation: int) -> faiss.Index:
        """The saved FAISS copy when it matches this generation, else one built from SQLite."""
        path = self.directory / VECTORS_NAME
        if self.store.meta().get("faiss_generation") != generation:
            return self._build_vectors()  # no copy was saved for it (an index older than publishing)
        try:
            return faiss.deserialize_index(np.frombuffer(path.read_bytes(), dtype=np.uint8))
        except (OSError, RuntimeError) as error:
            _warn_rebuild(path, error)
            return self._build_vectors()

    def _build_lexical(self) -> LexicalIndex:
        """BM25 from the stored tokens; chunks tokenised by another tokenizer version are tokenised afresh."""
        rows = self.store.all_tokens()
        token_lists = [tokens.split() if _lexical_version(chunker) == TOKENIZER_VERSION else tokenize(text)
                       for _, tokens, text, chunker in rows]
        return LexicalIndex.build([row[0] for row in rows], token_lists)

    def _save_lexical(self, lexical: LexicalIndex) -> None:
        """Replace the saved BM25 folder: write a fresh one, then swap it in by renames."""
        staging = Path(tempfile.mkdtemp(prefix=".lexical-", dir=self.directory))
        target = self.directory / LEXICAL_NAME
        retired = self.directory / f".{LEXICAL_NAME}-retired"
        try:
            lexical.save(staging)
            shutil.rmtree(retired, ignore_errors=True)
            if target.exists():
                target.rename(retired)
            staging.rename(target)
        finally:
            shutil.rmtree(staging, ignore_errors=True)
            shutil.rmtree(retired, ignore_errors=True)

    def _load_lexical(self, generation: int) -> LexicalIndex:
        """The saved BM25 copy when it matches this generation, else one built from SQLite."""
        path = self.directory / LEXICAL_NAME
        if self.store.meta().get("lexical_generation") != generation:
            return self._build_lexical()
        try:
            return LexicalIndex.load(path)
        except (OSError, ValueError, KeyError, EOFError) as error:
            _warn_rebuild(path, error)
            return self._build_lexical()


def _warn_rebuild(path: Path, error: Exception) -> None:
    """Say that a damaged or missing copy is rebuilt from SQLite (answers stay the same; the first search is slower)."""
    log.warning("%s is missing or unreadable (%s); rebuilding it from the SQLite store. Nothing is lost: it is a "
                "copy, and the next finished ingest saves it again", path, error)


def _lexical_version(chunker: str | None) -> str | None:
    """The BM25 tokenizer version a file's stored tokens were made with."""
    signature = ChunkerSignature.from_json(chunker)
    return signature.lexical if signature else None
