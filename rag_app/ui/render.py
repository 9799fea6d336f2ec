"""Answers rendered as chat messages (inert Markdown), and chat messages turned back into agent history."""

from __future__ import annotations

import html
import re
from collections.abc import Sequence
from typing import Any

from rag_app.attribution import render, separator
from rag_app.prompt import message_text
from rag_app.types import Answer, AnswerSentence, Hit, Step, relevance_label

Message = dict[str, Any]
SOURCES_TITLE = "📚 Sources"
CLOSEST_NOTE = ("No passage was relevant enough to answer from. The closest ones, for you to check (the answer does "
                "not use them):")
CLOSEST_HINT = "To answer from them anyway, set Settings › Relevance threshold to {relevance} and ask again."
# Notes under an answer start a quote block; an escaped answer cannot contain one (its line breaks are "  \n").
NOTE_START = "\n\n> "
UNCITED_NOTE = "This answer cites no passage: check it against the sources below."
UNSUPPORTED_MARK = "⚠️"
UNSUPPORTED_NOTE = f"{UNSUPPORTED_MARK} marks a sentence that no passage supports: check it before you rely on it."
_UNSUPPORTED = re.compile(rf"{UNSUPPORTED_MARK} _((?:\\.|[^_\\])*)_")
_MARKDOWN_SPECIALS = re.compile(r"([\\`*_\[\]()#!|~${}])")
_ESCAPED_SPECIALS = re.compile(r"\\([\\`*_\[\]()#!|~${}])")


def escape(text: str) -> str:
    """Document or model text as inert Markdown: HTML escaped (a `<script>` stays text), no links, images or math."""
    return _MARKDOWN_SPECIALS.sub(r"\\\1", html.escape(text, quote=False)).replace("\n", "  \n")


def unescape(text: str) -> str:
    """The exact inverse of `escape`."""
    return html.unescape(_ESCAPED_SPECIALS.sub(r"\1", text.replace("  \n", "\n")))


def highlight(source: Hit, supporting: Sequence[str] = ()) -> str:
    """The passage, escaped, with the sentences that support the answer (and its evidence) in bold."""
    text = escape(source.text)
    for sentence in dict.fromkeys([*supporting, *source.evidence]):
        escaped = escape(sentence)
        if escaped and escaped in text and f"**{escaped}**" not in text:
            text = text.replace(escaped, f"**{escaped}**", 1)
    return text


def _sentence(sentence: AnswerSentence) -> str:
    """One answer sentence, escaped; one that no passage supports is marked and set in italics."""
    text = escape(render([sentence]))
    return text if sentence.supported else f"{UNSUPPORTED_MARK} _{text}_"


def render_answer(answer: Answer) -> Message:
    """The answer, sentence by sentence (unsupported ones marked), with notes: why it is the passages' own words,
    which sentences nothing supports, or that it cites nothing."""
    if answer.sentences:
        text = ""
        for sentence in answer.sentences:
            text += separator(text) + _sentence(sentence)
    else:
        text = escape(answer.text)
    notes = [escape(answer.notice)] if answer.notice else []
    if any(not sentence.supported for sentence in answer.sentences):
        notes.append(UNSUPPORTED_NOTE)
    if not answer.abstained and not answer.cited and answer.sources:
        notes.append(UNCITED_NOTE)
    return {"role": "assistant", "content": text + "".join(f"{NOTE_START}{note}" for note in notes)}


def _render_source(source: Hit, supporting: Sequence[str], lines: str) -> str:
    quoted = highlight(source, supporting).replace("  \n", "  \n> ")
    return (f"**[{source.number}] {escape(source.chunk.label())}**{f' · {lines}' if lines else ''}"
            f" · score {source.score:.3f} · relevance {relevance_label(source.relevance)}\n\n> {quoted}")


def _render_closest(hit: Hit) -> str:
    quoted = highlight(hit).replace("  \n", "  \n> ")
    return f"**{escape(hit.chunk.label())}** · relevance {relevance_label(hit.relevance)}\n\n> {quoted}"


def render_sources(answer: Answer, turn_id: str) -> Message:
    """The answer's numbered sources in a collapsible block, shown open: location, score, evidence in bold; cited
    ones first (`Answer.sources_cited_first`)."""
    if answer.sources:
        body = "\n\n".join(_render_source(source, [sentence.evidence for sentence in answer.sentences
                                                      if sentence.citations[:1] == (source.number,)],
                                           answer.quoted_label(source.number))
                           for source in answer.sources_cited_first())
        title = f"{SOURCES_TITLE} ({len(answer.sources)})"
    elif answer.closest:
        hint = CLOSEST_HINT.format(relevance=relevance_label(answer.closest[0].relevance))
        body = "\n\n".join([CLOSEST_NOTE, *(_render_closest(hit) for hit in answer.closest), hint])
        title = f"{SOURCES_TITLE} (none · {len(answer.closest)} closest)"
    else:
        body = "No passage of this index was relevant enough to answer from."
        title = f"{SOURCES_TITLE} (none)"
    return {"role": "assistant", "content": body, "metadata": {"title": title, "id": turn_id}}


def render_step(step: Step) -> Message:
    """An agent step as a collapsible chat message (Gradio message metadata); the title is Markdown too, and
    holds the user's query, so it is escaped like the content."""
    title = f"🔎 {escape(step.tool)}({escape(step.tool_input)})" if step.tool else f"💭 {escape(step.kind)}"
    return {"role": "assistant", "content": escape(step.content), "metadata": {"title": title, "status": "done"}}


def meter(answer: Answer) -> str:
    """The context meter: tokens of the window this turn used, and earlier turns that no longer fit."""
    if not answer.context_window:
        return ""
    about = "~" if answer.window_estimated else ""  # a served model without tokenizer or window info
    estimated = " · estimated counts" if answer.window_estimated else ""
    if answer.abstained or (answer.mode == "extractive" and not answer.generated):
        why = "nothing relevant found" if answer.abstained else "answered in the passages' own words"
        return f"Context: no prompt was needed ({why}) · window {about}{answer.context_window} tokens{estimated}"
    used = answer.prompt_tokens
    share = 100 * used / answer.context_window
    dropped = (f" · {answer.dropped_turns} earlier turn(s) no longer fit and were left out"
               if answer.dropped_turns else " · the whole conversation fits")
    return f"Context: {about}{used} / {about}{answer.context_window} tokens ({share:.0f}%){dropped}{estimated}"


def is_thought(message: Message) -> bool:
    """A step or sources block (collapsible), as opposed to a user message or an answer."""
    return bool((message.get("metadata") or {}).get("title"))


def answer_text(message: Message) -> str:
    """What an answer message said, without the UI's escaping, marks and notes."""
    body = message_text(message.get("content")).split(NOTE_START, 1)[0]
    return unescape(_UNSUPPORTED.sub(r"\1", body)).strip()


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
