"""The local backend: an index folder with SQLite as the truth and FAISS + BM25 as its search copies."""

from __future__ import annotations

from pathlib import Path

from rag_app.index.backend import Candidates, IndexFacts, Query, SearchRequest
from rag_app.index.fusion import fuse
from rag_app.index.search_copies import SearchCopies
from rag_app.index.sqlite_store import SQLiteStore
from rag_app.types import Hit


class LocalBackend(SQLiteStore):
    """SQLiteStore plus the search copies it keeps up to date; one `search` call reads one generation."""

    def __init__(self, *args: object, **kwargs: object) -> None:
        super().__init__(*args, **kwargs)  # type: ignore[arg-type]
        self.copies = SearchCopies(self)

    @classmethod
    def open_for_write(cls, directory: Path | str, facts: IndexFacts) -> LocalBackend:
        backend = super().open_for_write(directory, facts)
        assert isinstance(backend, LocalBackend)
        backend.copies.remove_stale_temporaries()
        return backend

    def finish_write(self) -> None:
        """Save the search copies for the last generation, then prune vectors and write the manifest."""
        self.copies.save()
        super().finish_write()

    def search(self, query: Query, request: SearchRequest) -> Candidates:
        """Both legs over one generation of the copies, fused, filtered, with the chunks' stored vectors."""
        view = self.copies.view()
        dense = view.dense(query.vector, request.pool) if request.mode != "lexical" else []
        lexical = view.lexical_hits(query.tokens, request.pool) if request.mode != "dense" else []
        fused = fuse(dense, lexical, request)
        ordered = sorted(fused, key=fused.__getitem__, reverse=True)
        chunks = self.chunks(ordered)
        hits = [Hit(chunks[chunk_id], fused[chunk_id]) for chunk_id in ordered
                if chunk_id in chunks and request.allows(chunks[chunk_id].path)]
        return Candidates(
            hits=hits,
            vectors=self.known_vectors(hit.chunk.content_hash for hit in hits),
            document_frequencies=view.document_frequencies(sorted(set(query.tokens))),
            chunk_count=len(view.lexical.ids),
        )
