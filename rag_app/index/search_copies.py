"""The local backend's derived search copies: FAISS (dense) and BM25 (lexical), tagged with the store's generation.

They are rebuilt from SQLite whenever they are stale or unreadable, so they can never disagree with the truth for
long. A writer saves them after its last commit (temporary file + rename); a reader loads the saved ones when their
generation matches and checks the generation once per search.
"""

from __future__ import annotations

import shutil
import tempfile
import threading
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import faiss
import numpy as np

from rag_app.atomic import write_atomically
from rag_app.index.backend import ChunkerSignature
from rag_app.index.lexical import TOKENIZER_VERSION, LexicalIndex, tokenize
from rag_app.index.sqlite_store import SQLiteStore
from rag_app.index.vectors import build_vector_index

VECTORS_NAME = "vectors.faiss"
LEXICAL_NAME = "lexical"


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

    def view(self) -> SearchView:
        """The copies of the store's current generation (reloaded only when the store changed)."""
        generation = self.store.generation()
        with self._refresh_lock:
            if self._view is None or self._view.generation != generation:
                self._view = SearchView(generation, self._load_vectors(generation), self._load_lexical(generation))
            return self._view

    def save(self) -> None:
        """Write both copies for the current generation (the writer's last step), unless they are up to date."""
        generation = self.store.generation()
        meta = self.store.meta()
        if (meta.get("faiss_generation") == generation and meta.get("lexical_generation") == generation
                and (self.directory / VECTORS_NAME).exists()):
            return
        data = faiss.serialize_index(self._build_vectors())
        write_atomically(self.directory / VECTORS_NAME, np.asarray(data).tobytes())
        self._save_lexical(self._build_lexical())
        self.store.update_meta({"faiss_generation": generation, "lexical_generation": generation})

    def remove_stale_temporaries(self) -> None:
        """Drop temporary copies a killed writer left behind (call with the writer's lock held)."""
        for leftover in self.directory.glob(f".{VECTORS_NAME}.*"):
            leftover.unlink(missing_ok=True)

    def _build_vectors(self) -> faiss.Index:
        ids, matrix = self.store.all_vectors()
        meta = self.store.meta()
        return build_vector_index(matrix, ids, int(meta["dimension"]), meta.get("vector_index", "flat"))

    def _load_vectors(self, generation: int) -> faiss.Index:
        path = self.directory / VECTORS_NAME
        if self.store.meta().get("faiss_generation") == generation and path.exists():
            try:
                return faiss.deserialize_index(np.frombuffer(path.read_bytes(), dtype=np.uint8))
            except RuntimeError:
                pass  # an unreadable copy is rebuilt from SQLite below
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
        """The saved BM25 when it matches this generation, else one built from SQLite."""
        if self.store.meta().get("lexical_generation") == generation and (self.directory / LEXICAL_NAME).is_dir():
            try:
                return LexicalIndex.load(self.directory / LEXICAL_NAME)
            except (OSError, ValueError, KeyError):
                pass  # an unreadable copy is rebuilt from SQLite below
        return self._build_lexical()


def _lexical_version(chunker: str | None) -> str | None:
    """The BM25 tokenizer version a file's stored tokens were made with."""
    signature = ChunkerSignature.from_json(chunker)
    return signature.lexical if signature else None
