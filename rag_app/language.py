"""The language rules, in one place: which characters are CJK, where sentences end, how much of a text is CJK."""

from __future__ import annotations

import re
from collections.abc import Iterable

# Han ideographs (extension A, unified, compatibility): the characters BM25 cuts into bigrams and that make a
# question "Chinese". Kana and Hangul count towards a corpus's CJK share (they need a multilingual embedder too).
HAN = "\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff"
KANA_HANGUL = "\u3040-\u30ff\uac00-\ud7af"
HAN_CHAR = re.compile(f"[{HAN}]")
HAN_RUN = re.compile(f"[{HAN}]+")
_EAST_ASIAN_CHAR = re.compile(f"[{HAN}{KANA_HANGUL}]")
_LETTER = re.compile(r"[^\W\d_]")

# Chinese question words and particles: what a question asks with, not what it is about.
QUESTION_WORDS_ZH = re.compile(
    r"什么|哪[些个里儿一种位家年天]?|怎么样?|怎样|如何|为何|为什么|多[少大长高久远重快]|几[个年月天次种]?|"
    r"谁|何时|何地|是否|吗|呢"
)
# English words that name what is asked for, not what it is about ("What colour is the beam?" is answered by "the
# beam is green"): the counterpart of the Chinese question words. "what", "how"... are BM25 stop words already.
QUESTION_WORDS_EN = frozenset({
    "colour", "color", "year", "date", "day", "time", "name", "number", "size", "price", "cost", "height", "weight",
    "length", "age", "amount", "many", "much", "long", "old", "far", "big", "kind", "type",
})

# Sentence ends: CJK full stops end a sentence where they stand; Latin ones only before a space.
CJK_SENTENCE_ENDS = "。！？；…｡．"
CLOSERS = "\"'”’」』）)\\]"
SENTENCE_END = re.compile(rf"[{CJK_SENTENCE_ENDS}]+[{CLOSERS}]*|[.!?]+[{CLOSERS}]*(?=\s)")
_SENTENCE_SPLIT = re.compile(r"(?<=[.!?。！？；;])\s+|(?<=[。！？；])|\n+")
_WHOLE_SENTENCE_SPLIT = re.compile(r"(?<=[.!?。！？])\s+|(?<=[。！？])|\n+")
_LIST_MARKER = re.compile(r"(?:\d{1,3}|[a-zA-Z])[.)]|[-*+•]")
_MARKER_AFTER_COLON = re.compile(r"[:：]\s+((?:\d{1,3}|[a-zA-Z])[.)])$")


def is_cjk(text: str) -> bool:
    """Whether the text holds any Han character (a Chinese question gets Chinese messages and thresholds)."""
    return bool(HAN_CHAR.search(text))


def cjk_share(texts: Iterable[str]) -> float:
    """CJK characters (Han, kana, Hangul) as a share of all letters in `texts` (0.0 when there are no letters)."""
    cjk = letters = 0
    for text in texts:
        cjk += len(_EAST_ASIAN_CHAR.findall(text))
        letters += len(_LETTER.findall(text))
    return cjk / letters if letters else 0.0


def split_sentences(text: str, clauses: bool = True) -> list[str]:
    """Sentences of English or Chinese text (ends: . ! ? 。 ！ ？ and line breaks, and with `clauses` also ; and
    ；); a list marker such as "1." stays with the item it opens."""
    sentences: list[str] = []
    for piece in (_SENTENCE_SPLIT if clauses else _WHOLE_SENTENCE_SPLIT).split(text):
        piece = piece.strip() if piece else ""
        if not piece:
            continue
        if sentences and _LIST_MARKER.fullmatch(sentences[-1]):
            sentences[-1] = f"{sentences[-1]} {piece}"
            continue
        opening = _MARKER_AFTER_COLON.search(piece)
        if opening:
            sentences += [piece[: opening.start() + 1], opening.group(1)]
        else:
            sentences.append(piece)
    return sentences


def complete_sentences(text: str) -> tuple[list[str], str]:
    """The sentences of a growing text that are complete (a sentence end or line break follows them), and the
    rest, which may still grow."""
    cuts = [match.end() for match in _SENTENCE_SPLIT.finditer(text)]
    if not cuts:
        return [], text
    sentences = split_sentences(text[: cuts[-1]])
    if sentences and _LIST_MARKER.fullmatch(sentences[-1]):
        return sentences[:-1], sentences[-1] + " " + text[cuts[-1]:]
    return sentences, text[cuts[-1]:]


def ends_cjk_sentence(text: str) -> bool:
    """Whether a sentence ends with a CJK full stop (CJK sentences are joined without a space)."""
    return bool(text) and text.rstrip()[-1:] in CJK_SENTENCE_ENDS
