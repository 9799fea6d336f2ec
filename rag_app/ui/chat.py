"""The chat handler: streams an agent's steps and answer into Gradio messages, the context meter and the Answer."""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import gradio as gr

from rag_app.agent import AgentSettings
from rag_app.config import GenerationSettings
from rag_app.retrieval import SEARCH_MODES
from rag_app.ui.indexes import IndexCatalog
from rag_app.ui.render import (
    Message,
    agent_history,
    client_safe,
    escape,
    meter,
    render_answer,
    render_sources,
    render_step,
)

Answers = dict[str, dict[str, Any]]
ChatOutput = tuple[list[Message], Any, Any, Any]


@dataclass(frozen=True)
class ChatDefaults:
    """The settings a new session starts with (and that an API call gets for the inputs it leaves out)."""

    temperature: float = GenerationSettings.temperature
    top_p: float = GenerationSettings.top_p
    top_k: int = GenerationSettings.top_k
    max_new_tokens: int = GenerationSettings.max_new_tokens
    k: int = AgentSettings.k
    mode: str = AgentSettings.mode
    max_steps: int = AgentSettings.max_steps


def make_respond(catalog: IndexCatalog, defaults: ChatDefaults) -> Callable[..., Iterator[ChatOutput]]:
    """A ChatInterface function over the catalogue's agents; all state it touches is the session's own."""

    def respond(
        message: str,
        history: list[Message],
        temperature: float = defaults.temperature,
        top_p: float = defaults.top_p,
        top_k: int = defaults.top_k,
        max_new_tokens: int = defaults.max_new_tokens,
        k: int = defaults.k,
        mode: str = defaults.mode,
        max_steps: int = defaults.max_steps,
        index: str | None = None,
        answers: Answers | None = None,
    ) -> Iterator[ChatOutput]:
        answers = answers if answers is not None else {}
        if mode not in SEARCH_MODES:
            raise gr.Error(f"unknown search mode {mode!r}; choose one of {list(SEARCH_MODES)}")
        try:
            agent = catalog.agent(index)
        except Exception as error:  # a missing or damaged index: say so in the chat
            raise gr.Error(str(error)) from error
        replayed = agent_history(history or [])
        shown: list[Message] = []
        partial = ""
        for event in agent.stream(
            message, replayed, temperature=float(temperature), top_p=float(top_p), top_k=int(top_k),
            max_new_tokens=int(max_new_tokens), k=int(k), mode=mode, max_steps=int(max_steps),
        ):
            if event.kind == "step" and event.step is not None:
                shown.append(render_step(event.step))
                yield shown, gr.skip(), gr.skip(), gr.skip()
            elif event.kind == "token":
                partial += event.text
                yield [*shown, {"role": "assistant", "content": escape(partial)}], gr.skip(), gr.skip(), gr.skip()
            elif event.answer is not None:
                turn_id = uuid.uuid4().hex
                details = {**event.answer.to_dict(), "index": index or catalog.default_name, "history": replayed}
                answers[turn_id] = details
                final = [*shown, render_answer(event.answer), render_sources(event.answer, turn_id)]
                yield final, meter(event.answer), client_safe(details), answers

    return respond
