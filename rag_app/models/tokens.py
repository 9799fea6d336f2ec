"""Exact prompt token counts through the tokenizer's own chat template."""

from __future__ import annotations

from typing import Any


def chat_token_ids(
    tokenizer: Any, messages: list[dict[str, str]], tools: list[dict[str, Any]] | None = None
) -> list[int]:
    """The prompt's token ids as the model sees them: chat template (with tools, if any) plus the generation prompt."""
    encoded = tokenizer.apply_chat_template(messages, tools=tools, add_generation_prompt=True, tokenize=True)
    if isinstance(encoded, dict) or hasattr(encoded, "input_ids"):
        encoded = encoded["input_ids"]
    return list(encoded)


def count_chat_tokens(tokenizer: Any, messages: list[dict[str, str]]) -> int:
    """How many tokens `messages` take as a prompt."""
    return len(chat_token_ids(tokenizer, messages))
