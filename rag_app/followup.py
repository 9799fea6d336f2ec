"""Turning a follow-up question into one that stands alone, so retrieval sees what "it" refers to."""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import TYPE_CHECKING

from rag_app.config import GenerationSettings

if TYPE_CHECKING:
    from rag_app.models.llm import LocalLLM

_REFERRING = re.compile(
    r"\b(it|its|it's|they|them|their|this|that|these|those|he|she|him|her|his|there|one|same|also|more|"
    r"else|too|what about|how about|and)\b|[它他她其这那此该]|还|呢[？?]?$",
    re.IGNORECASE,
)
REWRITE_PROMPT = (
    "Rewrite the last question so that it can be understood without the conversation. "
    "Keep its language. Reply with the rewritten question only."
)


def last_user_messages(history: Sequence[dict[str, object]], count: int = 1) -> list[str]:
    texts = [str(message.get("content", "")) for message in history if message.get("role") == "user"]
    return texts[-count:] if texts else []


def looks_like_followup(question: str) -> bool:
    """Short questions and those that refer back (it, that, 它, 那...) lean on the conversation."""
    return len(question.split()) <= 4 or bool(_REFERRING.search(question))


def condense_deterministic(question: str, history: Sequence[dict[str, object]]) -> str:
    """Prefix a follow-up with the previous user question; the lexical and dense legs then see both."""
    previous = last_user_messages(history)
    if not previous or not looks_like_followup(question):
        return question
    return f"{previous[0]} {question}"


def condense_with_llm(question: str, history: Sequence[dict[str, object]], llm: LocalLLM) -> str:
    """Ask the LLM for a standalone question; fall back to the deterministic rewrite if it answers badly."""
    fallback = condense_deterministic(question, history)
    if fallback == question:
        return question
    conversation = "\n".join(
        f"{message.get('role')}: {message.get('content')}" for message in history[-4:]
    )
    messages = [
        {"role": "system", "content": REWRITE_PROMPT},
        {"role": "user", "content": f"Conversation:\n{conversation}\n\nLast question: {question}"},
    ]
    rewritten = llm.generate(messages, GenerationSettings(max_new_tokens=48, stop=("\n",))).strip()
    if not rewritten or len(rewritten) > 3 * len(fallback) or rewritten.lower() == question.lower():
        return fallback
    return rewritten
