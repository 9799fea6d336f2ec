"""One streamed chat request to an OpenAI-compatible server: sent (retried on 429/503 and refused connections
until it is accepted), read as text pieces with stop strings cut on our side, native tool calls gathered, and
ended with its outcome; `cancel()` from any thread closes the HTTP stream, which stops the server generating."""

from __future__ import annotations

import contextlib
import itertools
import threading
import time
from collections.abc import Generator, Iterator
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from rag_app.config import GenerationSettings
from rag_app.models.chat import CANCELLED, Outcome, cut_at_stop
from rag_app.models.openai_request import tool_call_block
from rag_app.models.server_http import is_retryable, retry_delay
from rag_app.models.tokens import Messages

if TYPE_CHECKING:
    from rag_app.models.openai_llm import ServedLLM

# Pieces read past a stop string for the usage block that ends the stream, before closing it: transformers
# serve stops at a stop string (and keeps it), so its usage chunk comes right after; a server that ignores our
# stop strings is cut off here instead of generating up to max_tokens for nobody.
DRAIN_AFTER_STOP = 64


@dataclass
class StreamState:
    """What the chunks said besides the text: the raw text, tool-call fragments, usage, the server's reason."""

    raw: list[str] = field(default_factory=list)
    calls: dict[int, dict[str, str]] = field(default_factory=dict)
    usage: Any = None
    finish: str | None = None
    ended: bool = False

    def take(self, chunk: Any) -> str:
        """Record one chunk; its text."""
        if getattr(chunk, "usage", None):
            self.usage = chunk.usage
        text = ""
        for choice in chunk.choices or []:
            delta = choice.delta
            text += (getattr(delta, "content", None) or "") if delta is not None else ""
            for call in (getattr(delta, "tool_calls", None) or []) if delta is not None else []:
                entry = self.calls.setdefault(call.index if call.index is not None else len(self.calls),
                                              {"name": "", "arguments": ""})
                if call.function is not None:
                    entry["name"] += call.function.name or ""
                    entry["arguments"] += call.function.arguments or ""
            self.finish = choice.finish_reason or self.finish
        self.raw.append(text)
        return text

    def tool_blocks(self) -> str:
        """The gathered tool calls as `<tool_call>` blocks, in index order."""
        return "\n".join(tool_call_block(call["name"], call["arguments"]) for _, call in sorted(self.calls.items()))


class ServedStream:
    """One request: `pieces()` is the generator a Completion reads; `cancel` is its cancel hook."""

    def __init__(self, llm: ServedLLM, messages: Messages, settings: GenerationSettings,
                 tools: list[dict[str, Any]] | None) -> None:
        self.llm = llm
        self.messages = messages
        self.settings = settings
        self.tools = tools
        self.cancelled = threading.Event()
        self._stream: Any = None

    def cancel(self) -> None:
        """Close the HTTP stream (from any thread): the reader's next read fails and the server stops."""
        self.cancelled.set()
        with contextlib.suppress(Exception):  # not open yet, or already closed
            if self._stream is not None:
                self._stream.close()

    def _open(self) -> Any:
        """Send the request (nothing is sent before the Completion is read), retrying while it is refused."""
        body = self.llm.request_body(self.messages, self.settings, self.tools)
        for attempt in range(self.llm.max_retries + 1):
            try:
                stream = self.llm.client.chat.completions.create(**body)
                break
            except Exception as error:
                if attempt >= self.llm.max_retries or not is_retryable(error) or self.cancelled.is_set():
                    raise
                time.sleep(retry_delay(error, attempt, self.llm.backoff))
        self._stream = stream
        if self.cancelled.is_set():  # cancelled while the request was being accepted
            stream.close()
        return stream

    def _texts(self, stream: Any, state: StreamState) -> Iterator[str]:
        for chunk in stream:
            text = state.take(chunk)
            if text:
                yield text
        state.ended = True

    def pieces(self) -> Generator[str, None, Outcome]:
        """Text pieces (stop strings cut, tool calls appended as blocks); returns the Outcome."""
        state = StreamState()
        try:
            with self.llm.tracked():
                texts = self._texts(self._open(), state)
                yield from cut_at_stop(texts, self.settings.stop)
                stopped = not state.ended
                for _ in itertools.islice(texts, DRAIN_AFTER_STOP):  # for the usage chunk
                    pass
            if state.calls:
                yield ("\n" if any(state.raw) else "") + state.tool_blocks()
        except Exception as error:
            if self.cancelled.is_set():
                return self._outcome(state, CANCELLED)
            raise self.llm.translate_error(error) from error
        finally:
            self.cancel()
        return self._outcome(state, "stop" if stopped else None)

    def _outcome(self, state: StreamState, reason: str | None) -> Outcome:
        """Finish reason and token counts: the server's usage when it sent one, else counted here."""
        usage = state.usage
        if usage is not None and getattr(usage, "prompt_tokens", None) is not None:
            prompt, completion = int(usage.prompt_tokens), int(usage.completion_tokens or 0)
        elif reason == CANCELLED:  # nobody reads these; counting could need the server that just went away
            prompt = completion = 0
        else:
            prompt = self.llm.tokens.count_chat(self.messages, self.tools)
            completion = self.llm.tokens.count_texts(["".join(state.raw)])[0]
        if reason is None and state.calls:
            reason = "tool_calls"
        if reason is None:
            length = completion >= self.settings.max_new_tokens
            reason = state.finish or ("length" if length else "stop")
        return reason, prompt, completion
