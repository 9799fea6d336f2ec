"""The language rules, in one place: which characters are CJK, where sentences end, how much of a text is CJK."""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator

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

# Words that say who asks, not what about: the guide answers "Is my data sent anywhere?" with "Nothing is sent"
# and "your documents", so "my" only lowered a passage's share of the question's terms; likewise the tails that
# contractions leave ("I'm", "don't", "Ollama's"; "do not" in a passage). Not "us", which may be the US.
ASKER_WORDS_EN = frozenset({"my", "me", "mine", "myself", "we", "our", "ours", "ourselves", "m", "s", "t", "d", "ll",
                            "re", "ve", "don", "doesn", "didn", "isn", "aren", "wasn", "weren", "won", "couldn",
                            "shouldn", "wouldn", "haven", "hasn"})

# Sentence ends: CJK full stops end a sentence where they stand; Latin ones only before a space.
CJK_SENTENCE_ENDS = "。！？；…｡．"
CLOSERS = "\"'”’」』）)\\]"
SENTENCE_END = re.compile(rf"[{CJK_SENTENCE_ENDS}]+[{CLOSERS}]*|[.!?]+[{CLOSERS}]*(?=\s)")
_SENTENCE_SPLIT = re.compile(r"(?<=[.!?。！？；;])\s+|(?<=[。！？；])|\n+")
_CLAUSE_SPLIT_IN_LINE = re.compile(r"(?<=[.!?。！？；;])\s+|(?<=[。！？；])")
_SENTENCE_SPLIT_IN_LINE = re.compile(r"(?<=[.!?。！？])\s+|(?<=[。！？])")
# A line that opens a block of its own, so the line break before it wraps nothing: a list item, a heading, a table
# row, a quote, a fence, or a "key: value" line (a CSV record's, a label's).
_OPENS_BLOCK = re.compile(r"[ \t]*(?:(?:[-*+•]|\d{1,3}[.)])\s|[#|>]|```|~~~|[^\W\d][\w ]{0,30}[:：])")
CODE_FENCES = ("```", "~~~")
RST_CODE = re.compile(r"\.\.\s+(?:code|code-block|sourcecode)::")
WRAPPED_WIDTH = 0.6
TABLE_CELLS = " | "  # between a table row's cells, as the HTML and DOCX loaders write them
_JOINS_HAN = re.compile(f"[{HAN}，、（]")  # what Han text goes on after across a wrapped line
_LINE_BREAK = re.compile(r"[ \t]*\n[ \t]*")
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


def wraps(line: str, following: str) -> bool:
    """Whether the break between two lines only wraps prose: the line goes on in lower case ("want to limit Ollama
    to use" / "a subset of your GPUs"), or Han characters go on after Han from a line that fills its width (at
    least WRAPPED_WIDTH of the next line's: a wrapped line is cut where the width ends, so "第二章 休假" above
    "全职员工每年享有二十八天带薪年假。" is a heading, not the start of its sentence); the line is no table row, and
    the next line opens no block."""
    end, start = line.rstrip()[-1:], following.lstrip()[:1]
    if not end or not start or line.lstrip().startswith(("#", "|", *CODE_FENCES)) or _OPENS_BLOCK.match(following):
        return False
    if TABLE_CELLS in line:  # a table row as a loader writes it ("负责人: 李强 | 截止日期: 7月15日") ends there
        return False
    if start.islower() and (end.isalnum() or end in ",(-"):
        return True
    if _opens_unclosed(line) and (end.isalnum() or end in ",-"):  # It's the "Command / Line Interface Creation Kit".
        return True
    return bool(HAN_CHAR.match(start) and _JOINS_HAN.match(end)) and (
        _width(line.strip()) >= WRAPPED_WIDTH * _width(following.strip()))


def _opens_unclosed(line: str) -> bool:
    """Whether a line leaves a quotation or a parenthesis open: what follows goes on inside it."""
    return line.count('"') % 2 == 1 or line.count("(") > line.count(")")


def _width(text: str) -> int:
    """Display width: a wide (East Asian) character takes two columns."""
    return len(text) + len(_EAST_ASIAN_CHAR.findall(text))


def _is_fence(line: str, above: str, fenced: bool) -> bool:
    """Whether a line opens or closes a code fence. Outside one, a line of tildes at least as wide as the line of
    text right above it underlines a reStructuredText title ("Pandas Integration" / "~~~~~~~~~~~~~~~~~~"): read as
    a fence, it had turned the rest of tqdm's README into code."""
    stripped, title = line.strip(), above.strip()
    if not stripped.startswith(CODE_FENCES):
        return False
    underline = set(stripped) == {"~"} and bool(title) and not title.startswith(CODE_FENCES) and (
        _width(stripped) >= _width(title))
    return fenced or not underline


def _code_marked(lines: Iterable[str]) -> Iterator[tuple[str, bool, bool]]:
    """Each line, whether it is a code fence itself, and whether it lies inside code: a Markdown fence, or a
    reStructuredText literal block (the indented lines after a line that ends with "::" or a code directive)."""
    fenced = literal = False
    above = ""
    for line in lines:
        stripped = line.strip()
        if literal and stripped and not line[:1].isspace():
            literal = False
        fence = not literal and _is_fence(line, above, fenced)
        yield line, fence, fenced or literal
        if fence:
            fenced = not fenced
        elif not fenced and not literal and (stripped.endswith("::") or RST_CODE.match(stripped)):
            literal = True
        above = line


def fence_marked(text: str) -> Iterator[tuple[str, bool]]:
    """The text's lines, stripped, other than its code fences, each with whether it lies inside code."""
    for line, fence, inside in _code_marked(text.splitlines()):
        if not fence:
            yield line.strip(), inside


def prose_lines(text: str) -> list[str]:
    """The text's lines, each line that wraps prose joined to the next (the line break kept); code kept as it
    is."""
    lines: list[str] = []
    for line, _, inside in _code_marked(text.split("\n")):
        if lines and not inside and wraps(lines[-1].rsplit("\n", 1)[-1], line):
            lines[-1] += "\n" + line
        else:
            lines.append(line)
    return lines


def unwrapped(text: str) -> str:
    """A sentence that wrapped line breaks run through, on one line (Han characters joined without a space)."""
    def joint(match: re.Match[str]) -> str:
        before, after = text[match.start() - 1: match.start()], text[match.end(): match.end() + 1]
        return "" if _JOINS_HAN.match(before) and HAN_CHAR.match(after) else " "
    return _LINE_BREAK.sub(joint, text.strip())


def split_sentences(text: str, clauses: bool = True) -> list[str]:
    """Sentences of English or Chinese text (ends: . ! ? 。 ！ ？ and line breaks, and with `clauses` also ; and
    ；); a list marker such as "1." stays with the item it opens. A line break that only wraps prose ends nothing:
    the sentence keeps it, so it is still found in its passage (`unwrapped` shows it on one line). Hard-wrapped
    Markdown and PDF lines otherwise cut sentences in two ("If you have multiple NVIDIA GPUs in your system and
    want to limit Ollama to use")."""
    sentences: list[str] = []
    pattern = _CLAUSE_SPLIT_IN_LINE if clauses else _SENTENCE_SPLIT_IN_LINE
    for piece in (piece for line in prose_lines(text) for piece in pattern.split(line)):
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
