"""LangChain interop: the local LLM, embedder, retriever and agent tools as langchain-core components."""

from rag_app.integrations.chat_model import RagChatModel
from rag_app.integrations.embeddings import RagEmbeddings
from rag_app.integrations.retriever import RagRetriever, format_docs
from rag_app.integrations.tools import make_tools

__all__ = ["RagChatModel", "RagEmbeddings", "RagRetriever", "format_docs", "make_tools"]
