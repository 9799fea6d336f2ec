"""The agent's tools, `search_documents` and `read_source`, as LangChain tools for users' own agents.

They are the agent's own `ToolBox` (rag_app.react): the same search options, the same relevance threshold, and
the same contract: passages are numbered as they are found, and `read_source(number)` reads around one.
"""

from __future__ import annotations

from langchain_core.documents import Document
from langchain_core.tools import BaseTool, StructuredTool
from pydantic import BaseModel, Field

from rag_app.agent import RagAgent
from rag_app.config import SearchOptions
from rag_app.integrations.retriever import to_document
from rag_app.react import READ_TOOL, SEARCH_TOOL, ToolBox
from rag_app.retrieval import Retriever


class SearchInput(BaseModel):
    query: str = Field(description="what to search for in the user's documents")


class ReadInput(BaseModel):
    number: int = Field(description="the number of a passage that search_documents returned, e.g. 2")
    radius: int = Field(default=1, ge=0, le=5, description="how many chunks to add on either side")


def make_tools(source: RagAgent | Retriever, options: SearchOptions | None = None) -> list[BaseTool]:
    """`search_documents` and `read_source` over an agent's index (with its search settings) or a retriever.

    Only passages that clear the relevance threshold (`min_relevance`) are numbered and returned."""
    if isinstance(source, RagAgent):
        retriever, options = source.retriever, options or source.settings.search
    else:
        retriever = source
    tools = ToolBox(retriever, options or SearchOptions(), passage_text=True)

    def search_documents(query: str) -> tuple[str, list[Document]]:
        text = tools.search_documents(query)
        return text, [to_document(hit) for hit in tools.found if hit.number]

    def read_source(number: int, radius: int = 1) -> str:
        return tools.read_source(number, radius)

    return [
        StructuredTool.from_function(
            search_documents, name=SEARCH_TOOL, args_schema=SearchInput, response_format="content_and_artifact",
            description="Search the user's documents; returns the relevant passages, numbered.",
        ),
        StructuredTool.from_function(
            read_source, name=READ_TOOL, args_schema=ReadInput,
            description="Read a numbered passage together with the text around it in its file.",
        ),
    ]
