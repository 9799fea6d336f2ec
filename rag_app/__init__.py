"""rag_app: ask questions of your own documents, answered by a local model with citations."""

from __future__ import annotations

import importlib
import os
from typing import Any

# OpenMP threads that spin while waiting (the default) fight every other busy process for the cores: measured on a
# loaded 2-core machine, SmolLM2 made 5 tokens/s spinning and 16 tokens/s passive. Set before torch loads libgomp.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

__version__ = "0.1.0"

# The public API, imported on first use so that `import rag_app.config` stays light (no torch).
_PUBLIC = {
    "RagAgent": "rag_app.agent", "Response": "rag_app.agent", "AgentEvent": "rag_app.agent",
    "Index": "rag_app.index",
    "AgentSettings": "rag_app.config", "GenerationSettings": "rag_app.config", "SearchOptions": "rag_app.config",
    "ModelSettings": "rag_app.config",
    "ServedLLM": "rag_app.models.openai_llm", "ServedEmbedder": "rag_app.models.served_embedder",
    "ServerError": "rag_app.models.server_http",
    "Answer": "rag_app.types", "Chunk": "rag_app.types", "Hit": "rag_app.types", "Step": "rag_app.types",
}
__all__ = [*_PUBLIC, "__version__"]


def __getattr__(name: str) -> Any:
    if name in _PUBLIC:
        return getattr(importlib.import_module(_PUBLIC[name]), name)
    raise AttributeError(f"module 'rag_app' has no attribute {name!r}")
