"""Hybrid search over one index: dense (FAISS) and lexical (BM25) legs, fused, filtered, shaped, judged."""

from __future__ import annotations

import fnmatch
import math
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, replace
from pathlib import PurePath
from typing import Literal

import numpy as np

from rag_app.index.lexical import tokenize
from rag_app.index.store import IndexStore
from rag_app.models.embedder import Embedder
from rag_app.rerank import Reranker
from rag_app.types import Chunk, Source

SearchMode = Literal["hybrid", "dense", "lexical"]
SEARCH_MODES: tuple[SearchMode, ...] = ("hybrid", "dense", "lexical")
FusionMethod = Literal["rrf", "weighted"]
FUSION_METHODS: tuple[FusionMethod, ...] = ("rrf", "weighted")
RRF_K = 1  # tuned on SciFact train (docs/retrieval.md): 0.7236 nDCG@10 against 0.7046 at the usual 60
NEAR_DUPLICATE_COSINE = 0.98
RELEVANCE_DEPTH = 10


@dataclass(frozen=True)
class SearchOptions:
    """How to search: result count, mode, filters, fusion, the candidate pool, and the abstain threshold."""

    k: int = 5
    mode: SearchMode = "hybrid"
    path_glob: str | None = None
    file_types: tuple[str, ...] = ()
    candidates: int = 100
    merge_neighbours: bool = True
    min_relevance: float = 0.5
    fusion: FusionMethod = "rrf"
    rrf_k: int = RRF_K
    dense_weight: float = 0.5
    rerank_depth: int = 30


def reciprocal_rank_fusion(rankings: Sequence[Sequence[int]], k: int = RRF_K) -> dict[int, float]:
    """Sum of 1 / (k + rank) over the rankings each id appears in."""
    fused: dict[int, float] = {}
    for ranking in rankings:
        for rank, chunk_id in enumerate(ranking, start=1):
            fused[chunk_id] = fused.get(chunk_id, 0.0) + 1.0 / (k + rank)
    return fused


def weighted_fusion(legs: Sequence[tuple[Sequence[tuple[int, float]], float]]) -> dict[int, float]:
    """Sum of weight * min-max-normalised score over the legs (a leg's list: (id, score), best first)."""
    fused: dict[int, float] = {}
    for hits, weight in legs:
        if not hits:
            continue
        scores = [score for _, score in hits]
        low, span = min(scores), (max(scores) - min(scores)) or 1.0
        for chunk_id, score in hits:
            fused[chunk_id] = fused.get(chunk_id, 0.0) + weight * (score - low) / span
    return fused


def fuse(dense: Sequence[tuple[int, float]], lexical: Sequence[tuple[int, float]],
         options: SearchOptions) -> dict[int, float]:
    """One fused score per candidate from the dense and lexical hit lists, by `options.fusion`."""
    if options.fusion == "weighted":
        return weighted_fusion([(dense, options.dense_weight), (lexical, 1.0 - options.dense_weight)])
    return reciprocal_rank_fusion([[i for i, _ in hits] for hits in (dense, lexical) if hits], options.rrf_k)


def term_coverage(query: str, text: str, idf: Mapping[str, float] | None = None) -> float:
    """The share of the query's distinct terms that occur in the text, each term weighted by its IDF.

    Without IDFs, longer terms weigh more. With them, a rare term (or one the index has never seen, such as
    "tungsten" over a cookbook) dominates: a passage that lacks the query's specific words scores low.
    """
    terms = set(tokenize(query))
    if not terms:
        return 0.0
    present = set(tokenize(text))
    weights = {term: idf[term] if idf is not None else math.log1p(len(term)) for term in terms}
    total = sum(weights.values())
    return sum(weight for term, weight in weights.items() if term in present) / total if total else 0.0


class TermStatistics:
    """Inverse document frequencies of query terms over an index's chunks."""

    def __init__(self, store: IndexStore) -> None:
        self.store = store

    def idf(self, terms: Iterable[str]) -> dict[str, float]:
        """BM25's IDF, log(1 + (N - df + 0.5) / (df + 0.5)); a term in no chunk gets the largest value."""
        chunks = self.store.count_chunks()
        frequencies = self.store.document_frequencies(list(terms))
        return {term: math.log1p((chunks - frequency + 0.5) / (frequency + 0.5))
                for term, frequency in frequencies.items()}


