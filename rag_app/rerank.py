"""The optional second stage: a sentence-transformers CrossEncoder that re-orders the top candidates."""

from __future__ import annotations

from dataclasses import replace
from typing import Protocol

from rag_app.index import Query
from rag_app.models.device import resolve_device
from rag_app.types import Hit


class Reranker(Protocol):
    """Re-orders retrieved passages for a query, best first (a retrieval stage)."""

    def rerank(self, hits: list[Hit], query: Query) -> list[Hit]: ...


class CrossEncoderReranker:
    """Scores (query, passage) pairs with a CrossEncoder model (by id or folder) and sorts by that score."""

    def __init__(self, model: str, device: str = "auto", batch_size: int = 32) -> None:
        from sentence_transformers import CrossEncoder

        try:
            self.model = CrossEncoder(model, device=resolve_device(device), num_labels=1)
        except OSError as error:
            raise ValueError(
                f"cannot load the reranker {model!r} ({error}): give a sentence-transformers CrossEncoder id that "
                "is in the local Hugging Face cache, or a folder holding one"
            ) from error
        self.name = model
        self.batch_size = batch_size

    def rerank(self, hits: list[Hit], query: Query) -> list[Hit]:
        """Hits sorted by cross-encoder score (stored as `score`); relevance is left as it was."""
        if not hits:
            return []
        scores = self.model.predict([(query.text, hit.text) for hit in hits], batch_size=self.batch_size,
                                    show_progress_bar=False)
        rescored = [replace(hit, score=float(score)) for hit, score in zip(hits, scores, strict=True)]
        return sorted(rescored, key=lambda hit: hit.score, reverse=True)
