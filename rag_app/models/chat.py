"""The chat-model seam: what the agent, the prompt budget, the UI and the LangChain adapter need from an LLM,
whichever backend runs it, and the `Completion` a request returns (iterate to stream; then read its outcome)."""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Generator, Iterator
from typing import Any, Protocol, runtime_checkable

from rag_app.config import GenerationSettings
from rag_app.models.tokens import Messages, TokenCounter

# What a backend's piece generator returns when it ends: finish reason, prompt tokens, completion tokens.
Outcome = tuple[str, int, int]
CANCELLED = "cancelled"
WINDOW_ATTRIBUTES = ("max_position_embeddings", "n_positions", "max_sequence_length", "seq_length")


class Completion:
    """A reply being generated. Iterating yields text pieces; afterwards `text`, `finish_reason` ("stop",
    "length", "tool_calls", or "cancelled" after `close()`), `prompt_tokens` and `completion_tokens` hold the
    outcome. `close()` (or leaving the loop early) cancels the generation; it may be called from another thread
    while the pieces are being read there: the backend's `cancel` hook then stops them at the source (the HTTP
    stream of a served model, the stopping criterion of an in-process one)."""

    def __init__(self, pieces: Generator[str, None, Outcome | None],
                 cancel: Callable[[], None] | None = None) -> None:
        self._pieces = pieces
        self._cancel = cancel
        self.text = ""
        self.finish_reason = ""
        self.prompt_tokens = 0
        self.completion_tokens = 0
        self.done = False

    def __iter__(self) -> Iterator[str]:
        try:
            while True:
                try:
                    piece = next(self._pieces)
                except StopIteration as end:
                    if end.value is not None:
                        reason, self.prompt_tokens, self.completion_tokens = end.value
                        self.finish_reason = self.finish_reason or reason  # "cancelled" by close() stays
                    self.done = True
                    return
                self.text += piece
                yield piece
        finally:
            if not self.done:
                self.close()

    def close(self) -> None:
        if not self.done:
            self.finish_reason = CANCELLED
        if self._cancel is not None:
            self._cancel()
        # Running in another thread ("generator already executing"): the cancel hook ends it there.
        with contextlib.suppress(ValueError):
            self._pieces.close()


@runtime_checkable
class ChatLLM(Protocol):
    """A chat model behind any backend. `concurrent` backends take many requests at once; others queue them."""

    name: str
    backend: str
    context_window: int
    window_estimated: bool
    tokens: TokenCounter
    native_tools: bool
    concurrent: bool
    passage_tokens: int | None  # the most passage text worth giving the model (None: as much as the window holds)

    def stream(self, messages: Messages, settings: GenerationSettings | None = None,
               tools: list[dict[str, Any]] | None = None) -> Completion: ...

    def generate(self, messages: Messages, settings: GenerationSettings | None = None,
                 tools: list[dict[str, Any]] | None = None) -> str: ...


def config_window(config: Any) -> int | None:
    """The context window a model config declares, if it declares one."""
    for attribute in WINDOW_ATTRIBUTES:
        value = getattr(config, attribute, None)
        if isinstance(value, int) and value > 0:
            return value
    return None


def supports_native_tools(chat_template: str | None) -> bool:
    """Whether a chat template renders a `tools` list (then the model gets native tool calls)."""
    return bool(chat_template) and "tools" in chat_template


def cut_at_stop(pieces: Iterator[str], stops: tuple[str, ...]) -> Iterator[str]:
    """Pass pieces through, holding back just enough text to cut a stop string that spans pieces."""
    if not stops:
        yield from pieces
        return
    hold = max(len(stop) for stop in stops)
    pending = ""
    for piece in pieces:
        pending += piece
        cut = min((pending.find(stop) for stop in stops if stop in pending), default=-1)
        if cut >= 0:
            if pending[:cut]:
                yield pending[:cut]
            return
        if len(pending) > hold:
            yield pending[:-hold]
            pending = pending[-hold:]
    if pending:
        yield pending
