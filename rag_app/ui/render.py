"""Answers rendered for the chat (escaped Markdown), and chat history turned back into agent history."""

from __future__ import annotations

import html
from collections.abc import Sequence
from typing import Any

from rag_app.types import Answer, Source, Step

SOURCES_MARKER = "\n\n---\n**Sources**"


def escape(text: str) -> str:
    """Document text as inert Markdown: HTML escaped so that a `<script>` in a document stays text."""
    return html.escape(text, quote=False).replace("\n", "  \n")


def highlight(source: Source) -> str:
    """The passage with its supporting sentences in bold."""
    text = escape(source.text)
    for sentence in source.evidence:
        escaped = escape(sentence)
        if escaped and escaped in text:
            text = text.replace(escaped, f"**{escaped}**", 1)
    return text


def render_sources(answer: Answer) -> str:
    if not answer.sources:
        return ""
    blocks = [SOURCES_MARKER]
    for source in answer.sources:
        blocks.append(
            f"<details><summary>[{source.number}] {escape(source.chunk.location)} · score {source.score:.3f}"
            f"</summary>\n\n{highlight(source)}\n\n</details>"
        )
    return "\n".join(blocks)


def render_answer(answer: Answer) -> str:
    """The answer text, a warning when it cites nothing, the context meter line, and its sources."""
    parts = [escape(answer.text)]
    if not answer.abstained and not answer.cited and answer.sources:
        parts.append("\n\n*This answer cites no passage: check it against the sources below.*")
    if answer.evidence:
        parts.append("\n\n**Evidence from your documents:**\n" + "\n".join(f"> {escape(s)}" for s in answer.evidence))
    return "".join(parts) + render_sources(answer)


def render_step(step: Step) -> dict[str, Any]:
    """A step as a collapsible chat message (Gradio message metadata)."""
    title = f"🔎 {step.tool}({step.tool_input})" if step.tool else f"💭 {step.kind}"
    return {"role": "assistant", "content": escape(step.content), "metadata": {"title": title, "status": "done"}}


def meter(answer: Answer) -> str:
    """The context meter: tokens of the window this turn used, and earlier turns that no longer fit."""
    if not answer.context_window:
        return ""
    used = answer.prompt_tokens
    share = 100 * used / answer.context_window
    dropped = (f" · {answer.dropped_turns} earlier turn(s) no longer fit and were left out"
               if answer.dropped_turns else " · the whole conversation fits")
    return f"Context: {used} / {answer.context_window} tokens ({share:.0f}%){dropped}"


def agent_history(history: Sequence[dict[str, Any]]) -> list[dict[str, str]]:
    """Chat history as the agent wants it: user and answer texts, without step messages or source blocks."""
    turns: list[dict[str, str]] = []
    for message in history:
        metadata = message.get("metadata") or {}
        if metadata.get("title"):
            continue
        content = message.get("content")
        if isinstance(content, list):
            content = " ".join(str(part.get("text", "")) if isinstance(part, dict) else str(part) for part in content)
        text = html.unescape(str(content or "").split(SOURCES_MARKER, 1)[0]).replace("  \n", "\n")
        text = text.split("\n\n*This answer cites no passage", 1)[0].split("\n\n**Evidence from", 1)[0]
        if message.get("role") in ("user", "assistant") and text.strip():
            turns.append({"role": message["role"], "content": text.strip()})
    return turns
