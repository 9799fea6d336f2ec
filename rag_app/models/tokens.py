"""Token counting as the prompt budget needs it: whole chat prompts, plain texts, and where each token lies."""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from typing import Any, Protocol, runtime_checkable

Messages = list[dict[str, Any]]


@runtime_checkable
class TokenCounter(Protocol):
    """Counts tokens the way a model sees them; `exact` is False when the counts are estimates."""

    exact: bool

    def count_chat(self, messages: Messages, tools: list[dict[str, Any]] | None = None) -> int:
        """Tokens of a chat prompt: template, tools and the generation prompt included."""
        ...

    def count_texts(self, texts: Sequence[str]) -> list[int]:
        """Tokens of each plain text, without special tokens."""
        ...

    def spans(self, text: str) -> list[tuple[int, int]]:
        """The character span of each token of `text` (for clipping at a token boundary)."""
        ...


class HFTokenCounter:
    """Exact counts through a Hugging Face tokenizer and its own chat template.

    No lock: these calls never set truncation or padding, so the Rust tokenizer is only read, and reads may
    run in parallel (8 threads counting chats, texts and spans and encoding for 6 s: no error). The embedder's
    counter is another matter: sentence-transformers truncates, so it keeps its own copy (embedder.py)."""

    exact = True

    def __init__(self, tokenizer: Any) -> None:
        self.tokenizer = tokenizer

    @classmethod
    def load(cls, source: str, local_only: bool = False) -> HFTokenCounter:
        """From a model id or folder (`local_only`: the folder or the local HF cache, never the network)."""
        from transformers import AutoTokenizer

        return cls(AutoTokenizer.from_pretrained(source, local_files_only=local_only))

    @property
    def chat_template(self) -> str | None:
        return getattr(self.tokenizer, "chat_template", None)

    def chat_ids(self, messages: Messages, tools: list[dict[str, Any]] | None = None) -> list[int]:
        """The prompt's token ids as the model sees them: chat template (with tools) plus the generation prompt."""
        encoded = self.tokenizer.apply_chat_template(messages, tools=tools, add_generation_prompt=True, tokenize=True)
        if isinstance(encoded, dict) or hasattr(encoded, "input_ids"):
            encoded = encoded["input_ids"]
        return list(encoded)

    def count_chat(self, messages: Messages, tools: list[dict[str, Any]] | None = None) -> int:
        return len(self.chat_ids(messages, tools))

    def count_texts(self, texts: Sequence[str]) -> list[int]:
        if not texts:
            return []
        return [len(ids) for ids in self.tokenizer(list(texts), add_special_tokens=False)["input_ids"]]

    def spans(self, text: str) -> list[tuple[int, int]]:
        if not getattr(self.tokenizer, "is_fast", True):  # slow tokenizers have no offsets: estimated boundaries
            return partition_spans(text, self.count_texts([text])[0]) if text else []
        return [(int(start), int(end)) for start, end in
                self.tokenizer(text, add_special_tokens=False, return_offsets_mapping=True)["offset_mapping"]]


# ---- estimates, for servers whose tokenizer is out of reach -----------------------------------------------

# Tokens per character, chosen to stay above real tokenizers on real text (measured against SmolLM2's, an
# English-centric byte-level BPE, the worst case among common ones: English prose ~0.25 tokens per character,
# digits, punctuation and a space before a digit 1 each, Chinese ~1.1-1.5 per character, emoji 3): ASCII
# letters and spaces 1/3, other ASCII 1, anything else 0.75 per UTF-8 byte (2.25 per CJK character, 3 per
# emoji). English then comes out 1.6-1.8 times the real count and the bundled Chinese guide 1.4 times; so do
# multilingual tokenizers (Qwen: ~0.7 per CJK character) even more: that wastes window, but never overflows it.
_ASCII_WEIGHTS = [1 / 3 if chr(code).isalpha() or chr(code) == " " else 1.0 for code in range(128)]
HEADROOM = 1.1  # on top of the weights above
PER_MESSAGE = 16  # role markers and separators of a chat template (SmolLM2's add 5 tokens, Llama 3's 5-8)


def _char_weight(char: str) -> float:
    code = ord(char)
    return _ASCII_WEIGHTS[code] if code < 128 else 0.75 * len(char.encode("utf-8"))


def estimate_tokens(text: str) -> int:
    """A generous token estimate with 10% headroom (weights above)."""
    return math.ceil(HEADROOM * sum(map(_char_weight, text))) if text else 0


def partition_spans(text: str, count: int) -> list[tuple[int, int]]:
    """`count` consecutive character spans covering `text`, of equal estimated weight: token boundaries when
    only the number of tokens is known."""
    if count <= 0 or not text:
        return []
    weights = [_char_weight(char) for char in text]
    total = sum(weights)
    spans: list[tuple[int, int]] = []
    start, spent, position = 0, 0.0, 0
    for number in range(1, count + 1):
        target = total * number / count
        while position < len(text) and spent + weights[position] / 2 < target:
            spent += weights[position]
            position += 1
        if number == count:
            position = len(text)
        spans.append((start, position))
        start = position
    return spans


def _message_text(message: dict[str, Any]) -> str:
    content = message.get("content") or ""
    if isinstance(content, list):  # content parts
        content = " ".join(part.get("text", "") for part in content if isinstance(part, dict))
    calls = json.dumps(message["tool_calls"], ensure_ascii=False) if message.get("tool_calls") else ""
    return f"{content}{calls}"


class EstimateTokenCounter:
    """Counts without a tokenizer, on the generous side (`exact` False): weighted characters +10%, +16 per
    message. Spans are estimated too, and always as many as `count_texts` says."""

    exact = False

    def count_chat(self, messages: Messages, tools: list[dict[str, Any]] | None = None) -> int:
        total = sum(estimate_tokens(_message_text(message)) + PER_MESSAGE for message in messages)
        if tools:
            total += estimate_tokens(json.dumps(tools, ensure_ascii=False)) + PER_MESSAGE
        return total + PER_MESSAGE  # the generation prompt and any preamble of the template

    def count_texts(self, texts: Sequence[str]) -> list[int]:
        return [estimate_tokens(text) for text in texts]

    def spans(self, text: str) -> list[tuple[int, int]]:
        return partition_spans(text, estimate_tokens(text))
