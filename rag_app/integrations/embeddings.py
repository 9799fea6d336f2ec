"""The engine's embedder as LangChain `Embeddings`."""

from __future__ import annotations

from langchain_core.embeddings import Embeddings

from rag_app.config import DEFAULT_EMBEDDER
from rag_app.models.embedder import Embedder
from rag_app.models.registry import shared_embedder


class RagEmbeddings(Embeddings):
    """Embeds with a shared engine embedder (all-MiniLM-L6-v2 by default); vectors are L2-normalised."""

    def __init__(
        self, model: str = DEFAULT_EMBEDDER, device: str = "auto", embedder: Embedder | None = None
    ) -> None:
        self.embedder = embedder or shared_embedder(model, device)
        self.model = self.embedder.name

    def embed_documents(self, texts: list[str]) -> list[list[float]]:
        return self.embedder.embed_documents(list(texts)).tolist()

    def embed_query(self, text: str) -> list[float]:
        return self.embedder.embed_query(text).tolist()
