"""Answers rendered as chat messages (inert Markdown), and chat messages turned back into agent history."""

from __future__ import annotations

import html
import re
from collections.abc import Sequence
from typing import Any

from rag_app.prompt import message_text
from rag_app.types import Answer, Hit, Step

Message = dict[str, Any]
SOURCES_TITLE = "📚 Sources"
UNCITED_NOTE = "\n\n*This answer cites no passage: check it against the sources below.*"
_MARKDOWN_SPECIALS = re.compile(r"([\\`*_\[\]()#!|~${}])")
_ESCAPED_SPECIALS = re.compile(r"\\([\\`*_\[\]()#!|~${}])")


def escape(text: str) -> str:
    """Document or model text as inert Markdown: HTML escaped (a `<script>` stays text), no links, images or math."""
    return _MARKDOWN_SPECIALS.sub(r"\\\1", html.escape(text, quote=False)).replace("\n", "  \n")


def unescape(text: str) -> str:
    """The exact inverse of `escape`."""
    return html.unescape(_ESCAPED_SPECIALS.sub(r"\1", text.replace("  \n", "\n")))


def highlight(source: Hit) -> str:
    """The passage, escaped, with its supporting sentences in bold."""
    text = escape(source.text)
    for sentence in source.evidence:
        escaped = escape(sentence)
        if escaped and escaped in text:
            text = text.replace(escaped, f"**{escaped}**", 1)
    return text


def render_answer(answer: Answer) -> Message:
    """The answer text, with a warning when it cites none of the passages it was given."""
    text = escape(answer.text)
    if not answer.abstained and not answer.cited and answer.sources:
        text += UNCITED_NOTE
    return {"role": "assistant", "content": text}


def _render_source(source: Hit) -> str:
    quoted = highlight(source).replace("  \n", "  \n> ")
    return (f"**[{source.number}] {escape(source.chunk.label())}** · score {source.score:.3f}"
            f" · relevance {source.relevance:.2f}\n\n> {quoted}")


def render_sources(answer: Answer, turn_id: str) -> Message:
    """The answer's numbered sources in a collapsible block, shown open: location, score, evidence in bold."""
    if answer.sources:
        body = "\n\n".join(_render_source(source) for source in answer.sources)
        title = f"{SOURCES_TITLE} ({len(answer.sources)})"
    else:
        body = "No passage of this index was relevant enough to answer from."
        title = f"{SOURCES_TITLE} (none)"
    return {"role": "assistant", "content": body, "metadata": {"title": title, "id": turn_id}}


def render_step(step: Step) -> Message:
    """An agent step as a collapsible chat message (Gradio message metadata)."""
    title = f"🔎 {step.tool}({step.tool_input})" if step.tool else f"💭 {step.kind}"
    return {"role": "assistant", "content": escape(step.content), "metadata": {"title": title, "status": "done"}}


def meter(answer: Answer) -> str:
    """The context meter: tokens of the window this turn used, and earlier turns that no longer fit."""
    if not answer.context_window:
        return ""
    about = "~" if answer.window_estimated else ""  # a served model without tokenizer or window info
    estimated = " · estimated counts" if answer.window_estimated else ""
    if answer.abstained:
        return (f"Context: no prompt was needed (nothing relevant found) · window {about}{answer.context_window} "
                f"tokens{estimated}")
    used = answer.prompt_tokens
    share = 100 * used / answer.context_window
    dropped = (f" · {answer.dropped_turns} earlier turn(s) no longer fit and were left out"
               if answer.dropped_turns else " · the whole conversation fits")
    return f"Context: {about}{used} / {about}{answer.context_window} tokens ({share:.0f}%){dropped}{estimated}"


def is_thought(message: Message) -> bool:
    """A step or sources block (collapsible), as opposed to a user message or an answer."""
    return bool((message.get("metadata") or {}).get("title"))


def answer_text(message: Message) -> str:
    """What the model said in an answer message, without the UI's escaping and notes."""
    return unescape(message_text(message.get("content")).split(UNCITED_NOTE, 1)[0]).strip()


def agent_history(history: Sequence[Message]) -> list[dict[str, str]]:
    """Chat history as the agent wants it: user and answer texts, without steps or source blocks."""
    turns: list[dict[str, str]] = []
    for message in history:
        role = message.get("role")
        if is_thought(message) or role not in ("user", "assistant"):
            continue
        text = message_text(message.get("content")).strip() if role == "user" else answer_text(message)
        if text:
            turns.append({"role": role, "content": text})
    return turns


def client_safe(value: Any) -> Any:
    """JSON for API clients with every "path" key renamed "file" (gradio_client downloads any dict with "path")."""
    if isinstance(value, dict):
        return {("file" if key == "path" else key): client_safe(item) for key, item in value.items()}
    if isinstance(value, list):
        return [client_safe(item) for item in value]
    return value
