"""rag_app: ask questions of your own documents, answered by a local model with citations."""

__version__ = "0.1.0"
