"""Fusing the dense and lexical legs' rankings into one: the same functions for every backend."""

from __future__ import annotations

from collections.abc import Sequence

from rag_app.index.backend import SearchRequest


def reciprocal_rank_fusion(rankings: Sequence[Sequence[int]], k: int) -> dict[int, float]:
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
         request: SearchRequest) -> dict[int, float]:
    """One fused score per candidate from the dense and lexical hit lists, by `request.fusion`."""
    if request.fusion == "weighted":
        return weighted_fusion([(dense, request.dense_weight), (lexical, 1.0 - request.dense_weight)])
    return reciprocal_rank_fusion([[i for i, _ in hits] for hits in (dense, lexical) if hits], request.rrf_k)
