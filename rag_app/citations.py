"""Citations checked against what was retrieved, and the evidence sentences that support an answer."""

from __future__ import annotations

import re
from collections.abc import Sequence

from rag_app.index.lexical import tokenize
from rag_app.types import Source

_CITATION = re.compile(r"\[(\d+(?:\s*[,，]\s*\d+)*)\]")
_SENTENCE_END = re.compile(r"(?<=[.!?。！？；;])\s+|(?<=[。！？；])|\n+")


def verify_citations(text: str, allowed: Sequence[int]) -> tuple[str, list[int]]:
    """Remove every `[n]` whose n is not an allowed passage number; return the text and the numbers kept."""
    valid = set(allowed)
    kept: list[int] = []

    def replace(match: re.Match[str]) -> str:
        numbers = [int(part) for part in re.split(r"\s*[,，]\s*", match.group(1))]
        good = [number for number in numbers if number in valid]
        kept.extend(number for number in good if number not in kept)
        return "[" + ", ".join(str(number) for number in good) + "]" if good else ""

    cleaned = _CITATION.sub(replace, text)
    cleaned = re.sub(r"[ \t]+([.,;:!?。，；])", r"\1", cleaned)
    return re.sub(r"[ \t]{2,}", " ", cleaned).strip(), kept


def split_sentences(text: str) -> list[str]:
    """Sentences of English or Chinese text (ends: . ! ? ; 。 ！ ？ ； and line breaks)."""
    return [sentence.strip() for sentence in _SENTENCE_END.split(text) if sentence and sentence.strip()]


def evidence_sentences(question: str, sources: Sequence[Source], limit: int = 3, per_source: int = 2) -> list[str]:
    """The sentences of the top passages that share the most (weighted) terms with the question."""
    terms = set(tokenize(question))
    if not terms:
        return []
    scored: list[tuple[float, int, str]] = []
    for position, source in enumerate(sources[:3]):
        ranked = []
        for sentence in split_sentences(source.text):
            words = set(tokenize(sentence))
            overlap = sum(len(term) ** 0.5 for term in terms & words)
            if overlap > 0:
                ranked.append((overlap, sentence))
        ranked.sort(key=lambda item: item[0], reverse=True)
        source.evidence = [sentence for _, sentence in ranked[:per_source]]
        scored.extend((score, position, sentence) for score, sentence in ranked[:per_source])
    scored.sort(key=lambda item: (-item[0], item[1]))
    return [sentence for _, _, sentence in scored[:limit]]
