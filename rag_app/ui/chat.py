"""The chat handler: streams an agent's steps and answer into Gradio messages, the context meter and the Answer."""

from __future__ import annotations

import inspect
import uuid
from collections.abc import Callable, Iterator
from contextlib import closing
from typing import Any

import gradio as gr

from rag_app.config import AgentSettings, Knob, knobs
from rag_app.models.server_http import ServerError
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


def ui_knobs(defaults: AgentSettings) -> list[tuple[str, Knob, Any, type]]:
    """The settings the UI offers (name, knob, starting value, type), in the order of its controls and of
    `respond`'s inputs."""
    return [item for item in knobs(defaults) if item[1].ui]


def chat_inputs(defaults: AgentSettings, index: str | None = None, answers: Answers | None = None,
                **overrides: Any) -> list[Any]:
    """The additional inputs `respond` takes after (message, history), for callers other than Gradio."""
    values = defaults.with_overrides(**overrides).values()
    return [*(values[name] for name, *_ in ui_knobs(defaults)), index, answers]


def make_respond(catalog: IndexCatalog, defaults: AgentSettings) -> Callable[..., Iterator[ChatOutput]]:
    """A ChatInterface function over the catalogue's agents; all state it touches is the session's own.

    Its inputs after (message, history) are the values of `ui_knobs(defaults)`, the index name and the
    session's answers."""
    offered = ui_knobs(defaults)

    def respond(message: str, history: list[Message], *inputs: Any) -> Iterator[ChatOutput]:
        *values, index, answers = inputs
        answers = answers if answers is not None else {}
        overrides = {name: kind(value) for (name, _, _, kind), value in zip(offered, values, strict=True)}
        replayed = agent_history(history or [])
        try:
            response = catalog.agent(index).stream(message, replayed, **overrides)
        except Exception as error:  # a missing or damaged index, or a bad setting: say so in the chat
            raise gr.Error(str(error)) from error
        shown: list[Message] = []
        partial = ""
        # Closed whatever happens: when the browser goes away Gradio closes this generator, and the model's
        # generation (an HTTP stream for a served model) must stop with it.
        with closing(response):
            try:
                for event in response:
                    if event.kind == "step" and event.step is not None:
                        shown.append(render_step(event.step))
                        yield shown, gr.skip(), gr.skip(), gr.skip()
                    else:
                        partial += event.text
                        yield ([*shown, {"role": "assistant", "content": escape(partial)}], gr.skip(), gr.skip(),
                               gr.skip())
            except ServerError as error:  # the model server went down, or refused: say so in the chat
                raise gr.Error(str(error)) from error
        answer = response.answer
        turn_id = uuid.uuid4().hex
        details = {**answer.to_dict(), "index": index or catalog.default_name, "history": replayed}
        answers[turn_id] = details
        final = [*shown, render_answer(answer), render_sources(answer, turn_id)]
        yield final, meter(answer), client_safe(details), answers

    # Named parameters (Gradio reads the signature): API clients may pass any knob by name, e.g. max_new_tokens=8.
    keyword = inspect.Parameter.POSITIONAL_OR_KEYWORD
    respond.__signature__ = inspect.Signature([  # type: ignore[attr-defined]
        inspect.Parameter("message", keyword, annotation=str),
        inspect.Parameter("history", keyword, annotation=list),
        *(inspect.Parameter(name, keyword, default=value, annotation=kind) for name, _, value, kind in offered),
        inspect.Parameter("index", keyword, default=None),
        inspect.Parameter("answers", keyword, default=None),
    ])
    return respond
