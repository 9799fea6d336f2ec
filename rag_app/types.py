"""The domain model every face shows: chunks, retrieved sources, steps and answers."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any


@dataclass(frozen=True)
class Chunk:
    """A stored piece of a document, with the place it came from."""

    id: int
    path: str
    text: str
    page: int | None = None
    heading: str | None = None
    start_line: int | None = None
    end_line: int | None = None
    start_char: int | None = None
    end_char: int | None = None
    content_hash: str = ""

    @property
    def location(self) -> str:
        """A human-readable place: path, page and line range."""
        parts = [self.path]
        if self.page is not None:
            parts.append(f"p. {self.page}")
        if self.start_line is not None:
            end = self.end_line if self.end_line is not None else self.start_line
            parts.append(f"lines {self.start_line}-{end}")
        return ", ".join(parts)


@dataclass
class Source:
    """A retrieved passage as shown under an answer: the chunk, its score and its citation number."""

    chunk: Chunk
    score: float
    number: int = 0
    relevance: float = 0.0
    evidence: list[str] = field(default_factory=list)

    @property
    def path(self) -> str:
        return self.chunk.path

    @property
    def text(self) -> str:
        return self.chunk.text

    @property
    def page(self) -> int | None:
        return self.chunk.page

    @property
    def start_line(self) -> int | None:
        return self.chunk.start_line

    @property
    def end_line(self) -> int | None:
        return self.chunk.end_line

    def to_dict(self) -> dict[str, Any]:
        return {
            "number": self.number,
            "path": self.path,
            "text": self.text,
            "score": self.score,
            "relevance": self.relevance,
            "page": self.page,
            "heading": self.chunk.heading,
            "start_line": self.start_line,
            "end_line": self.end_line,
            "chunk_id": self.chunk.id,
            "evidence": list(self.evidence),
        }


@dataclass
class Step:
    """One agent step: a thought, an action with its input, and what it observed."""

    kind: str
    content: str
    tool: str | None = None
    tool_input: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class Answer:
    """What the agent returns for one question."""

    text: str
    sources: list[Source] = field(default_factory=list)
    steps: list[Step] = field(default_factory=list)
    dropped_turns: int = 0
    prompt_tokens: int = 0
    context_window: int = 0
    evidence: list[str] = field(default_factory=list)
    cited: bool = False
    abstained: bool = False
    query: str = ""
    question_truncated: bool = False

    def to_dict(self) -> dict[str, Any]:
        return {
            "text": self.text,
            "sources": [source.to_dict() for source in self.sources],
            "steps": [step.to_dict() for step in self.steps],
            "dropped_turns": self.dropped_turns,
            "prompt_tokens": self.prompt_tokens,
            "context_window": self.context_window,
            "evidence": list(self.evidence),
            "cited": self.cited,
            "abstained": self.abstained,
            "query": self.query,
            "question_truncated": self.question_truncated,
        }
