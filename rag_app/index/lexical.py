"""The lexical leg: a tokenizer for English and Chinese, and a BM25 index over chunk tokens (bm25s).

Measured in bench/bench_multilingual.py (docs/multilingual.md): character bigrams for Chinese runs matched or beat
jieba segmentation with no dictionary to disagree between query and passage; Snowball stemming lifted English BM25
(SciFact nDCG@10 0.645 -> 0.672).
"""

from __future__ import annotations

import logging
import re
from collections.abc import Sequence
from pathlib import Path

import bm25s
import numpy as np
import Stemmer

from rag_app.language import ASKER_WORDS_EN, HAN, HAN_CHAR, QUESTION_WORDS_EN, QUESTION_WORDS_ZH

# Han runs and other word runs apart: "\w" also matches Han, so "POWER6是IBM于2007年推出" was one token.
_TOKEN = re.compile(rf"[{HAN}]+|[^\W_{HAN}]+", re.UNICODE)
_HAN_RUN = re.compile(rf"^[{HAN}]+$")
# A short English stop list: enough to keep BM25 from matching on glue words.
_STOPWORDS = frozenset({
    "a", "an", "and", "are", "as", "at", "be", "but", "by", "for", "from", "has", "have", "how", "i", "if", "in",
    "into", "is", "it", "its", "of", "on", "or", "that", "the", "their", "then", "there", "these", "this", "to",
    "was", "were", "what", "when", "where", "which", "who", "why", "will", "with", "you", "your", "does", "do",
    "did", "can", "could", "should", "would",
})
_STEMMER = Stemmer.Stemmer("english")
# Stored chunk tokens depend on this: an index whose `lexical_tokenizer` differs must be re-tokenised.
TOKENIZER_VERSION = "snowball-words+cjk-bigrams-3"
_VERSIONED = re.compile(r"([^\W\d_]{3,})\d{1,2}")


def cjk_bigrams(run: str) -> list[str]:
    """Overlapping character pairs of a run of Chinese characters; a lone character stands for itself."""
    return [run] if len(run) == 1 else [run[i : i + 2] for i in range(len(run) - 1)]


def question_terms(question: str) -> list[str]:
    """The terms of a question that say what it is about: its tokens without the Chinese question words and the
    character pairs that straddle them ("在哪", "哪些", "些地" in "分布在哪些地区"), which a passage that answers
    the question does not contain; likewise English words that name what is asked for ("colour", "year") and
    those that name who asks ("my", "we"). Of a Chinese run, only the pairs inside one of its words (jieba's) are
    terms: "叠了" and "器一" in "编码器一共叠了几层" occur only where a passage repeats the phrase, and as the rarest
    terms they outweighed the words themselves (`_pairs_within_words`). First measured for choosing the answer's
    sentence (bench/tune_extractive.py, cmrc2018-trial gold in answer: even half 0.815 -> 0.829, n=444; odd half
    0.837 -> 0.853, n=504), then for relevance with the Chinese thresholds fitted again (docs/answers.md)."""
    lowered = question.lower()
    within = _pairs_within_words(lowered) if HAN_CHAR.search(lowered) else set()
    terms: list[str] = []
    for match in _TOKEN.finditer(lowered):
        piece = match.group()
        if not _HAN_RUN.match(piece):
            if piece.removesuffix("s") not in QUESTION_WORDS_EN and piece not in ASKER_WORDS_EN:
                terms.extend(tokenize(piece))
            continue
        asking = set()
        for word in QUESTION_WORDS_ZH.finditer(piece):
            asking.update(range(word.start(), word.end()))
        pairs = [(match.start() + start, pair) for start, pair in enumerate(cjk_bigrams(piece))
                 if not asking & {start, start + len(pair) - 1}]
        inside = [pair for start, pair in pairs if len(pair) == 1 or start in within]
        terms.extend(inside or [pair for _, pair in pairs])
    return terms


def _pairs_within_words(text: str) -> set[int]:
    """Where in `text` a character pair starts that lies inside one word of jieba's segmentation. jieba is imported
    here, for Chinese questions only: its dictionary takes 0.9 s to load on first use."""
    import jieba

    jieba.setLogLevel(logging.WARNING)  # it announces loading its dictionary on stderr
    return {start for word, begin, end in jieba.tokenize(text) if end - begin > 1
            for start in range(begin, end - 1)}


def versionless(token: str) -> str | None:
    """The name in a token that ends in a version number ("jinja2" -> "jinja", "python3" -> "python"), stemmed as
    `tokenize` stems a word; None for any other token."""
    match = _VERSIONED.fullmatch(token)
    return _STEMMER.stemWord(match.group(1)) if match else None


def tokenize(text: str) -> list[str]:
    """Lower-cased, Snowball-stemmed words without stop words; character bigrams for Chinese runs."""
    tokens: list[str] = []
    for match in _TOKEN.finditer(text.lower()):
        piece = match.group()
        if _HAN_RUN.match(piece):
            tokens.extend(cjk_bigrams(piece))
        elif piece not in _STOPWORDS:
            tokens.append(_STEMMER.stemWord(piece))
    return tokens


class LexicalIndex:
    """BM25 over a fixed list of chunk ids, built from stored tokens and saved beside the index (no pickle)."""

    def __init__(self, ids: Sequence[int], retriever: bm25s.BM25 | None) -> None:
        self.ids = np.asarray(ids, dtype=np.int64)
        self.retriever = retriever if len(self.ids) else None

    @classmethod
    def build(cls, ids: Sequence[int], token_lists: Sequence[list[str]]) -> LexicalIndex:
        retriever = None
        if len(ids):
            retriever = bm25s.BM25()
            retriever.index(list(token_lists), show_progress=False)
        return cls(ids, retriever)

    def save(self, directory: Path) -> None:
        """Write the BM25 arrays (bm25s, allow_pickle=False) and the chunk ids into `directory`."""
        directory.mkdir(parents=True, exist_ok=True)
        np.save(directory / "ids.npy", self.ids, allow_pickle=False)
        if self.retriever is not None:
            self.retriever.save(str(directory), allow_pickle=False)

    @classmethod
    def load(cls, directory: Path) -> LexicalIndex:
        ids = np.load(directory / "ids.npy", allow_pickle=False)
        retriever = bm25s.BM25.load(str(directory), allow_pickle=False) if len(ids) else None
        if retriever is not None and retriever.scores.get("num_docs") != len(ids):
            raise ValueError(f"{directory} holds {len(ids)} chunk ids for {retriever.scores.get('num_docs')} documents")
        return cls(ids, retriever)

    def document_frequency(self, term: str) -> int:
        """How many chunks contain `term` (read from bm25s's per-term column sizes, no search)."""
        if self.retriever is None or term not in self.retriever.vocab_dict:
            return 0
        column = self.retriever.vocab_dict[term]
        starts = self.retriever.scores["indptr"]
        return int(starts[column + 1] - starts[column]) if column + 1 < len(starts) else 0

    def search(self, query_tokens: Sequence[str], k: int) -> list[tuple[int, float]]:
        """The top `k` (chunk id, BM25 score) pairs with a positive score for already tokenized query terms."""
        if self.retriever is None:
            return []
        vocabulary = self.retriever.vocab_dict
        tokens = [token for token in query_tokens if token in vocabulary]
        if not tokens:
            return []
        k = min(k, len(self.ids))
        documents, scores = self.retriever.retrieve([tokens], k=k, show_progress=False)
        return [
            (int(self.ids[position]), float(score))
            for position, score in zip(documents[0], scores[0], strict=True)
            if score > 0
        ]
