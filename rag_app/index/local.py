"""The local backend: an index folder with SQLite as the truth and FAISS + BM25 as its search copies."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from functools import partial
from pathlib import Path

from rag_app.index.backend import Candidates, FileChunks, IndexFacts, Query, SearchRequest
from rag_app.index.fusion import fused_hits
from rag_app.index.manifest import read_manifest
from rag_app.index.search_copies import SearchCopies
from rag_app.index.sqlite_store import SQLiteStore
from rag_app.types import Chunk


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

    @staticmethod
    def recorded_embedder(directory: Path | str) -> str | None:
        """The embedder the index in `directory` says it was built with (None for a new or unreadable one)."""
        try:
            return (read_manifest(Path(directory).expanduser()) or {}).get("embedder")
        except (OSError, ValueError):
            return None

    def file_chunks(self, paths: Sequence[str]) -> list[FileChunks]:
        """These files as stored: records, chunks in order and their lexical tokens (for copying an index)."""
        records = self.files()
        found = [path for path in paths if path in records]
        grouped = {path: self.neighbours(Chunk(text="", path=path, ordinal=0), radius=2**31 - 1) for path in found}
        tokens = dict(self.tokens_of([chunk.id for chunks in grouped.values() for chunk in chunks]))
        return [FileChunks(records[path], chunks, [tokens[chunk.id].split() for chunk in chunks])
                for path, chunks in grouped.items()]

    def finish_write(self) -> None:
        """Save the search copies for the last generation, then prune vectors and write the manifest."""
        self.copies.save()
        super().finish_write()

    def start_search(self, tokens: Sequence[str], request: SearchRequest) -> Callable[[Query], Candidates]:
        """Everything waits for the embedded query: the in-process BM25 leg takes 2-3 ms at 100k chunks, and on a
        thread of its own beside the embedding it gave no measurable gain (docs/latency.md)."""
        return partial(self.search, request=request)

    def search(self, query: Query, request: SearchRequest) -> Candidates:
        """Both legs over one generation of the copies, fused, filtered, with the chunks' stored vectors."""
        view = self.copies.view()
        dense = view.dense(query.vector, request.pool) if request.mode != "lexical" else []
        lexical = view.lexical_hits(query.tokens, request.pool) if request.mode != "dense" else []
        hits = fused_hits(dense, lexical, request, self.chunks)
        return Candidates(
            hits=hits,
            vectors=self.known_vectors(hit.chunk.content_hash for hit in hits),
            document_frequencies=view.document_frequencies(sorted(set(query.tokens))),
            chunk_count=len(view.lexical.ids),
        )
