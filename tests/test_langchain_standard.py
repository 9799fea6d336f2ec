"""The langchain-tests standard suites run against the LangChain adapters, with the real local models."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from langchain_core.tools import BaseTool
from langchain_tests.integration_tests import (
    ChatModelIntegrationTests,
    EmbeddingsIntegrationTests,
    RetrieversIntegrationTests,
    ToolsIntegrationTests,
)
from langchain_tests.unit_tests import ChatModelUnitTests, EmbeddingsUnitTests, ToolsUnitTests

from rag_app.integrations import RagChatModel, RagEmbeddings, RagRetriever, make_tools
from rag_app.retrieval import Retriever
from tests.facts import FACT_QUESTION

# The suites' async tests need pytest-asyncio, which this project runs in strict mode: mark the whole module
# (pytest-asyncio leaves the sync tests alone but warns about the mark on them).
pytestmark = [
    pytest.mark.asyncio,
    pytest.mark.filterwarnings("ignore:The test <Function .* is marked with '@pytest.mark.asyncio'"),
]

NO_TOOLS = "SmolLM2-135M-Instruct's chat template takes no tools, so RagChatModel.bind_tools refuses it"
CHAT_PARAMS = {"model": "SmolLM2-135M-Instruct", "device": "cpu"}


class _ChatModel:
    """Mixin: what both chat-model suites need to build RagChatModel on the embedded SmolLM2."""

    @property
    def chat_model_class(self) -> type[RagChatModel]:
        return RagChatModel

    @property
    def chat_model_params(self) -> dict[str, Any]:
        return CHAT_PARAMS

    @property
    def has_tool_calling(self) -> bool:
        """False for the default model: see NO_TOOLS (bind_tools exists for models whose template has tools)."""
        return False


class TestRagChatModelUnit(_ChatModel, ChatModelUnitTests):
    pass


class TestRagChatModelIntegration(_ChatModel, ChatModelIntegrationTests):
    @property
    def chat_model_params(self) -> dict[str, Any]:
        """Short greedy replies keep the whole suite to seconds on a CPU."""
        return {**CHAT_PARAMS, "max_tokens": 8}

    @property
    def supports_model_override(self) -> bool:
        """One loaded model per instance; a per-call `model` only renames it in traces."""
        return False


class _Embeddings:
    """Mixin: both embeddings suites build RagEmbeddings on the bundled all-MiniLM-L6-v2."""

    @property
    def embeddings_class(self) -> type[RagEmbeddings]:
        return RagEmbeddings

    @property
    def embedding_model_params(self) -> dict[str, Any]:
        return {"model": "all-MiniLM-L6-v2", "device": "cpu"}


class TestRagEmbeddingsUnit(_Embeddings, EmbeddingsUnitTests):
    pass


class TestRagEmbeddingsIntegration(_Embeddings, EmbeddingsIntegrationTests):
    pass


class TestRagRetriever(RetrieversIntegrationTests):
    engine: Retriever

    @pytest.fixture(autouse=True)
    def _open(self, fact_index: Path) -> Iterator[None]:
        self.engine = RagRetriever.from_index(fact_index, device="cpu").retriever
        yield
        self.engine.index.close()

    @property
    def retriever_constructor(self) -> type[RagRetriever]:
        return RagRetriever

    @property
    def retriever_constructor_params(self) -> dict[str, Any]:
        return {"retriever": self.engine}

    @property
    def retriever_query_example(self) -> str:
        return FACT_QUESTION


class _AgentTool:
    """Mixin: the standard tool suites get one of `make_tools(agent)` by name."""

    tool_name: str
    example: dict[str, Any]
    bound: BaseTool

    @pytest.fixture(autouse=True)
    def _bind(self, agent: Any) -> None:
        self.bound = next(tool for tool in make_tools(agent) if tool.name == self.tool_name)

    @property
    def tool_constructor(self) -> BaseTool:
        return self.bound

    @property
    def tool_invoke_params_example(self) -> dict[str, Any]:
        return self.example


class TestSearchToolUnit(_AgentTool, ToolsUnitTests):
    tool_name, example = "search_documents", {"query": "Zorblax fountain"}


class TestSearchToolIntegration(_AgentTool, ToolsIntegrationTests):
    tool_name, example = "search_documents", {"query": "Zorblax fountain"}


class TestReadToolUnit(_AgentTool, ToolsUnitTests):
    tool_name, example = "read_source", {"number": 1}


class TestReadToolIntegration(_AgentTool, ToolsIntegrationTests):
    tool_name, example = "read_source", {"number": 1}
