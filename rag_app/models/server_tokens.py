"""Token counting for a served model, the best way available: the model's own tokenizer and chat template (a
local folder or the HF cache), else the server's tokenize endpoint, else a stated estimate."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import httpx

from rag_app.models.openai_request import wire_messages
from rag_app.models.server_info import ServerInfo, local_model_file
from rag_app.models.tokens import EstimateTokenCounter, HFTokenCounter, Messages, TokenCounter, partition_spans

TOKENIZE_DIALECTS = ("vllm", "llamacpp")


class ServerTokenCounter:
    """Exact counts from the server's own tokenizer; it returns no token boundaries, so `spans` divides a text
    into the exact number of tokens by estimated weight.

    vLLM: POST /tokenize {"model", "messages", "add_generation_prompt"} or {"model", "prompt"} -> {"count"}.
    llama.cpp: POST /apply-template {"messages"} -> {"prompt"}, then POST /tokenize {"content"} -> {"tokens"}.
    """

    exact = True

    def __init__(self, info: ServerInfo, model: str, http: httpx.Client) -> None:
        if info.dialect not in TOKENIZE_DIALECTS:
            raise ValueError(f"no tokenize endpoint is known for a {info.dialect} server")
        self.root_url = info.root_url
        self.dialect = info.dialect
        self.model = model
        self.http = http

    @classmethod
    def probe(cls, info: ServerInfo, model: str, http: httpx.Client) -> ServerTokenCounter | None:
        """The counter when the server answers its tokenize endpoint, else None."""
        if info.dialect not in TOKENIZE_DIALECTS:
            return None
        counter = cls(info, model, http)
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
        if self.dialect == "vllm":
            return [int(self._post("/tokenize", {"model": self.model, "prompt": text,
                                                 "add_special_tokens": False})["count"]) for text in texts]
        return [len(self._post("/tokenize", {"content": text, "add_special": False})["tokens"]) for text in texts]

    def spans(self, text: str) -> list[tuple[int, int]]:
        return partition_spans(text, self.count_texts([text])[0]) if text else []


def served_token_counter(info: ServerInfo, model: str, http: httpx.Client,
                         tokenizer: str | Any | None = None) -> tuple[TokenCounter, str]:
    """The counter for `model` and where it came from: `tokenizer` (an id, folder, tokenizer or counter) when
    given; else the model's own tokenizer when the model name is a local folder or cached id; else the server's
    tokenize endpoint (vLLM, llama.cpp); else an estimate (`exact` False)."""
    if isinstance(tokenizer, str):
        return HFTokenCounter.load(tokenizer), f"tokenizer {tokenizer}"
    if tokenizer is not None:
        return (tokenizer if hasattr(tokenizer, "count_chat") else HFTokenCounter(tokenizer)), "given"
    if local_model_file(model, "tokenizer_config.json"):
        try:
            return HFTokenCounter.load(model, local_only=True), f"tokenizer {model}"
        except Exception:  # a folder without a loadable tokenizer: try the next way
            pass
    counter = ServerTokenCounter.probe(info, model, http)
    if counter is not None:
        return counter, f"{info.dialect} /tokenize"
    return EstimateTokenCounter(), "estimate"
