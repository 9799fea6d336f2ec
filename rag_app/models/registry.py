"""Models are loaded once per process and shared by every index, session and face; one factory picks the
backend the settings name (a server at `llm_url` / `embedder_url`, else in process)."""

from __future__ import annotations

import threading
from functools import lru_cache
from pathlib import Path

from rag_app.config import DEFAULT_LLM, ModelSettings
from rag_app.models.chat import ChatLLM
from rag_app.models.device import resolve_device
from rag_app.models.embedder import Embedder, load_embedder
from rag_app.models.llm import LocalLLM
from rag_app.models.openai_llm import ServedLLM
from rag_app.models.served_embedder import ServedEmbedder

_lock = threading.Lock()


@lru_cache(maxsize=4)
def _embedder(name: str, device: str) -> Embedder:
    return load_embedder(name, device)


@lru_cache(maxsize=4)
def _served_embedder(url: str, name: str | None, api_key: str | None) -> ServedEmbedder:
    return ServedEmbedder(url, name, api_key=api_key)


@lru_cache(maxsize=2)
def _llm(name: str, device: str, context_window: int | None, cache: Path | None) -> LocalLLM:
    return LocalLLM.load(name, device, context_window, cache)


@lru_cache(maxsize=4)
def _served_llm(url: str, model: str | None, api_key: str | None, context_window: int | None) -> ServedLLM:
    return ServedLLM(url, model, api_key=api_key, context_window=context_window)


def shared_embedder(name: str, device: str = "auto") -> Embedder:
    """The in-process embedder of that name (`auto` is resolved first, so that one asked for on `auto` and one
    asked for on the device it resolves to are one model: an index's and a second judge's MiniLM)."""
    with _lock:
        return _embedder(name, resolve_device(device) if device == "auto" else device)


def shared_llm(
    name: str, device: str = "auto", context_window: int | None = None, cache: Path | None = None
) -> LocalLLM:
    """The in-process LLM of that name."""
    with _lock:
        return _llm(name, device, context_window, cache)


def load_llm(models: ModelSettings) -> ChatLLM:
    """The LLM the settings name: served at `llm_url` (`llm` None: the server's only model), else in process."""
    if models.llm_url:
        with _lock:
            return _served_llm(models.llm_url, models.llm, models.llm_api_key, models.context_window)
    return shared_llm(models.llm or DEFAULT_LLM, models.device, models.context_window)


def embedder_choice(models: ModelSettings) -> str | Embedder | None:
    """What `Index.open` / `Index.create` take for these settings: the embedder served at `embedder_url`, else
    the embedder's name (None: the index decides)."""
    if models.embedder_url:
        with _lock:
            return _served_embedder(models.embedder_url, models.embedder, models.embedder_api_key)
    return models.embedder
