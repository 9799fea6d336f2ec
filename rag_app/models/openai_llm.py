"""A chat model behind any OpenAI-compatible server (transformers serve, vLLM, llama.cpp server, Ollama), as a
ChatLLM: no lock on our side, so concurrent sessions send concurrent requests and the server schedules them."""

from __future__ import annotations

import contextlib
import logging
import threading
from collections.abc import Iterator
from typing import Any

import openai

from rag_app.config import ENV_LLM_API_KEY, GenerationSettings
from rag_app.models.chat import Completion, supports_native_tools
from rag_app.models.openai_request import dropped_settings, request_body
from rag_app.models.openai_stream import ServedStream
from rag_app.models.server_http import RETRY_STATUSES, ServerError, connect, error_detail, unreachable
from rag_app.models.server_info import choose_model, fetch_server_info, find_window, llamacpp_props, not_served
from rag_app.models.server_tokens import served_token_counter
from rag_app.models.tokens import Messages

log = logging.getLogger(__name__)
KIND = "LLM"
START_ADVICE = ("Start one (e.g. `transformers serve MODEL_FOLDER --host 127.0.0.1 --port 8000`), or point --llm-url "
                "at a running vLLM, llama.cpp or Ollama server.")


class ServedLLM:
    """A ChatLLM over HTTP. Construction asks the server once for its models (a down server, or a model it does
    not serve, raises a ServerError naming the URL); `model=None` takes the server's only model. Tokens are
    counted with the model's tokenizer, else the server's /tokenize, else estimated; the window comes from
    `context_window`, the server, or the model's config, else an estimate (`window_estimated` True)."""

    concurrent = True
    passage_tokens = None  # a served model's size is unknown: it gets what its window holds

    def __init__(self, base_url: str, model: str | None = None, *, api_key: str | None = None,
                 tokenizer: Any = None, context_window: int | None = None, native_tools: bool | None = None,
                 dialect: str = "auto", timeout: float = 300.0, connect_timeout: float = 5.0,
                 max_retries: int = 3, backoff: float = 0.5) -> None:
        if context_window is not None and context_window < 1:
            raise ValueError(f"context_window must be a positive number of tokens, got {context_window}")
        self.base_url, self.client, self.http = connect(base_url, api_key, timeout, connect_timeout, 60.0)
        self.timeout = timeout
        self.max_retries = max_retries
        self.backoff = backoff
        self.info = fetch_server_info(self.http, self.base_url, KIND, dialect=dialect, attempts=max_retries,
                                      backoff=backoff, advice=START_ADVICE)
        self.dialect = self.info.dialect
        self.model = self.name = choose_model(self.info, model, KIND)
        self.backend = f"served at {self.base_url}"
        self.tokens, self.tokens_source = served_token_counter(self.info, self.model, self.http, tokenizer)
        props = llamacpp_props(self.http, self.info)
        sources = [self.model, *([tokenizer] if isinstance(tokenizer, str) else [])]
        window = find_window(self.info, self.model, props, sources)
        self.context_window = context_window or window.tokens
        self.window_estimated = window.estimated and not context_window
        self.window_source = "given" if context_window else window.source
        if native_tools is None:
            template = getattr(self.tokens, "chat_template", None) or props.get("chat_template")
            native_tools = supports_native_tools(template)
        self.native_tools = native_tools
        self.in_flight = self.peak_in_flight = 0
        self._flight_lock = threading.Lock()
        self._warned = False

    def __repr__(self) -> str:
        return (f"ServedLLM({self.base_url!r}, {self.model!r}, dialect={self.dialect!r}, "
                f"window={self.context_window}{'~' if self.window_estimated else ''})")

    def close(self) -> None:
        """Close the connections."""
        self.client.close()
        self.http.close()

    @contextlib.contextmanager
    def tracked(self) -> Iterator[None]:
        """Count a request in flight (`in_flight`, and the most at once in `peak_in_flight`)."""
        with self._flight_lock:
            self.in_flight += 1
            self.peak_in_flight = max(self.peak_in_flight, self.in_flight)
        try:
            yield
        finally:
            with self._flight_lock:
                self.in_flight -= 1

    def request_body(self, messages: Messages, settings: GenerationSettings,
                     tools: list[dict[str, Any]] | None = None) -> dict[str, Any]:
        """The arguments of `chat.completions.create` (tools only when the model takes them natively)."""
        dropped = dropped_settings(self.dialect, settings)
        if dropped and not self._warned:
            self._warned = True
            log.warning("the %s server at %s takes no %s per request: not sent", self.dialect, self.base_url,
                        " or ".join(dropped))
        return request_body(self.model, self.dialect, messages, settings, tools if self.native_tools else None)

    def stream(self, messages: Messages, settings: GenerationSettings | None = None,
               tools: list[dict[str, Any]] | None = None) -> Completion:
        """The reply as it streams (nothing is sent until it is read); closing it closes the HTTP stream."""
        request = ServedStream(self, list(messages), settings or GenerationSettings(), tools)
        return Completion(request.pieces(), request.cancel)

    def generate(self, messages: Messages, settings: GenerationSettings | None = None,
                 tools: list[dict[str, Any]] | None = None) -> str:
        """The whole reply as one string (the same path as `stream`)."""
        return "".join(self.stream(messages, settings, tools))

    def translate_error(self, error: BaseException) -> ServerError:
        """A ServerError that names the URL and says what to do."""
        if isinstance(error, ServerError):
            return error
        if isinstance(error, openai.APITimeoutError):
            return ServerError(f"the LLM server at {self.base_url} did not answer within {self.timeout:g} s; it may "
                               "be overloaded, or the prompt too long for it", self.base_url)
        if isinstance(error, openai.APIConnectionError):
            return unreachable(KIND, self.base_url, error, START_ADVICE)
        if isinstance(error, openai.APIStatusError):
            return self._status_error(error.status_code, error_detail(error))
        return ServerError(f"the LLM server at {self.base_url} failed while generating: {error_detail(error)}",
                           self.base_url)

    def _status_error(self, status: int, detail: str) -> ServerError:
        if status in (401, 403):
            return ServerError(f"the LLM server at {self.base_url} refused the API key ({status}: {detail}); set "
                               f"{ENV_LLM_API_KEY}", self.base_url, status)
        if status == 404 or "model" in detail.lower():
            with contextlib.suppress(ServerError):
                ids = fetch_server_info(self.http, self.base_url, KIND, attempts=0).ids
                if ids and self.model not in ids:
                    return ServerError(not_served(KIND, self.base_url, self.model, ids), self.base_url, status, ids)
        if status in RETRY_STATUSES:
            return ServerError(f"the LLM server at {self.base_url} is busy or unavailable ({status}: {detail}), "
                               f"still after {self.max_retries} retries", self.base_url, status)
        return ServerError(f"the LLM server at {self.base_url} refused the request ({status}: {detail})",
                           self.base_url, status)