class Retriever:
    """Searches an index with its embedder (and an optional cross-encoder reranker, see rag_app.rerank)."""

    def __init__(self, store: IndexStore, embedder: Embedder, reranker: Reranker | None = None) -> None:
        self.store = store
        self.embedder = embedder
        self.reranker = reranker
        self.terms = TermStatistics(store)

    def search(self, query: str, options: SearchOptions | None = None) -> list[Source]:
        """The best `k` passages for the query, most relevant first, each with a relevance in [0, 1]."""
        options = options or SearchOptions()
        if options.k < 1 or options.candidates < 1:
            raise ValueError(f"k and candidates must be at least 1 (got k={options.k}, "
                             f"candidates={options.candidates})")
        if not query.strip():
            return []
        filtered = bool(options.path_glob or options.file_types)
        pool = max(options.candidates, options.k) * (8 if filtered else 1)
        query_vector = self.embedder.embed_query(query)
        dense = self.store.dense_search(query_vector, pool) if options.mode != "lexical" else []
        lexical = self.store.lexical_search(query, pool) if options.mode != "dense" else []
        fused = fuse(dense, lexical, options)
        ordered = sorted(fused, key=fused.__getitem__, reverse=True)
        chunks = self.store.chunks(ordered)
        ordered = [chunk_id for chunk_id in ordered if chunk_id in chunks and self._allowed(chunks[chunk_id], options)]
        depth = max(options.k, options.rerank_depth if self.reranker is not None else 0)
        vectors = self.store.known_vectors(chunks[chunk_id].content_hash for chunk_id in ordered)
        ordered = self._drop_duplicates(ordered, chunks, vectors, depth)
        sources = [Source(chunk=chunks[chunk_id], score=fused[chunk_id]) for chunk_id in ordered]
        self._score_relevance(query, query_vector, sources, vectors)
        if self.reranker is not None:
            sources = self.reranker.rerank(query, sources)
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
    def _drop_duplicates(ordered: list[int], chunks: dict[int, Chunk], vectors: dict[str, np.ndarray],
                         limit: int) -> list[int]:
        """The first `limit` chunks that are neither copies nor near-copies (cosine >= 0.98) of a better one."""
        seen: set[str] = set()
        kept: list[int] = []
        kept_vectors = np.zeros((limit, next(iter(vectors.values())).shape[0] if vectors else 1), dtype=np.float32)
        count = 0
        for chunk_id in ordered:
            chunk = chunks[chunk_id]
            key = chunk.content_hash or " ".join(chunk.text.split())
            vector = vectors.get(chunk.content_hash)
            if key in seen or (vector is not None and count and
                               float(np.max(kept_vectors[:count] @ vector)) >= NEAR_DUPLICATE_COSINE):
                continue
            seen.add(key)
            kept.append(chunk_id)
            if vector is not None:
                kept_vectors[count] = vector
                count += 1
            if len(kept) >= limit:
                break
        return kept

    def _score_relevance(self, query: str, query_vector: np.ndarray, sources: list[Source],
                         vectors: dict[str, np.ndarray]) -> None:
        """Relevance of the top passages from stored vectors (no re-embedding) and IDF-weighted term coverage."""
        idf = self.terms.idf(set(tokenize(query)))
        calibration = calibration_for(self.embedder.name, query)
        for source in sources[:RELEVANCE_DEPTH]:
            vector = vectors.get(source.chunk.content_hash)
            cosine = float(vector @ query_vector) if vector is not None else 0.0
            source.relevance = relevance(cosine, term_coverage(query, source.text, idf), calibration)

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


@dataclass(frozen=True)
class RelevanceCalibration:
    """The dense cosine and the IDF-weighted term coverage that each, alone, make a passage relevant."""

    cosine: float
    coverage: float


# Chosen to minimise false-answer + false-abstain rates on bench/data (docs/retrieval.md), with the lexical
# tokenizer snowball-words+cjk-bigrams-2. all-MiniLM-L6-v2 is English-only, so for Chinese queries neither
# signal separates well. Other embedders use these values until they are measured.
CALIBRATION: dict[tuple[str, bool], RelevanceCalibration] = {
    ("all-MiniLM-L6-v2", False): RelevanceCalibration(cosine=0.52, coverage=0.60),
    ("all-MiniLM-L6-v2", True): RelevanceCalibration(cosine=0.60, coverage=0.45),
}
_CJK_CHARACTER = re.compile(r"[\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff]")


def calibration_for(embedder_name: str, query: str) -> RelevanceCalibration:
    """The thresholds for this embedder and the query's script (CJK or not)."""
    cjk = bool(_CJK_CHARACTER.search(query))
    return CALIBRATION.get((embedder_name, cjk), CALIBRATION[("all-MiniLM-L6-v2", cjk)])


def _scaled(value: float, threshold: float) -> float:
    """Piecewise-linear map of [0, threshold, 1] onto [0, 0.5, 1]."""
    if value < threshold:
        return 0.5 * max(value, 0.0) / threshold
    return 0.5 + 0.5 * min((value - threshold) / max(1.0 - threshold, 1e-9), 1.0)


def relevance(cosine: float, coverage: float, calibration: RelevanceCalibration) -> float:
    """A passage's relevance in [0, 1]: 0.5 (the default `min_relevance`) where either signal meets its threshold."""
    return max(_scaled(cosine, calibration.cosine), _scaled(coverage, calibration.coverage))


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
