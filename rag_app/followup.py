"""Turning a follow-up question into one that stands alone, so retrieval sees what "it" refers to."""

from __future__ import annotations

import re
from collections.abc import Sequence

from rag_app.config import GenerationSettings
from rag_app.language import HAN_CHAR
from rag_app.models.chat import ChatLLM

_REFERRING_EN = re.compile(
    r"\b(it|its|it's|they|them|their|theirs|these|those|he|she|him|her|his|hers|same|also|else|too|"
    r"former|latter|what about|how about)\b|^\s*(and|but|so|then)\b",
    re.IGNORECASE,
)
# Chinese pronouns and demonstratives, without the words that merely contain them (其他, 应该, 那么, 还是...).
_REFERRING_ZH = re.compile(
    r"它|(?<!其)[他她]们?|(?<!应)该|其中|此|^\s*[那还]|这[个些种门项位一里样次]|那[个些种里次]|另一|上述|前者|后者|"
    r"呢\s*[？?]?\s*$"
)
_CITATION = re.compile(r"\s*\[\d+(?:\s*,\s*\d+)*\]")
ANSWER_CHARS = 200
REWRITE_PROMPT = (
    "Rewrite the last question so that it can be understood without the conversation. "
    "Keep its language. Reply with the rewritten question only."
)


def last_user_messages(history: Sequence[dict[str, object]], count: int = 1) -> list[str]:
    texts = [str(message.get("content", "")) for message in history if message.get("role") == "user"]
    return texts[-count:] if texts else []


def last_assistant_message(history: Sequence[dict[str, object]], max_chars: int = ANSWER_CHARS) -> str:
    """The latest answer without its citation markers, cut to `max_chars` (it names what "it" is)."""
    answers = [str(message.get("content", "")) for message in history if message.get("role") == "assistant"]
    return _CITATION.sub("", answers[-1])[:max_chars].strip() if answers else ""


def looks_like_followup(question: str) -> bool:
    """Questions that refer back (it, they, 它, 这, 那...) or are too short to stand alone."""
    if _REFERRING_EN.search(question) or _REFERRING_ZH.search(question):
        return True
    cjk = len(HAN_CHAR.findall(question))
    words = len(HAN_CHAR.sub(" ", question).split())
    return cjk + words <= 4 if cjk else words <= 2


def condense_deterministic(question: str, history: Sequence[dict[str, object]]) -> str:
    """The previous question and answer, then the follow-up twice: both retrieval legs see the topic, and the
    follow-up's own terms outweigh the old question's (else the passage already shown wins again)."""
    previous = last_user_messages(history)
    if not previous or not looks_like_followup(question):
        return question
    return " ".join(part for part in (previous[0], last_assistant_message(history), question, question) if part)


def condense_with_llm(question: str, history: Sequence[dict[str, object]], llm: ChatLLM) -> str:
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
