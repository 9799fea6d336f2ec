"""The domain model every face shows: a chunk, a retrieved hit, an agent step, an answer."""

from __future__ import annotations

import hashlib
import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import PurePath
from typing import Any, Literal


def content_hash(text: str) -> str:
    """The key a chunk's vector is stored under: identical texts are embedded once."""
    return hashlib.blake2b(text.encode("utf-8"), digest_size=16).hexdigest()


@dataclass(frozen=True)
class Chunk:
    """A piece of a document and the place it came from. Ingestion makes it without an id; the index gives one."""

    text: str
    path: str
    ordinal: int = 0
    page: int | None = None
    heading: str | None = None
    start_line: int | None = None
    end_line: int | None = None
    start_char: int | None = None
    end_char: int | None = None
    content_hash: str = ""
    id: int | None = None

    def __post_init__(self) -> None:
        if not self.content_hash:
            object.__setattr__(self, "content_hash", content_hash(self.text))

    def label(self, short: bool = False) -> str:
        """Where the chunk is, as every face shows it: "path, p. 2, lines 3-9" (`short`: the file name only)."""
        parts = [PurePath(self.path).name if short else self.path]
        if self.page is not None:
            parts.append(f"p. {self.page}")
        if self.start_line is not None:
            end = self.end_line if self.end_line is not None else self.start_line
            parts.append(f"lines {self.start_line}-{end}")
        return ", ".join(parts)

    def line_of(self, text: str) -> int | None:
        """The line (of the file, or of the PDF page) on which `text` starts in this chunk; None where the chunk
        does not hold it or has no line numbers."""
        at = self.text.find(text) if text else -1
        if self.start_line is None or at < 0:
            return None
        return self.start_line + self.text.count("\n", 0, at)


@dataclass(frozen=True)
class Hit:
    """A retrieved chunk as shown under an answer: its score, relevance in [0, 1], citation number and the
    sentences of it that best support the answer."""

    chunk: Chunk
    score: float
    relevance: float = 0.0
    number: int = 0
    evidence: tuple[str, ...] = ()

    @property
    def path(self) -> str:
        return self.chunk.path

    @property
    def text(self) -> str:
        return self.chunk.text

    def to_dict(self) -> dict[str, Any]:
        chunk = self.chunk
        return {
            "number": self.number, "path": chunk.path, "location": chunk.label(), "text": chunk.text,
            "score": self.score, "relevance": self.relevance, "page": chunk.page, "heading": chunk.heading,
            "start_line": chunk.start_line, "end_line": chunk.end_line, "chunk_id": chunk.id,
            "evidence": list(self.evidence),
        }


@dataclass(frozen=True)
class Step:
    """One agent step: a thought, an action with its input and what it observed, or a note."""

    kind: str
    content: str
    tool: str | None = None
    tool_input: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class AnswerSentence:
    """One sentence of an answer and the passages that support it (`citations`, best first). `checked` is False
    for a sentence that states nothing to check ("Yes.", "See below:"); `evidence` is the sentence of the first
    cited passage that best matches it."""

    text: str
    citations: tuple[int, ...] = ()
    supported: bool = False
    support: float = 0.0
    evidence: str = ""
    checked: bool = True

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "citations": list(self.citations)}


@dataclass
class Answer:
    """What the agent returns for one question. `mode` says who wrote `text`: the model ("generative") or the
    passages themselves ("extractive"); `notice` says why, when the model's answer was replaced or cut."""

    text: str
    sources: list[Hit] = field(default_factory=list)
    sentences: list[AnswerSentence] = field(default_factory=list)
    mode: Literal["generative", "extractive"] = "generative"
    notice: str = ""
    generated: str = ""
    steps: list[Step] = field(default_factory=list)
    dropped_turns: int = 0
    prompt_tokens: int = 0
    context_window: int = 0
    evidence: list[str] = field(default_factory=list)
    cited: bool = False
    abstained: bool = False
    query: str = ""
    question_truncated: bool = False
    window_estimated: bool = False  # the served model's window and counts are estimates (no tokenizer, no info)
    # On a refusal, the best passages found, none relevant enough: what was near, for the user to check (a refusal
    # of a question the documents do answer is then one look away, not a dead end). Never cited.
    closest: list[Hit] = field(default_factory=list)

    def line_of(self, sentence: AnswerSentence) -> int | None:
        """The line of the sentence's evidence in the first source it cites: where a reader checks it."""
        cited = next((source for source in self.sources if source.number in sentence.citations[:1]), None)
        return cited.chunk.line_of(sentence.evidence) if cited is not None else None

    def quoted_lines(self, number: int) -> list[int]:
        """The lines of source `number` that the answer's sentences quote as their evidence, in order."""
        lines = {self.line_of(sentence) for sentence in self.sentences if sentence.citations[:1] == (number,)}
        return sorted(line for line in lines if line is not None)

    def sources_cited_first(self) -> list[Hit]:
        """The sources as faces list them: those the answer cites first, in the order it cites them, then the rest
        by number, so the passage to check sits right under the answer (over the guide, "The default port is 7860
        [2]." had [1], a passage about `rag-ask`, listed above its source)."""
        cited = list(dict.fromkeys(number for sentence in self.sentences for number in sentence.citations))
        return sorted(self.sources, key=lambda source: (cited.index(source.number) if source.number in cited
                                                        else len(cited), source.number))

    def quoted_label(self, number: int) -> str:
        """The lines of source `number` the answer quotes, as every face shows them (`quoted_label`)."""
        return quoted_label(self.quoted_lines(number))

    def to_dict(self) -> dict[str, Any]:
        return {
            "text": self.text,
            "sources": [{**source.to_dict(), "quoted_lines": self.quoted_lines(source.number)}
                        for source in self.sources],
            "sentences": [{**sentence.to_dict(), "line": self.line_of(sentence)} for sentence in self.sentences],
            "mode": self.mode,
            "notice": self.notice,
            "generated": self.generated,
            "steps": [step.to_dict() for step in self.steps],
            "dropped_turns": self.dropped_turns,
            "prompt_tokens": self.prompt_tokens,
            "context_window": self.context_window,
            "evidence": list(self.evidence),
            "cited": self.cited,
            "abstained": self.abstained,
            "query": self.query,
            "question_truncated": self.question_truncated,
            "window_estimated": self.window_estimated,
            "closest": [hit.to_dict() for hit in self.closest],
        }


def relevance_label(relevance: float) -> str:
    """A relevance as every face shows it, rounded down: 0.4999 reads 0.49, not a 0.50 that would have passed (the
    nudge keeps 0.29, stored as 0.28999..., reading 0.29)."""
    return f"{math.floor(relevance * 100 + 1e-9) / 100:.2f}"


def quoted_label(lines: Sequence[int]) -> str:
    """Lines of a source that an answer quotes, as every face shows them: "quoted: line 9" ("" for none)."""
    return f"quoted: line{'s' if len(lines) > 1 else ''} {', '.join(map(str, lines))}" if lines else ""
