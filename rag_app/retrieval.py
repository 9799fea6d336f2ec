"""Hybrid search over one index: dense (FAISS) and lexical (BM25) legs, fused, filtered, shaped, judged."""

from __future__ import annotations

import fnmatch
import math
from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import PurePath
from typing import Literal

import numpy as np

from rag_app.index.lexical import tokenize
from rag_app.index.store import IndexStore
from rag_app.models.embedder import Embedder
from rag_app.types import Chunk, Source

SearchMode = Literal["hybrid", "dense", "lexical"]
SEARCH_MODES: tuple[SearchMode, ...] = ("hybrid", "dense", "lexical")
RRF_K = 60


@dataclass(frozen=True)
class SearchOptions:
    """How to search: result count, mode, filters, the candidate pool, and the abstain threshold."""

    k: int = 5
    mode: SearchMode = "hybrid"
    path_glob: str | None = None
    file_types: tuple[str, ...] = ()
    candidates: int = 50
    merge_neighbours: bool = True
    min_relevance: float = 0.35


def reciprocal_rank_fusion(rankings: Sequence[Sequence[int]], k: int = RRF_K) -> dict[int, float]:
    """Sum of 1 / (k + rank) over the rankings each id appears in."""
    fused: dict[int, float] = {}
    for ranking in rankings:
        for rank, chunk_id in enumerate(ranking, start=1):
            fused[chunk_id] = fused.get(chunk_id, 0.0) + 1.0 / (k + rank)
    return fused


def term_coverage(query: str, text: str) -> float:
    """The share of the query's distinct terms that occur in the text, longer terms weighing more."""
    terms = set(tokenize(query))
    if not terms:
        return 0.0
    present = set(tokenize(text))
    weights = {term: math.log1p(len(term)) for term in terms}
    return sum(weight for term, weight in weights.items() if term in present) / sum(weights.values())


class Retriever:
    """Searches an index with its embedder (and an optional cross-encoder reranker)."""

    def __init__(self, store: IndexStore, embedder: Embedder, reranker: object | None = None) -> None:
        self.store = store
        self.embedder = embedder
        self.reranker = reranker

    def search(self, query: str, options: SearchOptions | None = None) -> list[Source]:
        """The best `k` passages for the query, most relevant first, each with a relevance in [0, 1]."""
        options = options or SearchOptions()
        if not query.strip():
            return []
        filtered = bool(options.path_glob or options.file_types)
        pool = options.candidates * (8 if filtered else 1)
        query_vector = self.embedder.embed_query(query) if options.mode != "lexical" else None
        rankings: list[list[int]] = []
        if query_vector is not None:
            rankings.append([chunk_id for chunk_id, _ in self.store.dense_search(query_vector, pool)])
        if options.mode != "dense":
            rankings.append([chunk_id for chunk_id, _ in self.store.lexical_search(query, pool)])
        fused = reciprocal_rank_fusion(rankings)
        ordered = sorted(fused, key=fused.__getitem__, reverse=True)
        chunks = self.store.chunks(ordered)
        ordered = [chunk_id for chunk_id in ordered if chunk_id in chunks and self._allowed(chunks[chunk_id], options)]
        ordered = self._drop_duplicates(ordered, chunks)[: max(options.candidates, options.k)]
        sources = [Source(chunk=chunks[chunk_id], score=fused[chunk_id]) for chunk_id in ordered]
        self._score_relevance(query, query_vector, sources)
        if self.reranker is not None:
            sources = self._rerank(query, sources)
        sources = sources[: options.k]
        if options.merge_neighbours:
            sources = self._merge_neighbours(sources)
        for number, source in enumerate(sources, start=1):
            source.number = number
        return sources

    @staticmethod
    def _allowed(chunk: Chunk, options: SearchOptions) -> bool:
        if options.path_glob and not (
            fnmatch.fnmatch(chunk.path, options.path_glob) or PurePath(chunk.path).match(options.path_glob)
        ):
            return False
        if options.file_types:
            suffix = PurePath(chunk.path).suffix.lower().lstrip(".")
            return suffix in {kind.lower().lstrip(".") for kind in options.file_types}
        return True

    @staticmethod
    def _drop_duplicates(ordered: list[int], chunks: dict[int, Chunk]) -> list[int]:
        """Keep the first of chunks with the same text (copies of a file, repeated boilerplate)."""
        seen: set[str] = set()
        kept = []
        for chunk_id in ordered:
            key = chunks[chunk_id].content_hash or " ".join(chunks[chunk_id].text.split())
            if key not in seen:
                seen.add(key)
                kept.append(chunk_id)
        return kept

    def _score_relevance(self, query: str, query_vector: np.ndarray | None, sources: list[Source]) -> None:
        """Relevance = the larger of the dense cosine and the query's term coverage (works for Chinese too)."""
        if not sources:
            return
        cosines = [0.0] * len(sources)
        if query_vector is not None:
            vectors = self.embedder.embed_documents([source.text for source in sources[:10]])
            cosines[: len(vectors)] = [float(value) for value in vectors @ query_vector]
        for source, cosine in zip(sources, cosines, strict=True):
            source.relevance = max(0.0, min(1.0, max(cosine, term_coverage(query, source.text))))

    def _rerank(self, query: str, sources: list[Source]) -> list[Source]:
        scores = self.reranker.predict([(query, source.text) for source in sources])  # type: ignore[attr-defined]
        for source, score in zip(sources, scores, strict=True):
            source.score = float(score)
        return sorted(sources, key=lambda source: source.score, reverse=True)

    def _merge_neighbours(self, sources: list[Source]) -> list[Source]:
        """Join results that are adjacent chunks of one file into one passage, in file order."""
        places = self.store.ordinals([source.chunk.id for source in sources])
        merged: list[Source] = []
        for source in sources:
            path, ordinal = places.get(source.chunk.id, (source.path, -10))
            partner = next(
                (kept for kept in merged
                 if places.get(kept.chunk.id, ("", -10))[0] == path
                 and abs(places[kept.chunk.id][1] - ordinal) == 1),
                None,
            )
            if partner is None:
                merged.append(source)
                continue
            first, second = sorted((partner, source), key=lambda item: places[item.chunk.id][1])
            partner.chunk = _joined(first.chunk, second.chunk)
            places[partner.chunk.id] = (path, places[first.chunk.id][1])
            partner.relevance = max(partner.relevance, source.relevance)
        return merged

    def is_relevant(self, sources: Sequence[Source], options: SearchOptions | None = None) -> bool:
        """False when nothing retrieved clears the calibrated relevance threshold: the agent abstains."""
        threshold = (options or SearchOptions()).min_relevance
        return any(source.relevance >= threshold for source in sources)


def _joined(first: Chunk, second: Chunk) -> Chunk:
    """Two neighbouring chunks as one: overlapping text is not repeated."""
    overlap = _overlap(first.text, second.text)
    return replace(
        first,
        text=first.text + ("" if overlap else "\n") + second.text[overlap:],
        end_line=second.end_line,
        end_char=second.end_char,
    )


def _overlap(left: str, right: str) -> int:
    """Length of the longest suffix of `left` that is a prefix of `right` (chunk overlap)."""
    for size in range(min(len(left), len(right)), 0, -1):
        if left.endswith(right[:size]):
            return size
    return 0
