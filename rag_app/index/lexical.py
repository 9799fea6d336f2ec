"""The lexical leg: a tokenizer for English and Chinese, and a BM25 index over chunk tokens (bm25s)."""

from __future__ import annotations

import logging
import re
from collections.abc import Sequence

import bm25s
import jieba
import numpy as np

jieba.setLogLevel(logging.WARNING)

_CJK = r"\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff"
_TOKEN = re.compile(rf"[{_CJK}]+|[^\W_]+", re.UNICODE)
_CJK_RUN = re.compile(rf"^[{_CJK}]+$")
# A short English stop list: enough to keep BM25 from matching on glue words.
_STOPWORDS = frozenset({
    "a", "an", "and", "are", "as", "at", "be", "but", "by", "for", "from", "has", "have", "how", "i", "if", "in",
    "into", "is", "it", "its", "of", "on", "or", "that", "the", "their", "then", "there", "these", "this", "to",
    "was", "were", "what", "when", "where", "which", "who", "why", "will", "with", "you", "your", "does", "do",
    "did", "can", "could", "should", "would",
})
TOKENIZER_VERSION = "words+jieba-search-1"


def tokenize(text: str) -> list[str]:
    """Lower-cased words for alphabetic scripts; jieba search-mode words for Chinese runs."""
    tokens: list[str] = []
    for match in _TOKEN.finditer(text.lower()):
        piece = match.group()
        if _CJK_RUN.match(piece):
            tokens.extend(word for word in jieba.cut_for_search(piece) if word.strip())
        elif piece not in _STOPWORDS:
            tokens.append(piece)
    return tokens


class LexicalIndex:
    """BM25 over a fixed list of chunk ids; rebuilt from stored tokens whenever the store changes."""

    def __init__(self, ids: Sequence[int], token_lists: Sequence[list[str]]) -> None:
        self.ids = np.asarray(ids, dtype=np.int64)
        self.retriever: bm25s.BM25 | None = None
        if len(self.ids):
            self.retriever = bm25s.BM25()
            self.retriever.index(list(token_lists), show_progress=False)

    def search(self, query: str, k: int) -> list[tuple[int, float]]:
        """The top `k` (chunk id, BM25 score) pairs with a positive score."""
        if self.retriever is None:
            return []
        vocabulary = self.retriever.vocab_dict
        tokens = [token for token in tokenize(query) if token in vocabulary]
        if not tokens:
            return []
        k = min(k, len(self.ids))
        documents, scores = self.retriever.retrieve([tokens], k=k, show_progress=False)
        return [
            (int(self.ids[position]), float(score))
            for position, score in zip(documents[0], scores[0], strict=True)
            if score > 0
        ]
