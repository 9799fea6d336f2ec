"""The engine's hybrid retriever as a LangChain `BaseRetriever`."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from langchain_core.callbacks import CallbackManagerForRetrieverRun
from langchain_core.documents import Document
from langchain_core.retrievers import BaseRetriever

from rag_app.config import SearchMode, SearchOptions
from rag_app.index import Index
from rag_app.retrieval import Retriever
from rag_app.types import Hit


def to_document(hit: Hit) -> Document:
    """A retrieved passage as a Document whose metadata says where it came from and how well it matched."""
    chunk = hit.chunk
    return Document(
        page_content=hit.text,
        id=str(chunk.id),
        metadata={
            "source": chunk.path, "path": chunk.path, "location": chunk.label(), "page": chunk.page,
            "heading": chunk.heading, "start_line": chunk.start_line, "end_line": chunk.end_line,
            "score": hit.score, "relevance": hit.relevance, "chunk_id": chunk.id, "number": hit.number,
        },
    )


def format_docs(documents: Sequence[Document]) -> str:
    """Documents as numbered passages with their places, ready for a prompt that asks for [n] citations."""
    return "\n\n".join(
        f"[{number}] {document.metadata.get('location', document.metadata.get('path', ''))}\n"
        f"{document.page_content}"
        for number, document in enumerate(documents, start=1)
    )


class RagRetriever(BaseRetriever):
    """Searches one index; `k`, `mode` and the filters can also be given per call (`invoke(q, k=3)`).

    With `merge_neighbours` (the engine's default) adjacent hits from one file come back as one passage.
    """

    retriever: Retriever
    k: int = 4
    mode: SearchMode = "hybrid"
    path_glob: str | None = None
    file_types: tuple[str, ...] = ()
    merge_neighbours: bool = True

    @classmethod
    def from_index(
        cls, index: str | Path | Index, *, embedder: str | None = None, device: str = "auto", **fields: Any
    ) -> RagRetriever:
        """Search an index (a location is opened with the embedder it was built with, or `embedder`)."""
        opened = index if isinstance(index, Index) else Index.open(index, embedder, device)
        return cls(retriever=Retriever(opened), **fields)

    def _get_relevant_documents(
        self, query: str, *, run_manager: CallbackManagerForRetrieverRun, **overrides: Any
    ) -> list[Document]:
        options = SearchOptions(k=self.k, mode=self.mode, path_glob=self.path_glob,
                                file_types=tuple(self.file_types), merge_neighbours=self.merge_neighbours)
        return [to_document(hit) for hit in self.retriever.search(query, options.with_overrides(**overrides))]
