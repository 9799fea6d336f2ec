"""Which passage supports each sentence of an answer, for any model.

An answer is split into sentences (English and Chinese). Each sentence is matched against the passages it could
come from, on what it adds to the question: its content terms that the question does not already hold (the
index's own tokenizer: stemmed words, Chinese character pairs) are looked up in each passage, and every number it
states must occur there too. (A sentence that restates the question around an invented answer shares most of its
words with the passage that matched the question; only its new words show whether the passage says it.) A
sentence is supported by a passage when at least `SUPPORT_MIN` of its new terms occur in it, or
`SUPPORT_WITH_MEANING` of them do and the embedder finds a sentence of that passage that means the same (cosine at
or above the embedder's own relevance threshold). The model's `[n]` is kept when passage n supports the sentence,
moved to the passage that does, or removed; a sentence that no passage supports is marked; one that adds nothing
to the question, or states too little ("Yes."), is not checked.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from rag_app.citations import cited_numbers, strip_citations
from rag_app.index.lexical import tokenize
from rag_app.language import ends_cjk_sentence, split_sentences
from rag_app.models.embedder import Embedder
from rag_app.types import AnswerSentence, Hit

SUPPORT_MIN = 0.6
SUPPORT_WITH_MEANING = 0.35
MIN_TERMS = 2  # a sentence with fewer content terms and no number ("Yes.", "See below:") states nothing to check
_NUMBER = re.compile(r"\d+(?:[.,]\d+)*")


@dataclass(frozen=True)
class _Passage:
    number: int
    text: str
    terms: frozenset[str]
    numbers: frozenset[str]
    sentences: tuple[str, ...]


def numbers_in(text: str) -> frozenset[str]:
    """The numbers a text states, thousands separators and decimal commas normalised."""
    return frozenset(match.replace(",", "").rstrip(".") for match in _NUMBER.findall(text))


def term_coverage(terms: frozenset[str], passage_terms: frozenset[str]) -> float:
    """The share of a sentence's distinct content terms that occur in a passage."""
    return len(terms & passage_terms) / len(terms) if terms else 0.0


class Attributor:
    """Attributes sentences to the passages an answer was given (numbered hits)."""

    def __init__(self, hits: Sequence[Hit], embedder: Embedder | None = None, meaning_cosine: float = 1.01,
                 question: str = "") -> None:
        self.question_terms = frozenset(tokenize(question))
        self.passages = [
            _Passage(hit.number, hit.text, frozenset(tokenize(hit.text)), numbers_in(hit.text),
                     tuple(split_sentences(hit.text)))
            for hit in hits
        ]
        self.embedder = embedder
        self.meaning_cosine = meaning_cosine
        self._sentence_vectors: dict[int, np.ndarray] = {}

    def attribute(self, sentence: str) -> AnswerSentence:
        """The sentence (its `[n]` markers taken out) with the passages that support it, best first."""
        claimed = cited_numbers(sentence)
        text = strip_citations(sentence)
        stated = frozenset(tokenize(text))
        terms = stated - self.question_terms
        if not terms or (len(stated) < MIN_TERMS and not numbers_in(text)):
            return AnswerSentence(text, claimed, supported=True, support=1.0, checked=False)
        scored = sorted(((self._support(text, terms, passage), passage) for passage in self.passages),
                        key=lambda item: (-item[0][0], item[1].number not in claimed, item[1].number))
        backing = [(score, passage) for score, passage in scored if score[1]]
        if not backing:
            best = scored[0][0][0] if scored else 0.0
            return AnswerSentence(text, (), supported=False, support=best)
        kept = tuple(passage.number for _, passage in backing if passage.number in claimed)
        (score, evidence, _), first = backing[0][0], backing[0][1]
        return AnswerSentence(text, kept or (first.number,), supported=True, support=score, evidence=evidence)

    def _support(self, text: str, terms: frozenset[str], passage: _Passage) -> tuple[float, str, bool]:
        """(term coverage, the passage sentence closest in meaning, whether the passage supports the sentence)."""
        coverage = term_coverage(terms, passage.terms)
        if not numbers_in(text) <= passage.numbers or coverage < SUPPORT_WITH_MEANING:
            return coverage, "", False
        closest, cosine = self._closest(text, passage)
        return coverage, closest, coverage >= SUPPORT_MIN or cosine >= self.meaning_cosine

    def _closest(self, text: str, passage: _Passage) -> tuple[str, float]:
        """The passage's sentence most like `text`: by meaning with an embedder, else by shared terms."""
        if not passage.sentences:
            return passage.text, 0.0
        if self.embedder is None:
            terms = frozenset(tokenize(text))
            best = max(passage.sentences, key=lambda candidate: term_coverage(terms, frozenset(tokenize(candidate))))
            return best, 0.0
        if passage.number not in self._sentence_vectors:
            self._sentence_vectors[passage.number] = self.embedder.embed_documents(list(passage.sentences))
        cosines = self._sentence_vectors[passage.number] @ self.embedder.embed_query(text)
        best = int(np.argmax(cosines))
        return passage.sentences[best], float(cosines[best])


def attribute_answer(text: str, attributor: Attributor) -> list[AnswerSentence]:
    """Every sentence of an answer, attributed."""
    return [attributor.attribute(sentence) for sentence in split_sentences(text)]


def render(sentences: Sequence[AnswerSentence]) -> str:
    """The answer text with each sentence's citations before its full stop: "The port is 7860 [1]."."""
    text = ""
    for sentence in sentences:
        marks = f" [{', '.join(map(str, sentence.citations))}]" if sentence.citations else ""
        body, end = _split_end(sentence.text)
        text += separator(text) + f"{body}{marks}{end}"
    return text


def separator(before: str) -> str:
    """What joins a sentence to the text before it: nothing after a CJK full stop, else a space."""
    return "" if not before or ends_cjk_sentence(before) else " "


def _split_end(text: str) -> tuple[str, str]:
    """A sentence and its closing punctuation, so that a citation goes before the full stop."""
    match = re.search(r"[.!?。！？；;…]+[\"'”’」』）)]*$", text)
    return (text[: match.start()], match.group()) if match else (text, "")
