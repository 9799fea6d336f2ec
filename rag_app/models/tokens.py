"""Token counting as the prompt budget needs it: whole chat prompts, plain texts, and where each token lies."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Protocol

Messages = list[dict[str, Any]]


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
    """Exact counts through a Hugging Face tokenizer and its own chat template."""

    exact = True

    def __init__(self, tokenizer: Any) -> None:
        self.tokenizer = tokenizer

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
        return [tuple(span) for span in
                self.tokenizer(text, add_special_tokens=False, return_offsets_mapping=True)["offset_mapping"]]
