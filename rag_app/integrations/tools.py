"""The agent's tools, `search_documents` and `read_source`, as LangChain tools for users' own agents."""

from __future__ import annotations

from langchain_core.documents import Document
from langchain_core.tools import BaseTool, StructuredTool
from pydantic import BaseModel, Field

from rag_app.agent import RagAgent
from rag_app.integrations.retriever import to_document
from rag_app.react import READ_TOOL, SEARCH_TOOL
from rag_app.retrieval import Retriever, SearchOptions


class SearchInput(BaseModel):
    query: str = Field(description="what to search for in the user's documents")


class ReadInput(BaseModel):
    chunk_id: int = Field(description="the chunk id of a passage that search_documents returned")
    radius: int = Field(default=1, ge=0, le=5, description="how many chunks to add on either side")


def make_tools(agent: RagAgent | Retriever, options: SearchOptions | None = None) -> list[BaseTool]:
    """`search_documents` and `read_source` over an agent's index (with its settings) or a retriever."""
    retriever = agent.retriever if isinstance(agent, RagAgent) else agent
    if options is None and isinstance(agent, RagAgent):
        settings = agent.settings
        options = SearchOptions(k=settings.k, mode=settings.mode, path_glob=settings.path_glob,
                                file_types=tuple(settings.file_types))

    def search_documents(query: str) -> tuple[str, list[Document]]:
        sources = retriever.search(query, options)
        if not sources:
            return "no passages found", []
        text = "\n\n".join(f"[chunk {source.chunk.id}] {source.chunk.location} "
                           f"(relevance {source.relevance:.2f})\n{source.text}" for source in sources)
        return text, [to_document(source) for source in sources]

    def read_source(chunk_id: int, radius: int = 1) -> str:
        around = retriever.store.neighbours(chunk_id, radius)
        if not around:
            return f"there is no chunk {chunk_id}"
        first, last = around[0], around[-1]
        header = f"{first.path}, lines {first.start_line}-{last.end_line}" if first.start_line else first.path
        return header + "\n" + "\n".join(chunk.text for chunk in around)

    return [
        StructuredTool.from_function(
            search_documents, name=SEARCH_TOOL, args_schema=SearchInput,
            response_format="content_and_artifact",
            description="Search the user's documents; returns the best passages with their chunk ids.",
        ),
        StructuredTool.from_function(
            read_source, name=READ_TOOL, args_schema=ReadInput,
            description="Read a passage (by chunk id) together with the text around it in its file.",
        ),
    ]
