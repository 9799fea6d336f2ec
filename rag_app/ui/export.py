"""A conversation exported as Markdown or JSON: questions, answers, sources and steps, as plain text."""

from __future__ import annotations

import json
import re
import shutil
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from gradio.utils import get_upload_folder

from rag_app.prompt import message_text
from rag_app.types import quoted_label, relevance_label
from rag_app.ui.render import Message, answer_text, is_thought, unescape

EXPORTS_FOLDER = "rag_app-exports"


def conversation_turns(history: Sequence[Message], answers: Mapping[str, dict[str, Any]]) -> list[dict[str, Any]]:
    """The chat as turns: each question, its answer text, and (when known) the full Answer with sources and steps."""
    turns: list[dict[str, Any]] = []
    for message in history:
        metadata = message.get("metadata") or {}
        text = message_text(message.get("content"))
        if message.get("role") == "user":
            turns.append({"question": text.strip(), "answer": "", "details": None, "steps": []})
        elif not turns:
            continue
        elif is_thought(message):
            details = answers.get(str(metadata.get("id") or ""))
            if details is not None:
                turns[-1]["details"] = details
            else:
                turns[-1]["steps"].append({"title": unescape(str(metadata.get("title") or "")),
                                           "content": unescape(text)})
        else:
            turns[-1]["answer"] = answer_text(message)
    return turns


def to_json(turns: Sequence[dict[str, Any]], index: str) -> str:
    return json.dumps({"index": index, "exported_at": time.strftime("%Y-%m-%dT%H:%M:%S%z"), "turns": list(turns)},
                      ensure_ascii=False, indent=2)


def to_markdown(turns: Sequence[dict[str, Any]], index: str) -> str:
    lines = [f"# Conversation with index `{index}`", ""]
    for number, turn in enumerate(turns, start=1):
        lines += [f"## {number}. {turn['question']}", "", turn["answer"] or "*(no answer)*", ""]
        details = turn.get("details") or {}
        sources = details.get("sources") or []
        if sources:
            lines += ["**Sources**", ""]
            for source in sources:
                quoting = quoted_label(source.get("quoted_lines") or [])
                where = f"{source['location']} · {quoting}" if quoting else source["location"]
                quoted = source["text"].strip().replace("\n", "\n   > ")
                lines += [f"{source['number']}. {where} (score {source['score']:.3f})", f"   > {quoted}", ""]
        closest = details.get("closest") or []
        if closest:
            lines += ["**Closest passages** (none relevant enough to answer from)", ""]
            lines += [f"- {hit['location']} (relevance {relevance_label(hit['relevance'])})"
                      + "".join(f': "{sentence}"' for sentence in hit.get("evidence", [])[:1]) for hit in closest]
            lines += [""]
        if details.get("context_window"):
            lines += [f"*Context: {details['prompt_tokens']} / {details['context_window']} tokens, "
                      f"{details['dropped_turns']} earlier turn(s) left out.*", ""]
    return "\n".join(lines)


def exports_folder(session: str) -> Path:
    """A session's own export folder, inside Gradio's cache so that Gradio serves the file as is (no copy it would
    keep): removing the folder removes every export of the session."""
    return Path(get_upload_folder()) / EXPORTS_FOLDER / (re.sub(r"[^A-Za-z0-9_-]", "", session) or "no-session")


def write_export(text: str, suffix: str, session: str) -> str:
    """The export as a file Gradio can offer for download, in the session's export folder."""
    folder = exports_folder(session)
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"conversation-{time.strftime('%Y%m%d-%H%M%S')}{suffix}"
    path.write_text(text, encoding="utf-8")
    return str(path)


def remove_exports(session: str) -> None:
    """Delete a finished session's exports."""
    shutil.rmtree(exports_folder(session), ignore_errors=True)
