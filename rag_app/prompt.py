"""Token-exact prompt assembly: system, passages, history and question inside `window - max_new_tokens`.

System and question always stay; a question too long for the budget is cut in the middle (" […] ").
Passages go greedily in relevance order into `passage_share` of what remains (all of it with no history), and
never more than `passage_tokens` when the model can use no more;
the first that does not fit ends the list (the most relevant one, when it alone is too long, goes in cut to the
room left, so that a long passage never leaves the model with none), and what they leave goes to history, replayed
in whole turns, newest first, while they fit (the oldest are dropped). Per-message costs are counted once; the assembled
prompt is then counted exactly and, if over, shrunk by dropping the oldest turn, then the last passage.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import Any

from rag_app.models.tokens import TokenCounter
from rag_app.types import Hit

MARKER = " […] "
CLIP = " …"
MIN_CLIPPED_TOKENS = 16  # a passage cut shorter than this tells the model nothing worth its room
QUESTION_SHARE = 0.25  # the most of a prompt's budget a question may take, so that passages keep room
Message = dict[str, str]


def render_passage(hit: Hit) -> str:
    """A passage as the model sees it: its citation number, a short label like "a.md, lines 3-9", its text."""
    return f"[{hit.number}] ({hit.chunk.label(short=True)})\n{hit.text.strip()}"


def clip_tokens(tokens: TokenCounter, text: str, limit: int) -> str:
    """`text` cut to its first `limit` tokens (marked with " …" when cut)."""
    spans = tokens.spans(text)
    if len(spans) <= max(limit, 1):
        return text
    return text[: spans[max(limit, 1) - 1][1]].rstrip() + CLIP


def clip_middle(tokens: TokenCounter, text: str, limit: int) -> tuple[str, bool]:
    """`text` cut to about `limit` tokens, keeping its start and end around the marker; and whether it was cut."""
    spans = tokens.spans(text)
    if len(spans) <= limit:
        return text, False
    return _cut_middle(text, spans, max(limit, 2)), True


@dataclass
class BuiltPrompt:
    """The messages to send, their exact token count, and what had to be left out."""

    messages: list[Message]
    tokens: int
    budget: int
    dropped_turns: int
    passages: list[Hit]
    dropped_passages: int
    question_truncated: bool


class PromptTooSmallError(ValueError):
    """The window cannot hold even the system prompt and an empty question."""


def user_content(passages: Sequence[Hit], question: str) -> str:
    """The final user message: the passages, most relevant first, then the question."""
    if not passages:
        return question
    return "Passages:" + "".join(f"\n\n{render_passage(p)}" for p in passages) + f"\n\nQuestion: {question}"


def message_text(content: Any) -> str:
    """Message content as text; Gradio may give None or a list of parts (strings or {"type": "text", ...})."""
    if isinstance(content, str):
        return content
    if content is None:
        return ""
    if isinstance(content, list):
        return "\n".join(part if isinstance(part, str) else str(part.get("text", "")) for part in content
                         if isinstance(part, str) or isinstance(part, dict) and "text" in part)
    return str(content)


def group_turns(history: Sequence[dict[str, Any]]) -> list[list[Message]]:
    """User/assistant messages grouped into turns: a user message and the replies after it."""
    turns: list[list[Message]] = []
    for message in history:
        role = message.get("role")
        if role not in ("user", "assistant"):
            continue
        entry = {"role": role, "content": message_text(message.get("content"))}
        if role == "user" or not turns:
            turns.append([entry])
        else:
            turns[-1].append(entry)
    return turns


def _user(content: str) -> Message:
    return {"role": "user", "content": content}


def _cut_middle(text: str, spans: list[tuple[int, int]], keep: int) -> str:
    """The text with about `keep` tokens left, split between its start and end around the marker."""
    head, tail = (keep + 1) // 2, keep // 2
    end = spans[head - 1][1] if head else 0
    start = spans[len(spans) - tail][0] if tail else len(text)
    return text[:end] + MARKER + text[max(start, end) :]


class PromptBuilder:
    """Builds chat prompts that fit `context_window - max_new_tokens` tokens, counted by the real template."""

    def __init__(self, tokens: TokenCounter, context_window: int, max_new_tokens: int,
                 passage_share: float = 0.6, passage_tokens: int | None = None) -> None:
        if not 0.0 <= passage_share <= 1.0:
            raise ValueError(f"passage_share must be between 0 and 1, got {passage_share}")
        self.tokens = tokens
        self.context_window = context_window
        self.max_new_tokens = max_new_tokens
        self.budget = context_window - max_new_tokens
        self.passage_share = passage_share
        self.passage_tokens = passage_tokens
        self._role_cost = self._measure_role_costs()

    def build(
        self, system: str, passages: Sequence[Hit], history: Sequence[dict[str, Any]], question: str
    ) -> BuiltPrompt:
        head = {"role": "system", "content": system}
        turns = group_turns(history)
        question, truncated, base = self._fit_question(head, question)
        room = self.budget - base
        limit = int(room * self.passage_share) if turns else room
        if self.passage_tokens is not None:
            limit = min(limit, self.passage_tokens)
        kept, passage_cost = self._fit_passages(passages, question, limit)
        replay = self._fit_turns(turns, room - passage_cost)
        while True:
            messages = [head, *(m for turn in turns[len(turns) - replay :] for m in turn)]
            messages.append(_user(user_content(kept, question)))
            tokens = self._count(messages)
            if tokens <= self.budget:
                break
            if replay:
                replay -= 1
            else:
                kept.pop()
        return BuiltPrompt(
            messages=messages,
            tokens=tokens,
            budget=self.budget,
            dropped_turns=len(turns) - replay,
            passages=kept,
            dropped_passages=len(passages) - len(kept),
            question_truncated=truncated,
        )

    def _count(self, messages: list[Message]) -> int:
        return self.tokens.count_chat(messages)

    def _lengths(self, texts: list[str]) -> list[int]:
        """Token counts of plain texts, without special tokens."""
        return self.tokens.count_texts(texts)

    def _measure_role_costs(self) -> dict[str, int]:
        """What the template adds around an empty user or assistant message."""
        system = [{"role": "system", "content": ""}]
        user = [*system, _user("")]
        assistant = [*user, {"role": "assistant", "content": ""}]
        alone, with_user, with_assistant = (self._count(m) for m in (system, user, assistant))
        return {"user": with_user - alone, "assistant": with_assistant - with_user}

    def _fit_question(self, head: Message, question: str) -> tuple[str, bool, int]:
        """The question (cut in the middle if it must be), whether it was cut, and the exact count with it."""
        tokens = self._count([head, _user(question)])
        if tokens <= self.budget:
            return question, False, tokens
        floor = self._count([head, _user("")])
        if floor > self.budget:
            raise PromptTooSmallError(
                f"a context window of {self.context_window} with max_new_tokens={self.max_new_tokens} "
                f"leaves {self.budget} prompt tokens, but the system prompt alone needs {floor}: "
                "raise the context window or lower max_new_tokens"
            )
        spans = self.tokens.spans(question)
        keep = min(len(spans) - 1, self.budget - floor - self._lengths([MARKER])[0])
        while keep >= 0:
            shortened = _cut_middle(question, spans, keep)
            tokens = self._count([head, _user(shortened)])
            if tokens <= self.budget:
                return shortened, True, tokens
            keep -= max(1, tokens - self.budget)
        return "", True, floor

    def _fit_passages(self, passages: Sequence[Hit], question: str, limit: int) -> tuple[list[Hit], int]:
        """The leading passages whose estimated cost (framing included) fits in `limit`, and that cost."""
        if not passages:
            return [], 0
        framing, framed_question, bare_question, *costs = self._lengths(
            ["Passages:", f"\n\nQuestion: {question}", question, *(f"\n\n{render_passage(p)}" for p in passages)]
        )
        spent = framing + framed_question - bare_question
        kept: list[Hit] = []
        for passage, cost in zip(passages, costs, strict=True):
            if spent + cost > limit:
                break
            kept.append(passage)
            spent += cost
        if kept:
            return kept, spent
        clipped = self._clipped(passages[0], limit - spent)
        return ([clipped], limit) if clipped else ([], 0)

    def _clipped(self, passage: Hit, room: int) -> Hit | None:
        """The passage cut to `room` tokens (framing included), or None when too little would be left."""
        bare = replace(passage, chunk=replace(passage.chunk, text=""))
        keep = room - sum(self._lengths([f"\n\n{render_passage(bare)}", CLIP]))
        if keep < MIN_CLIPPED_TOKENS:
            return None
        return replace(passage, chunk=replace(passage.chunk, text=clip_tokens(self.tokens, passage.text, keep)))

    def _fit_turns(self, turns: list[list[Message]], room: int) -> int:
        """How many of the newest turns fit in `room` tokens by their estimated cost."""
        lengths = iter(self._lengths([m["content"] for turn in turns for m in turn]))
        costs = [sum(self._role_cost[m["role"]] + next(lengths) for m in turn) for turn in turns]
        replay = spent = 0
        for cost in reversed(costs):
            if spent + cost > room:
                break
            spent += cost
            replay += 1
        return replay
