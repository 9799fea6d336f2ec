"""Models are loaded once per process and shared by every index, session and face."""

from __future__ import annotations

import threading
from functools import lru_cache
from pathlib import Path

from rag_app.models.embedder import Embedder, load_embedder
from rag_app.models.llm import LocalLLM

_lock = threading.Lock()


@lru_cache(maxsize=4)
def _embedder(name: str, device: str) -> Embedder:
    return load_embedder(name, device)


@lru_cache(maxsize=2)
def _llm(name: str, device: str, context_window: int | None, cache: Path | None) -> LocalLLM:
    return LocalLLM.load(name, device, context_window, cache)


def shared_embedder(name: str, device: str = "auto") -> Embedder:
    with _lock:
        return _embedder(name, device)


def shared_llm(
    name: str, device: str = "auto", context_window: int | None = None, cache: Path | None = None
) -> LocalLLM:
    with _lock:
        return _llm(name, device, context_window, cache)
