"""Citations checked against what was retrieved, and the evidence sentences that support an answer."""

from __future__ import annotations

import math
import re
from collections.abc import Sequence
from dataclasses import replace

from rag_app.index.lexical import tokenize
from rag_app.language import split_sentences
from rag_app.models.embedder import Embedder
from rag_app.types import Hit

_CITATION = re.compile(r"[\[［【]\s*(\d+(?:\s*[,，、]\s*\d+)*)\s*[\]］】]")
_SEPARATOR = re.compile(r"\s*[,，、]\s*")
_LIST_MARKER = re.compile(r"^(?:[-*+>]|\d+[.)])\s+")
_QUESTION_MARK = re.compile(r"[?？]")
_TABLE_HEADER = re.compile(r"^\|.*\|[ \t]*\n\|[\s:|-]+\|[ \t]*$", re.MULTILINE)
MIN_COSINE = 0.45
COSINE_WEIGHT = 0.25


def verify_citations(text: str, allowed: Sequence[int]) -> tuple[str, list[int]]:
    """Remove every `[n]` whose n is not an allowed passage number; return the text and the numbers kept.

    Groups like `[1, 9]`, `[1，9]` or `【1】` are understood; kept groups are written as `[1]` or `[1, 2]`.
    """
    valid = set(allowed)
    kept: list[int] = []

    def replace(match: re.Match[str]) -> str:
        numbers = [int(part) for part in _SEPARATOR.split(match.group(1))]
        good = list(dict.fromkeys(number for number in numbers if number in valid))
        kept.extend(number for number in good if number not in kept)
        return "[" + ", ".join(str(number) for number in good) + "]" if good else ""

    cleaned = _CITATION.sub(replace, text)
    cleaned = re.sub(r"[ \t]+([.,;:!?。，；])", r"\1", cleaned)
    return re.sub(r"[ \t]{2,}", " ", cleaned).strip(), kept


def statement(sentence: str) -> str | None:
    """The sentence without a list marker, or None when it states nothing: a heading, a question (or one
    quoted in it), a code fence, or fewer than two terms."""
    text = _LIST_MARKER.sub("", sentence.strip()).strip()
    if text.startswith(("#", "```")) or _QUESTION_MARK.search(text):
        return None
    return text if len(tokenize(text)) >= 2 else None


def evidence_sentences(
    question: str,
    sources: Sequence[Hit],
    embedder: Embedder | None = None,
    limit: int = 3,
    per_source: int = 2,
) -> tuple[list[Hit], list[str]]:
    """The hits, each with its own best sentences as `evidence`, and the statements of the top three passages
    that best support an answer to the question.

    Headings, questions (asked or quoted) and table header rows are skipped. A candidate must say something the
    question does not (a term outside it) and share a key term with the question or, with an embedder, be close
    to it in meaning (cosine at least MIN_COSINE). Score: the length-weighted share of the question's terms it
    contains, plus COSINE_WEIGHT times its cosine to the question when an embedder is given.
    """
    terms = set(tokenize(question))
    weight = {term: math.sqrt(len(term)) for term in terms}
    total = sum(weight.values())
    candidates: list[tuple[int, str, float]] = []
    for position, source in enumerate(sources[:3]):
        for sentence in split_sentences(_TABLE_HEADER.sub("", source.text)):
            text = statement(sentence)
            if text is None:
                continue
            words = set(tokenize(text))
            if not words - terms:
                continue
            coverage = sum(weight[term] for term in terms & words) / total if total else 0.0
            candidates.append((position, text, coverage))
    if not candidates:
        return [replace(source, evidence=()) for source in sources], []
    cosines = [0.0] * len(candidates)
    if embedder is not None:
        vectors = embedder.embed_documents([text for _, text, _ in candidates])
        cosines = [float(value) for value in vectors @ embedder.embed_query(question)]
    scored = [
        (coverage + COSINE_WEIGHT * cosine, position, text)
        for (position, text, coverage), cosine in zip(candidates, cosines, strict=True)
        if coverage > 0 or cosine >= MIN_COSINE
    ]
    scored.sort(key=lambda item: (-item[0], item[1]))
    chosen: list[str] = []
    evidence: list[list[str]] = [[] for _ in sources]
    for _, position, text in scored:
        if len(evidence[position]) < per_source and text not in chosen:
            evidence[position].append(text)
            chosen.append(text)
    hits = [replace(source, evidence=tuple(found)) for source, found in zip(sources, evidence, strict=True)]
    return hits, chosen[:limit]
