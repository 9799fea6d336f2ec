"""The storage seam: what an index backend keeps and answers, and the values that cross it.

A backend stores files, chunks (with positions and hashes), vectors keyed by chunk-text hash and lexical tokens,
plus the facts that built it (embedder, dimension, chunker signature, format version). It answers one call per
search: both legs, fused, filtered, with the vectors and term statistics the retrieval stages need. Two backends
implement it: `local` (SQLite truth + FAISS/BM25 copies in a folder) and, by the same contract, PostgreSQL +
pgvector. docs/architecture.md says what each method must guarantee.
"""

from __future__ import annotations

import fnmatch
import json
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from contextlib import AbstractContextManager
from dataclasses import asdict, dataclass, field
from pathlib import PurePath
from typing import Any, Protocol

import numpy as np

from rag_app.config import ChunkingSettings, FusionMethod, SearchMode, SearchOptions
from rag_app.types import Chunk, Hit


@dataclass(frozen=True)
class ChunkerSignature:
    """What decides a file's chunks and their stored tokens; a file chunked under another signature is redone."""

    chunker: str
    chunking: ChunkingSettings
    tokens_of: str
    lexical: str

    def to_json(self) -> str:
        return json.dumps({"chunker": self.chunker, "settings": asdict(self.chunking), "tokens_of": self.tokens_of,
                           "lexical": self.lexical}, sort_keys=True)

    @classmethod
    def from_json(cls, text: str | None) -> ChunkerSignature | None:
        """The signature stored with a file, or None for a missing or unreadable one (the file is then redone)."""
        try:
            data = json.loads(text or "")
            return cls(str(data["chunker"]), ChunkingSettings(**data["settings"]), str(data["tokens_of"]),
                       str(data["lexical"]))
        except (ValueError, KeyError, TypeError):
            return None


@dataclass(frozen=True)
class FileRecord:
    """What an index remembers of an ingested file, to tell unchanged from changed."""

    path: str
    size: int
    mtime_ns: int
    sha256: str
    kind: str
    chunks: int
    chunker: str = ""


@dataclass(frozen=True)
class FileChunks:
    """One file to (re)write: its record, its chunks in order and each chunk's lexical tokens."""

    record: FileRecord
    chunks: list[Chunk]
    tokens: list[list[str]]


@dataclass(frozen=True)
class Query:
    """A question as every search leg uses it: the text, tokenized once (`tokens` for BM25, `terms` for judging
    relevance: without question words) and embedded once."""

    text: str
    tokens: tuple[str, ...]
    vector: np.ndarray
    terms: tuple[str, ...] = ()


@dataclass(frozen=True)
class SearchRequest:
    """What a backend's search needs from the search options: legs, pool size, fusion and filters."""

    mode: SearchMode = "hybrid"
    pool: int = 100
    fusion: FusionMethod = "rrf"
    rrf_k: int = 1
    dense_weight: float = 0.5
    path_glob: str | None = None
    file_types: tuple[str, ...] = ()
    rows: int | None = None  # the best fused hits (after filters) the caller reads; None: all of them

    @classmethod
    def from_options(cls, options: SearchOptions, rows: int | None = None) -> SearchRequest:
        """Filters widen the pool eightfold, so that enough candidates survive them."""
        filtered = bool(options.path_glob or options.file_types)
        pool = max(options.candidates, options.k) * (8 if filtered else 1)
        return cls(options.mode, pool, options.fusion, options.rrf_k, options.dense_weight, options.path_glob,
                   tuple(options.file_types), rows)

    def allows(self, path: str) -> bool:
        """Whether a chunk of the file at `path` passes the path-glob and file-type filters."""
        if self.path_glob and not (fnmatch.fnmatch(path, self.path_glob) or PurePath(path).match(self.path_glob)):
            return False
        if self.file_types:
            suffix = PurePath(path).suffix.lower().lstrip(".")
            return suffix in {kind.lower().lstrip(".") for kind in self.file_types}
        return True


@dataclass(frozen=True)
class Candidates:
    """One search's answer from a backend: fused hits (best first, score = fused score; at most `request.rows`), the
    stored vectors of their chunks by content hash, and document frequencies of the query's terms over
    `chunk_count` chunks."""

    hits: list[Hit]
    vectors: Mapping[str, np.ndarray] = field(default_factory=dict)
    document_frequencies: Mapping[str, int] = field(default_factory=dict)
    chunk_count: int = 0


@dataclass(frozen=True)
class IndexFacts:
    """What built an index, checked on every open: the embedder and its vector dimension."""

    embedder: str
    dimension: int
    max_tokens: int


class IndexBackend(Protocol):
    """Storage of one index. Readers and one writer at a time; every write method is atomic."""

    location: str

    def close(self) -> None: ...

    def meta(self) -> dict[str, Any]: ...

    def update_meta(self, values: Mapping[str, Any]) -> None: ...

    def stats(self) -> dict[str, Any]: ...

    def files(self) -> dict[str, FileRecord]: ...

    def count_chunks(self) -> int: ...

    def chunks(self, ids: Sequence[int]) -> dict[int, Chunk]: ...

    def neighbours(self, chunk: Chunk, radius: int = 1) -> list[Chunk]: ...

    def known_vectors(self, hashes: Iterable[str]) -> dict[str, np.ndarray]: ...

    def file_chunks(self, paths: Sequence[str]) -> list[FileChunks]: ...

    def search(self, query: Query, request: SearchRequest) -> Candidates: ...

    def start_search(self, tokens: Sequence[str], request: SearchRequest) -> Callable[[Query], Candidates]:
        """Begin what needs only the query's tokens; the returned function finishes with the embedded query."""
        ...

    def transaction(self) -> AbstractContextManager[Any]: ...

    def bulk_load(self) -> AbstractContextManager[Any]: ...

    def replace_files(self, files: Sequence[FileChunks], vectors: Mapping[str, np.ndarray],
                      removed_paths: Sequence[str] = ()) -> None: ...

    def touch_files(self, records: Sequence[FileRecord]) -> None: ...

    def reset_embeddings(self, facts: IndexFacts) -> None: ...

    def chunks_without_vectors(self) -> dict[str, str]: ...

    def add_vectors(self, vectors: Mapping[str, np.ndarray]) -> None: ...

    def finish_write(self) -> None: ...


def batched(values: Sequence[Any], size: int = 500) -> Iterator[Sequence[Any]]:
    """Consecutive slices of at most `size` values (SQL parameter lists stay under the engines' limits)."""
    for start in range(0, len(values), size):
        yield values[start:start + size]
